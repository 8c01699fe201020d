//! The SDK's one error type.

use tonic::{Code, Status};

/// Everything that can go wrong talking to Weir.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    TopicNotFound(String),
    #[error("{0}")]
    TopicExists(String),
    #[error("{0}")]
    PartitionNotFound(String),
    #[error("{message}")]
    InvalidArgument { message: String },
    #[error("{message}")]
    OffsetOutOfRange {
        message: String,
        earliest: u64,
        latest: u64,
    },
    /// An idempotent producer's batch arrived before an earlier one of the same partition; the
    /// producer retries it (callers see this only if retries run out).
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// The broker cannot be reached or is shutting down: retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("the producer is closed")]
    ProducerClosed,
    /// The broker sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("broker error: {0}")]
    Broker(String),
}

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
            ("topic_exists", _) | (_, Code::AlreadyExists) => Error::TopicExists(message),
            ("out_of_order_sequence", _) => Error::OutOfOrderSequence(message),
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
                | Error::Timeout(_)
                | Error::Connect { .. }
                | Error::OutOfOrderSequence(_)
        )
    }
}
