//! Pieces both ends of the wire must agree on, with no I/O and no async:
//!
//! - [`alloc`]: glibc malloc settings for the binaries that move megabyte messages.
//! - [`batch`]: the record-batch binary format (encode, validate, decode zero-copy).
//! - [`compression`]: lz4/zstd compression of a batch's records.
//! - [`error`]: an error's text with its causes.
//! - [`partitioner`]: key → partition (Kafka-compatible murmur2), shared by every SDK.
//! - [`names`]: validated topic and group names.
//! - [`limits`]: the named limits checked at the edge.
//! - [`record`]: the owned record type handed to users.
//!
//! Architecture invariant: this crate knows nothing about gRPC, RocksDB or tokio.

pub mod alloc;
pub mod batch;
pub mod compression;
pub mod error;
pub mod limits;
pub mod names;
pub mod partitioner;
pub mod record;

pub use batch::{BatchBuilder, BatchError, BatchHeader, TimestampType};
pub use compression::Compression;
pub use names::{GroupName, NameError, PipelineName, PluginName, TopicName, UserName};
pub use record::{Header, Record};
