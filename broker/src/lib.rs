//! The Weir broker: topics split into partitions, each an append-only, segmented log of record
//! batches in RocksDB, served over gRPC.
//!
//! Layout (dependencies point down):
//! - [`config`]: flags and config file → typed [`config::Config`].
//! - [`server`]: tonic services; the only module that knows proto types and `Status`.
//! - [`broker`]: the domain facade the services call (validation, routing, blocking pool).
//! - [`cluster`]: cluster mode: members, replicated metadata (docs/cluster.md).
//! - [`topics`]: topic registry: create, delete, recover at start-up.
//! - [`groups`]: consumer groups: membership, assignment, committed offsets.
//! - [`pipelines`]: continuous topic→topic plugin pipelines (exactly-once).
//! - [`plugins`]: WebAssembly plugins: registry and sandboxed runtime.
//! - [`metrics`]: Prometheus metrics: counters where the work happens, the rest read at scrape.
//! - [`log`]: partition logs: append (group commit), read, time lookup, segments, retention.
//! - [`storage`]: RocksDB column families, key encoding, atomic write batches.
//! - [`types`]: plain domain types.
//! - [`error`]: the domain error.

pub mod blocking;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod error;
pub mod groups;
pub mod log;
pub mod metrics;
pub mod pipelines;
pub mod plugins;
pub mod security;
pub mod server;
pub mod storage;
pub mod topics;
pub mod types;

pub use broker::Broker;
pub use config::Config;
pub use error::BrokerError;
