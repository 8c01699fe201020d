//! The SDK's one error type.

use tonic::{Code, Status};

/// Everything that can go wrong talking to Weir.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The topic does not exist (the broker's message names it).
    #[error("{0}")]
    TopicNotFound(String),
    /// A topic of that name already exists.
    #[error("{0}")]
    TopicExists(String),
    /// The topic has no such partition.
    #[error("{0}")]
    PartitionNotFound(String),
    /// The request broke a rule or a limit; the message says which. Not retriable.
    #[error("{message}")]
    InvalidArgument {
        /// What was wrong, with the limit where one applies.
        message: String,
    },
    /// The offset asked for is not kept (any more, or yet).
    #[error("{message}")]
    OffsetOutOfRange {
        /// The broker's explanation.
        message: String,
        /// Oldest offset kept in that partition.
        earliest: u64,
        /// Next offset to be written in that partition.
        latest: u64,
    },
    /// An idempotent producer's batch arrived before an earlier one of the same partition; the
    /// producer retries it (callers see this only if retries run out).
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// A plugin of that name is already registered.
    #[error("{0}")]
    PluginExists(String),
    /// The plugin does not exist.
    #[error("{0}")]
    PluginNotFound(String),
    /// A plugin failed (trap, error, limit): the message names it and the cause.
    #[error("{0}")]
    PluginFailed(String),
    /// The plugin cannot be deleted: a pipeline uses it (the message names it).
    #[error("{0}")]
    PluginInUse(String),
    /// A write to a view (views are read-only), or the deletion of a topic views read: the
    /// message says which view and topic.
    #[error("{0}")]
    ViewConflict(String),
    /// The pipeline does not exist.
    #[error("{0}")]
    PipelineNotFound(String),
    /// A pipeline of that name already exists.
    #[error("{0}")]
    PipelineExists(String),
    /// The consumer group does not exist.
    #[error("{0}")]
    GroupNotFound(String),
    /// This group member was removed from its group or acted on an assignment it no longer
    /// has (stale epoch, partition it does not own). The consumer joins again by itself.
    #[error("{0}")]
    Fenced(String),
    /// The group has live members; the operation needs it empty (stop them first).
    #[error("{0}")]
    GroupNotEmpty(String),
    /// Cluster mode: the broker asked does not lead the partition (leadership moved, or the
    /// client's metadata is stale). The SDK refreshes its metadata and retries by itself.
    #[error("{0}")]
    NotLeader(String),
    /// Cluster mode: the broker asked does not coordinate the group (the coordinator moved).
    /// The SDK finds the coordinator again and retries by itself.
    #[error("{0}")]
    NotCoordinator(String),
    /// The broker is shedding load (RESOURCE_EXHAUSTED: too many calls in flight, or its
    /// produce budget is spent). Retriable after a backoff; producers do so by themselves.
    #[error("{0}")]
    Busy(String),
    /// The broker runs with `--auth` and the client's credentials are missing or wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// The client's user may not do this (the message names the permission it needs).
    #[error("{0}")]
    PermissionDenied(String),
    /// A user of that name already exists.
    #[error("{0}")]
    UserExists(String),
    /// The user does not exist.
    #[error("{0}")]
    UserNotFound(String),
    /// No such ACL was granted.
    #[error("{0}")]
    AclNotFound(String),
    /// The user is the last superuser: removing it would lock everyone out.
    #[error("{0}")]
    LastSuperuser(String),
    /// The broker cannot be reached or is shutting down: retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// No broker could be reached at `addr`.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why it failed.
        message: String,
    },
    /// A request (or, for a produced record, its delivery with retries) took too long.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The producer was closed before the record could be sent.
    #[error("the producer is closed")]
    ProducerClosed,
    /// The broker sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Any other failure the broker reported (e.g. a storage error).
    #[error("broker error: {0}")]
    Broker(String),
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        let kind = s
            .metadata()
            .get("weir-error-kind")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let num = |key: &str| {
            s.metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let message = s.message().to_string();
        match (kind, s.code()) {
            ("topic_not_found", _) => Error::TopicNotFound(message),
            ("partition_not_found", _) => Error::PartitionNotFound(message),
            ("plugin_exists", _) => Error::PluginExists(message),
            ("user_exists", _) => Error::UserExists(message),
            ("user_not_found", _) => Error::UserNotFound(message),
            ("acl_not_found", _) => Error::AclNotFound(message),
            ("last_superuser", _) => Error::LastSuperuser(message),
            (_, Code::Unauthenticated) => Error::Unauthenticated(message),
            (_, Code::PermissionDenied) => Error::PermissionDenied(message),
            ("pipeline_exists", _) => Error::PipelineExists(message),
            ("topic_exists", _) | (_, Code::AlreadyExists) => Error::TopicExists(message),
            ("out_of_order_sequence", _) => Error::OutOfOrderSequence(message),
            ("group_not_found", _) => Error::GroupNotFound(message),
            ("plugin_not_found", _) => Error::PluginNotFound(message),
            ("plugin_failed", _) => Error::PluginFailed(message),
            ("plugin_in_use", _) => Error::PluginInUse(message),
            ("pipeline_not_found", _) => Error::PipelineNotFound(message),
            ("read_only_view" | "topic_has_views", _) => Error::ViewConflict(message),
            ("unknown_member" | "stale_member_epoch" | "not_partition_owner", _) => {
                Error::Fenced(message)
            }
            ("group_not_empty", _) => Error::GroupNotEmpty(message),
            ("not_leader", _) => Error::NotLeader(message),
            ("not_coordinator", _) => Error::NotCoordinator(message),
            ("busy", _) | (_, Code::ResourceExhausted) => Error::Busy(message),
            // The broker names the kind of every error it raises; these codes without a kind
            // come from the transport (a connection or stream broken mid-call): retriable.
            ("", Code::Unknown | Code::Internal | Code::Aborted) => Error::Unavailable(message),
            ("offset_out_of_range", _) => Error::OffsetOutOfRange {
                message,
                earliest: num("weir-earliest"),
                latest: num("weir-latest"),
            },
            (_, Code::NotFound) => Error::TopicNotFound(message),
            (_, Code::InvalidArgument | Code::OutOfRange) => Error::InvalidArgument { message },
            (_, Code::Unavailable | Code::Cancelled) => Error::Unavailable(message),
            (_, Code::DeadlineExceeded) => Error::Timeout(std::time::Duration::ZERO),
            _ => Error::Broker(format!("{:?}: {message}", s.code())),
        }
    }
}

impl Error {
    /// Whether retrying the same request may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_)
                | Error::Busy(_)
                | Error::Timeout(_)
                | Error::Connect { .. }
                | Error::OutOfOrderSequence(_)
                | Error::NotLeader(_)
                | Error::NotCoordinator(_)
        )
    }
}
