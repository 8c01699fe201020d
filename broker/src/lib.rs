//! The Weir broker: topics split into partitions, each an append-only, segmented log of record
//! batches in RocksDB, served over gRPC.
//!
//! Layers, lowest first; a module uses only the layers below its own (ARCHITECTURE.md,
//! "Layers"; `e2e/tests/architecture.rs` checks it):
//! - [`error`] (the domain error, a leaf), [`types`] (plain domain types).
//! - [`storage`] (RocksDB, generic), [`metrics`] (the process's counters), [`blocking`].
//! - [`log`] (partition logs: append, read, segments, retention, epochs), [`plugins`] (the
//!   WebAssembly registry and sandbox), [`security`] (users, ACLs, credentials).
//! - [`topics`]: the topic registry.
//! - [`groups`] (consumer groups), [`pipelines`] (topic→topic plugin pipelines).
//! - [`cluster`]: cluster mode (docs/cluster.md); its `network` is the one peer client.
//! - [`config`]: flags and config file → typed [`config::Config`].
//! - [`broker`]: the domain facade the services call.
//! - [`server`]: the edge: tonic services and `/metrics`; with `cluster::network`, the only
//!   code that knows proto types.

pub mod blocking;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod error;
pub mod groups;
pub mod kafka;
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
