//! The broker's domain error. `server/` maps each variant to one gRPC status code.
//!
//! Architecture invariant: a leaf. Each module turns its own errors into these (`From` impls
//! and `LogError::in_partition` live next to the errors they convert), so this file names no
//! other module of the crate.

use weir_common::{BatchError, NameError};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("view {0:?} does not exist")]
    ViewNotFound(String),
    /// A write to a view (views are read-only).
    #[error("{view:?} is a view of topic {topic:?} and is read-only: produce to {topic:?}")]
    ReadOnlyView { view: String, topic: String },
    #[error("topic {topic:?} is read by view(s) {}: delete them first", views.join(", "))]
    TopicHasViews { topic: String, views: Vec<String> },
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    PartitionNotFound {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("invalid batch for partition {partition}: {source}")]
    InvalidBatch { partition: u32, source: BatchError },
    #[error(
        "topic {topic:?} partition {partition}: offset {offset} is out of range (earliest {earliest}, latest {latest})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        earliest: u64,
        latest: u64,
    },
    /// An idempotent producer's batch that does not follow its last one (the log's reason).
    #[error("topic {topic:?} partition {partition}: {reason}")]
    OutOfOrderSequence {
        topic: String,
        partition: u32,
        /// The sequence number the partition expects next from the producer.
        expected: u32,
        reason: String,
    },
    #[error("consumer group {0:?} does not exist")]
    GroupNotFound(String),
    #[error(
        "group {group:?} has no member {member:?} (it left or its session expired): join again"
    )]
    UnknownMember { group: String, member: String },
    #[error("group {group:?} member {member:?}: epoch {epoch} is stale (current {current})")]
    StaleMemberEpoch {
        group: String,
        member: String,
        epoch: i64,
        current: i64,
    },
    #[error("group {group:?} member {member:?} does not own topic {topic:?} partition {partition}")]
    NotPartitionOwner {
        group: String,
        member: String,
        topic: String,
        partition: u32,
    },
    #[error("group {group:?} has {members} live member(s); stop them first")]
    GroupNotEmpty { group: String, members: usize },
    /// A member that cannot join: the group's members speak the other protocol (Weir's
    /// groups or Kafka's), or share no assignor with it.
    #[error("group {group:?}: {why}")]
    InconsistentGroupProtocol { group: String, why: String },
    /// A Kafka-protocol member acting on a generation that is not the group's.
    #[error(
        "group {group:?} member {member:?}: generation {generation} is not the group's ({current}); join again"
    )]
    IllegalGeneration {
        group: String,
        member: String,
        generation: i32,
        current: i32,
    },
    /// The group is rebalancing: a Kafka-protocol member must join again.
    #[error("group {group:?} is rebalancing: join again")]
    RebalanceInProgress { group: String },
    #[error("plugin {0:?} does not exist")]
    PluginNotFound(String),
    #[error("plugin {0:?} already exists")]
    PluginExists(String),
    #[error("{0}")]
    InvalidPlugin(String),
    #[error("{0}")]
    PluginFailed(String),
    #[error("plugin {plugin:?} is used by pipeline {pipeline:?}; delete the pipeline first")]
    PluginInUse { plugin: String, pipeline: String },
    #[error("plugin {plugin:?} is used by view(s) {}; delete them first", views.join(", "))]
    PluginUsedByViews { plugin: String, views: Vec<String> },
    #[error("pipeline {0:?} does not exist")]
    PipelineNotFound(String),
    #[error("pipeline {0:?} already exists")]
    PipelineExists(String),
    #[error("broker is shutting down")]
    ShuttingDown,
    /// Load shedding: the broker holds as much as its limits allow; retry after a backoff.
    #[error("broker busy: {0}; retry later")]
    Busy(String),
    #[error("cluster: {0}")]
    ClusterUnavailable(String),
    #[error("this broker does not lead topic {topic:?} partition {partition}{}", leader.as_ref().map_or(String::new(), |l| format!("; broker {l} does")))]
    NotLeader {
        topic: String,
        partition: u32,
        /// The leader's address, when one is known.
        leader: Option<String>,
    },
    #[error("topic {topic:?} partition {partition} is at leader epoch {current}, not {asked}")]
    StaleLeaderEpoch {
        topic: String,
        partition: u32,
        current: u32,
        asked: u32,
    },
    #[error("{0}")]
    NotEnoughReplicas(String),
    #[error("this broker is not the coordinator of group {group:?}{}", coordinator.as_ref().map_or(String::new(), |c| format!("; broker {c} is")))]
    NotCoordinator {
        group: String,
        /// The coordinator's address, when one is known.
        coordinator: Option<String>,
    },
    /// The group's coordinator is being elected or is loading the group's offsets.
    #[error("the coordinator of group {group:?} is not available yet: {why}")]
    CoordinatorNotAvailable { group: String, why: &'static str },
    #[error("storage failure: {0}")]
    Storage(String),
    /// Missing, malformed or wrong credentials (never says which user exists).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The principal may not make this call; names only what the caller asked for.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("user {0:?} does not exist")]
    UserNotFound(String),
    #[error("user {0:?} is the last superuser; make another one first")]
    LastSuperuser(String),
    #[error("no such ACL")]
    AclNotFound,
}
