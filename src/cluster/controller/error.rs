//! Why a topic operation failed. The server maps each to its Kafka error code.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::reassignment::ReassignmentError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("no topic has id {0}")]
    UnknownTopicId(Uuid),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    /// The change is valid but would take the broker past one of its limits.
    #[error("{0}")]
    PolicyViolation(String),
    #[error("{0}")]
    UnknownPartition(String),
    #[error("{0}")]
    NoReassignmentInProgress(String),
    #[error("{0}")]
    ElectionNotNeeded(String),
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// Clients may not create, delete or grow an internal topic (`__consumer_offsets`).
    #[error("'{0}' is an internal topic: the brokers create and manage it")]
    InternalTopic(String),
    #[error("{0}")]
    Storage(String),
    /// No controller could be reached or it lost its leadership; clients retry.
    #[error("{0}")]
    NotController(String),
    /// A SCRAM credential Kafka would not accept (iterations, an empty name or password).
    #[error("{0}")]
    UnacceptableCredential(String),
    /// A SCRAM credential to delete does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The same user and mechanism twice in one request.
    #[error("{0}")]
    DuplicateResource(String),
    #[error("{0}")]
    UnsupportedSaslMechanism(String),
}

pub type Outcome<T> = Result<T, TopicError>;

impl From<ReassignmentError> for TopicError {
    fn from(error: ReassignmentError) -> TopicError {
        let text = error.to_string();
        match error {
            ReassignmentError::UnknownPartition(_) => TopicError::UnknownPartition(text),
            ReassignmentError::NoReassignmentInProgress(_) => {
                TopicError::NoReassignmentInProgress(text)
            }
            ReassignmentError::InvalidReplicaAssignment(_) => {
                TopicError::InvalidReplicaAssignment(text)
            }
            ReassignmentError::InvalidReplicationFactor(_) => {
                TopicError::InvalidReplicationFactor(text)
            }
            ReassignmentError::ElectionNotNeeded(_) => TopicError::ElectionNotNeeded(text),
            ReassignmentError::PreferredLeaderNotAvailable(_) => {
                TopicError::PreferredLeaderNotAvailable(text)
            }
            ReassignmentError::EligibleLeadersNotAvailable(_) => {
                TopicError::EligibleLeadersNotAvailable(text)
            }
        }
    }
}
