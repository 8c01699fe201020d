//! Weir's errors as Kafka error codes (docs/kafka.md, "Errors").

use kafka_protocol::ResponseError as E;
use weir_codec::kafka::KafkaRecordsError;
use weir_common::batch::BatchError;

use crate::error::BrokerError;

/// A Kafka error code and its name (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub E, pub &'static str);

impl Code {
    pub fn code(self) -> i16 {
        self.0.code()
    }
}

/// The first error of a response, by name: what `weir_kafka_requests` counts the request as
/// (`NONE` while it has none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirstError(Option<&'static str>);

impl FirstError {
    /// Notes `code` unless an earlier error was noted.
    pub fn note(&mut self, code: Code) {
        self.0.get_or_insert(code.1);
    }

    pub fn name(self) -> &'static str {
        self.0.unwrap_or("NONE")
    }

    pub fn is_none(self) -> bool {
        self.0.is_none()
    }
}

macro_rules! code {
    ($v:ident, $name:literal) => {
        Code(E::$v, $name)
    };
}

pub const UNKNOWN_TOPIC_OR_PARTITION: Code =
    code!(UnknownTopicOrPartition, "UNKNOWN_TOPIC_OR_PARTITION");
pub const INVALID_REQUIRED_ACKS: Code = code!(InvalidRequiredAcks, "INVALID_REQUIRED_ACKS");
pub const TOPIC_AUTHORIZATION_FAILED: Code =
    code!(TopicAuthorizationFailed, "TOPIC_AUTHORIZATION_FAILED");
pub const INVALID_REQUEST: Code = code!(InvalidRequest, "INVALID_REQUEST");
pub const INVALID_CONFIG: Code = code!(InvalidConfig, "INVALID_CONFIG");
pub const UNKNOWN_TOPIC_ID: Code = code!(UnknownTopicId, "UNKNOWN_TOPIC_ID");
pub const LEADER_NOT_AVAILABLE: Code = code!(LeaderNotAvailable, "LEADER_NOT_AVAILABLE");
pub const COORDINATOR_NOT_AVAILABLE: Code =
    code!(CoordinatorNotAvailable, "COORDINATOR_NOT_AVAILABLE");
pub const INVALID_GROUP_ID: Code = code!(InvalidGroupId, "INVALID_GROUP_ID");
pub const GROUP_AUTHORIZATION_FAILED: Code =
    code!(GroupAuthorizationFailed, "GROUP_AUTHORIZATION_FAILED");
pub const OFFSET_OUT_OF_RANGE: Code = code!(OffsetOutOfRange, "OFFSET_OUT_OF_RANGE");

/// The Kafka error code for a failed call.
pub fn code_of(e: &BrokerError) -> Code {
    use BrokerError as B;
    match e {
        B::TopicNotFound(_) | B::ViewNotFound(_) | B::PartitionNotFound { .. } => {
            UNKNOWN_TOPIC_OR_PARTITION
        }
        B::TopicExists(_) => code!(TopicAlreadyExists, "TOPIC_ALREADY_EXISTS"),
        // A view takes no writes: not retriable, as for an invalid topic.
        B::InvalidName(_) | B::ReadOnlyView { .. } => {
            code!(InvalidTopicException, "INVALID_TOPIC_EXCEPTION")
        }
        B::TopicHasViews { .. } => code!(PolicyViolation, "POLICY_VIOLATION"),
        B::InvalidBatch { source, .. } => batch_code(source),
        B::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        B::OutOfOrderSequence { .. } => {
            code!(OutOfOrderSequenceNumber, "OUT_OF_ORDER_SEQUENCE_NUMBER")
        }
        B::GroupNotFound(_) => code!(GroupIdNotFound, "GROUP_ID_NOT_FOUND"),
        B::UnknownMember { .. } => code!(UnknownMemberId, "UNKNOWN_MEMBER_ID"),
        B::GroupNotEmpty { .. } => code!(NonEmptyGroup, "NON_EMPTY_GROUP"),
        B::InconsistentGroupProtocol { .. } => {
            code!(InconsistentGroupProtocol, "INCONSISTENT_GROUP_PROTOCOL")
        }
        B::IllegalGeneration { .. } | B::StaleMemberEpoch { .. } => {
            code!(IllegalGeneration, "ILLEGAL_GENERATION")
        }
        B::RebalanceInProgress { .. } => code!(RebalanceInProgress, "REBALANCE_IN_PROGRESS"),
        // Retriable: the client refreshes its metadata and tries again (a restarted or new
        // leader).
        B::NotLeader { .. } | B::ShuttingDown => {
            code!(NotLeaderOrFollower, "NOT_LEADER_OR_FOLLOWER")
        }
        B::ClusterUnavailable(_) => code!(LeaderNotAvailable, "LEADER_NOT_AVAILABLE"),
        B::StaleLeaderEpoch { .. } => code!(FencedLeaderEpoch, "FENCED_LEADER_EPOCH"),
        B::NotEnoughReplicas(_) => code!(NotEnoughReplicas, "NOT_ENOUGH_REPLICAS"),
        B::NotCoordinator { .. } => code!(NotCoordinator, "NOT_COORDINATOR"),
        B::CoordinatorNotAvailable { .. } => {
            code!(CoordinatorNotAvailable, "COORDINATOR_NOT_AVAILABLE")
        }
        B::Busy(_) => code!(ThrottlingQuotaExceeded, "THROTTLING_QUOTA_EXCEEDED"),
        B::Storage(_) => code!(KafkaStorageError, "KAFKA_STORAGE_ERROR"),
        B::Unauthenticated(_) => code!(SaslAuthenticationFailed, "SASL_AUTHENTICATION_FAILED"),
        B::PermissionDenied(_) => TOPIC_AUTHORIZATION_FAILED,
        B::InvalidArgument(_) => INVALID_REQUEST,
        _ => code!(UnknownServerError, "UNKNOWN_SERVER_ERROR"),
    }
}

/// A batch the log refused.
fn batch_code(e: &BatchError) -> Code {
    match e {
        BatchError::RecordTooLarge { .. } => code!(MessageTooLarge, "MESSAGE_TOO_LARGE"),
        BatchError::TooManyRecords(_) => code!(RecordListTooLarge, "RECORD_LIST_TOO_LARGE"),
        _ => code!(InvalidRecord, "INVALID_RECORD"),
    }
}

/// Records a Kafka client sent that could not be translated.
pub fn records_code(e: &KafkaRecordsError) -> Code {
    match e {
        KafkaRecordsError::Corrupt(_) => code!(CorruptMessage, "CORRUPT_MESSAGE"),
        KafkaRecordsError::OldFormat(_) | KafkaRecordsError::Transactional => code!(
            UnsupportedForMessageFormat,
            "UNSUPPORTED_FOR_MESSAGE_FORMAT"
        ),
        KafkaRecordsError::TooLarge => code!(RecordListTooLarge, "RECORD_LIST_TOO_LARGE"),
        KafkaRecordsError::Empty => code!(InvalidRecord, "INVALID_RECORD"),
    }
}
