//! Byte formats the broker reads from places it does not control, decoded strictly and
//! without I/O so they can be fuzzed on their own (`fuzz/`): the storage key layout (a damaged
//! store) and the host side of the plugin ABI (an untrusted guest's output). Record batches,
//! the third such format, live in `weir-common` with the clients that write them.
//!
//! Layout:
//! - `keys`: storage keys (topic, partition, offset, time, group and pipeline keys).
//! - `abi`: the plugin ABI's input layout and strict output decoding.

pub mod abi;
pub mod keys;
