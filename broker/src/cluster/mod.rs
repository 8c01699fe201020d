//! Cluster mode (`--node-id`, `--cluster`; design in docs/cluster.md).
//!
//! - [`peers`]: the `--cluster` list.
//! - [`state`]: the replicated metadata as a deterministic state machine (no I/O).

pub mod peers;
pub mod state;
