//! Consumer groups: members share a topic's partitions (each partition read by one member of
//! a group), and each group keeps its own committed offsets.
//!
//! - `assign`: balanced, sticky partition assignment (pure logic).

pub mod assign;
