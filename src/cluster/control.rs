//! The controller's operations as data, so that a broker that does not lead the metadata
//! quorum can send them to the one that does (`shard::cluster`), and a single broker runs
//! them in place. Serialized as JSON between nodes.

use serde::{Deserialize, Serialize};

use super::controller::{
    Controller, Outcome, PartitionGrowth, TopicConfigChange, TopicHost, TopicRef, TopicSpec,
};
use super::metadata::Topic;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlCall {
    CreateTopics {
        specs: Vec<TopicSpec>,
        validate_only: bool,
    },
    DeleteTopics(Vec<TopicRef>),
    CreatePartitions {
        growths: Vec<PartitionGrowth>,
        validate_only: bool,
    },
    AlterTopicConfigs {
        changes: Vec<TopicConfigChange>,
        validate_only: bool,
    },
    AllocateProducerId,
    /// A broker's own call: creates `__consumer_offsets` (`Controller::create_offsets_topic`).
    CreateOffsetsTopic {
        partitions: i32,
        replication_factor: i16,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlReply {
    Topics(Vec<Outcome<Topic>>),
    Done(Vec<Outcome<()>>),
    ProducerId(Outcome<i64>),
    /// The operation did not run (no controller could be reached): each item fails so.
    Failed(super::controller::TopicError),
}

impl Controller {
    /// Runs `call` on this controller.
    pub async fn execute(&self, host: &impl TopicHost, call: ControlCall) -> ControlReply {
        match call {
            ControlCall::CreateTopics {
                specs,
                validate_only,
            } => ControlReply::Topics(self.create_topics(host, specs, validate_only).await),
            ControlCall::DeleteTopics(refs) => {
                ControlReply::Topics(self.delete_topics(host, refs).await)
            }
            ControlCall::CreatePartitions {
                growths,
                validate_only,
            } => ControlReply::Done(self.create_partitions(host, growths, validate_only).await),
            ControlCall::AlterTopicConfigs {
                changes,
                validate_only,
            } => ControlReply::Done(self.alter_topic_configs(host, changes, validate_only).await),
            ControlCall::CreateOffsetsTopic {
                partitions,
                replication_factor,
            } => ControlReply::Topics(vec![
                self.create_offsets_topic(host, partitions, replication_factor)
                    .await,
            ]),
            ControlCall::AllocateProducerId => {
                ControlReply::ProducerId(self.allocate_producer_id(host).await)
            }
        }
    }
}

impl ControlReply {
    /// Per-topic outcomes of a call about `count` topics.
    pub fn into_topics(self, count: usize) -> Vec<Outcome<Topic>> {
        match self {
            ControlReply::Topics(outcomes) => outcomes,
            other => vec![Err(other.failure()); count],
        }
    }

    /// Per-item outcomes of a call about `count` items.
    pub fn into_done(self, count: usize) -> Vec<Outcome<()>> {
        match self {
            ControlReply::Done(outcomes) => outcomes,
            other => vec![Err(other.failure()); count],
        }
    }

    pub fn into_producer_id(self) -> Outcome<i64> {
        match self {
            ControlReply::ProducerId(outcome) => outcome,
            other => Err(other.failure()),
        }
    }

    fn failure(self) -> super::controller::TopicError {
        match self {
            ControlReply::Failed(error) => error,
            other => super::controller::TopicError::NotController(format!(
                "the controller answered {other:?}"
            )),
        }
    }
}
