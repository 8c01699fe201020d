//! Rust client for [Weir](https://example.invalid/weir), an event-streaming platform.
//!
//! Layout:
//! - [`Client`]: a connection to a broker (`Client::connect("127.0.0.1:9292")`).
//! - [`Admin`]: create, list, describe and delete topics, consumer groups, plugins and
//!   pipelines; look up and reset offsets.
//! - [`Producer`]: batching producer with the key partitioner shared by every Weir client.
//! - [`Consumer`]: a `futures::Stream` of records from earliest/latest/offset/timestamp, on
//!   its own or as a member of a consumer group (shared partitions, committed offsets).
//! - [`Transformer`]: a plugin chain run at a broker over records the caller holds.
//! - [`StatusReport`]: the broker or cluster at a glance ([`Admin::status`]).
//! - [`Error`]: the one error type.
//!
//! ```no_run
//! use futures::StreamExt;
//! use weir::{Client, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, StartFrom};
//!
//! # async fn demo() -> weir::Result<()> {
//! let client = Client::connect("127.0.0.1:9292").await?;
//! client.admin().create_topic(NewTopic::new("orders", 3)).await?;
//! let producer = client.producer(ProducerConfig::default());
//! let (partition, offset) = producer.send(ProducerRecord::new("orders", "hello").key("k")).await?;
//! let mut consumer = client.consumer("orders", ConsumerConfig::default().start(StartFrom::Earliest)).await?;
//! while let Some(record) = consumer.next().await {
//!     let record = record?;
//!     println!("{} {} {:?}", record.partition, record.offset, record.value);
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod admin;
mod auth;
mod client;
mod consumer;
mod error;
mod pipeline;
mod producer;
mod start;
mod status;
mod tls;
mod transform;
mod users;
mod views;

pub use admin::{
    Admin, BackupInfo, GroupDescription, GroupMember, GroupPartition, GroupSummary, Health,
    NewTopic, NodeStatus, OffsetSpec, PartitionInfo, PartitionPlacement, PluginInfo, PluginLimits,
    TopicDescription, TopicInfo,
};
pub use auth::Credentials;
pub use client::{Client, DEFAULT_BROKER};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, GroupMetadata, PluginUse, RECONNECT_TIMEOUT,
};
pub use error::{Error, Result};
pub use pipeline::{NewPipeline, PipelineInfo, PipelinePartition, PipelineStart, PipelineStatus};
pub use producer::{Acks, Delivery, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
pub use start::StartFrom;
pub use status::StatusReport;
pub use tls::{ClientOptions, TlsConfig};
pub use transform::Transformer;
pub use users::{Acl, UserInfo, WhoAmI};
pub use views::{ViewDescription, ViewInfo};
pub use weir_common::Compression;
pub use weir_common::partitioner::partition_for_key;
pub use weir_common::record::{Header, Record, now_ms};
