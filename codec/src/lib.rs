//! Byte formats the broker reads from places it does not control, decoded strictly and
//! without I/O so they can be fuzzed on their own (`fuzz/`): the storage key layout (a damaged
//! store), the host side of the plugin ABI (an untrusted guest's output) and Kafka clients'
//! record batches. Weir's own record batches live in `weir-common` with the clients that
//! write them.
//!
//! Layout:
//! - `keys`: storage keys (topic, partition, offset, time, group and pipeline keys).
//! - `abi`: the plugin ABI's input layout and strict output decoding.
//! - `kafka`: Kafka record batches (v2) to and from Weir batches.

pub mod abi;
pub mod kafka;
pub mod keys;
