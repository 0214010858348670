//! Mapping internal errors to the Kafka error codes clients expect. This is the only place
//! where that mapping happens.

use kafka_protocol::ResponseError;

use crate::cluster::controller::TopicError;
use crate::group::state::GroupError;
use crate::record_batch::BatchError;
use crate::shard::NotServing;
use crate::storage::producer_state::SequenceError;
use crate::storage::StorageError;

/// A failed part of a request, as the client sees it: a Kafka error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ResponseError,
    pub message: String,
}

impl Failure {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<TopicError> for Failure {
    fn from(error: TopicError) -> Failure {
        Failure::new(topic_error_code(&error), error.to_string())
    }
}

pub fn topic_error_code(error: &TopicError) -> ResponseError {
    match error {
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        TopicError::NotController(_) => ResponseError::NotController,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::PolicyViolation(_) => ResponseError::PolicyViolation,
        TopicError::InternalTopic(_) => ResponseError::InvalidTopicException,
        TopicError::UnknownPartition(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        TopicError::ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded,
        TopicError::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        TopicError::EligibleLeadersNotAvailable(_) => ResponseError::EligibleLeadersNotAvailable,
        TopicError::Storage(_) => ResponseError::KafkaStorageError,
        TopicError::UnacceptableCredential(_) => ResponseError::UnacceptableCredential,
        TopicError::ResourceNotFound(_) => ResponseError::ResourceNotFound,
        TopicError::DuplicateResource(_) => ResponseError::DuplicateResource,
        TopicError::UnsupportedSaslMechanism(_) => ResponseError::UnsupportedSaslMechanism,
    }
}

/// The code for a partition whose log is not open on its owner. If the owner's metadata
/// names it, the log is on its way (the broker is still starting; its start gate keeps
/// clients out until every log is open, so this is a second line of defence):
/// NOT_LEADER_OR_FOLLOWER, which clients retry after refreshing metadata. Otherwise
/// UNKNOWN_TOPIC_OR_PARTITION.
pub fn not_serving_code(reason: NotServing) -> ResponseError {
    match reason {
        NotServing::Unknown => ResponseError::UnknownTopicOrPartition,
        NotServing::NotLeader => ResponseError::NotLeaderOrFollower,
        NotServing::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        NotServing::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
    }
}

pub fn partition_not_open_code(known_to_owner: bool) -> ResponseError {
    if known_to_owner {
        ResponseError::NotLeaderOrFollower
    } else {
        ResponseError::UnknownTopicOrPartition
    }
}

pub fn storage_error_code(error: &StorageError) -> ResponseError {
    match error {
        StorageError::InvalidBatch(reason) => batch_error_code(reason),
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // Only a follower's fetcher appends replicated batches; a client never sees it.
        StorageError::ReplicaGap { .. } => ResponseError::UnknownServerError,
        StorageError::LeadershipLost => ResponseError::NotLeaderOrFollower,
        StorageError::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        StorageError::Corrupt { .. }
        | StorageError::CorruptSealed { .. }
        | StorageError::Io { .. }
        | StorageError::LogFailed { .. }
        | StorageError::TooManyOpenFiles { .. } => ResponseError::KafkaStorageError,
        StorageError::Config(_) => ResponseError::InvalidConfig,
        StorageError::Sequence(error) => sequence_error_code(error),
    }
}

pub fn group_error_code(error: &GroupError) -> ResponseError {
    match error {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::TooManyGroups => ResponseError::PolicyViolation,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::NotAuthorized => ResponseError::GroupAuthorizationFailed,
    }
}

pub fn sequence_error_code(error: &SequenceError) -> ResponseError {
    match error {
        SequenceError::Fenced { .. } => ResponseError::InvalidProducerEpoch,
        SequenceError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
        SequenceError::Invalid(_) => ResponseError::InvalidRecord,
    }
}

pub fn batch_error_code(error: &BatchError) -> ResponseError {
    match error {
        BatchError::TooLarge { .. } | BatchError::DecompressedTooLarge { .. } => {
            ResponseError::MessageTooLarge
        }
        BatchError::CountMismatch { .. }
        | BatchError::CountExceedsBytes { .. }
        | BatchError::BadRecord { .. }
        | BatchError::OffsetDelta { .. }
        | BatchError::TrailingBytes { .. } => ResponseError::InvalidRecord,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::UnknownCodec(_) => ResponseError::UnsupportedCompressionType,
        BatchError::CrcMismatch { .. }
        | BatchError::ShortHeader(_)
        | BatchError::BadLength(_)
        | BatchError::Truncated { .. }
        | BatchError::DecompressFailed { .. } => ResponseError::CorruptMessage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_map_to_the_codes_clients_expect() {
        let cases = [
            (
                BatchError::CrcMismatch {
                    stored: 1,
                    computed: 2,
                },
                2,
            ),
            (BatchError::TooLarge { size: 10, limit: 5 }, 10),
            (
                BatchError::CountMismatch {
                    last_offset_delta: 1,
                    records_count: 5,
                },
                87,
            ),
            (BatchError::UnsupportedMagic(1), 43),
            (BatchError::ShortHeader(3), 2),
            (
                BatchError::CountExceedsBytes {
                    records_count: i32::MAX,
                    bytes: 0,
                },
                87,
            ),
            (
                BatchError::BadRecord {
                    index: 0,
                    reason: "r",
                },
                87,
            ),
            (
                BatchError::OffsetDelta {
                    index: 1,
                    offset_delta: 2,
                },
                87,
            ),
            (BatchError::TrailingBytes { records_count: 1 }, 87),
            (
                BatchError::DecompressFailed {
                    codec: 1,
                    reason: "r".into(),
                },
                2,
            ),
            (BatchError::DecompressedTooLarge { limit: 1 }, 10),
            (BatchError::UnknownCodec(5), 76),
        ];
        for (error, code) in cases {
            assert_eq!(batch_error_code(&error).code(), code, "{error:?}");
        }
        let out_of_range = StorageError::OffsetOutOfRange {
            offset: 9,
            log_start_offset: 0,
            log_end_offset: 5,
        };
        assert_eq!(storage_error_code(&out_of_range).code(), 1);
    }

    #[test]
    fn topic_errors_map_to_the_codes_clients_expect() {
        let cases = [
            (TopicError::InvalidName("x".into()), 17),
            (TopicError::AlreadyExists("t".into()), 36),
            (TopicError::UnknownTopic("t".into()), 3),
            (TopicError::UnknownTopicId(uuid::Uuid::nil()), 100),
            (TopicError::InvalidReplicationFactor("r".into()), 38),
            (TopicError::InvalidReplicaAssignment("a".into()), 39),
            (TopicError::InvalidPartitions("p".into()), 37),
            (TopicError::InvalidConfig("c".into()), 40),
            (TopicError::PolicyViolation("p".into()), 44),
            (TopicError::Storage("s".into()), 56),
        ];
        for (error, code) in cases {
            let failure = Failure::from(error.clone());
            assert_eq!(failure.code.code(), code, "{error:?}");
            assert_eq!(failure.message, error.to_string());
        }
    }
}
