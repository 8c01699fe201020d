//! Fault injection for a Weir cluster (issue 31): brokers in network namespaces, faults
//! scheduled from a seed, workloads that record a history, and a checker that reads it.

pub mod availability;
pub mod brokers;
pub mod checker;
pub mod drive;
pub mod faults;
pub mod history;
pub mod net;
pub mod workload;
