//! The controller's operations as data, so that a broker that does not lead the metadata
//! quorum can send them to the one that does (`shard::cluster`), and a single broker runs
//! them in place. Serialized as JSON between nodes.

use serde::{Deserialize, Serialize};

use super::controller::{
    Controller, Outcome, PartitionGrowth, PartitionReassignment, QuotaAlteration, ScramDeletion,
    ScramUpsertion, TopicConfigChange, TopicHost, TopicRef, TopicSpec,
};
use super::metadata::Topic;
use super::reassignment::ElectionKind;
use crate::security::acl::{AclBinding, AclFilter};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// AlterPartitionReassignments.
    ReassignPartitions {
        changes: Vec<PartitionReassignment>,
        allow_factor_change: bool,
    },
    ElectLeaders {
        kind: ElectionKind,
        /// `None`: every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    AlterUserScramCredentials {
        deletions: Vec<ScramDeletion>,
        upsertions: Vec<ScramUpsertion>,
    },
    /// AlterClientQuotas.
    AlterClientQuotas {
        alterations: Vec<QuotaAlteration>,
        validate_only: bool,
    },
    /// CreateAcls: bindings already checked by the handler.
    CreateAcls(Vec<AclBinding>),
    /// DeleteAcls.
    DeleteAcls(Vec<AclFilter>),
    /// A node's own call at start: its bootstrap users (`petrel format --add-scram`).
    BootstrapUsers(Vec<ScramUpsertion>),
    /// A broker's own call: creates `__consumer_offsets` (`Controller::create_offsets_topic`).
    CreateOffsetsTopic {
        partitions: i32,
        replication_factor: i16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    Topics(Vec<Outcome<Topic>>),
    Done(Vec<Outcome<()>>),
    ProducerId(Outcome<i64>),
    /// Per partition elected (or refused): topic, partition, outcome.
    Elected(Vec<(String, i32, Outcome<()>)>),
    /// Per user: AlterUserScramCredentials.
    Users(Vec<(String, Outcome<()>)>),
    /// Per filter: the bindings DeleteAcls removed.
    DeletedAcls(Vec<Outcome<Vec<AclBinding>>>),
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
            ControlCall::ReassignPartitions {
                changes,
                allow_factor_change,
            } => ControlReply::Done(
                self.reassign_partitions(host, changes, allow_factor_change)
                    .await,
            ),
            ControlCall::ElectLeaders { kind, partitions } => {
                ControlReply::Elected(self.elect_leaders(host, kind, partitions).await)
            }
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
            ControlCall::BootstrapUsers(upsertions) => {
                ControlReply::Done(vec![self.bootstrap_users(host, upsertions).await])
            }
            ControlCall::AlterClientQuotas {
                alterations,
                validate_only,
            } => ControlReply::Done(
                self.alter_client_quotas(host, alterations, validate_only)
                    .await,
            ),
            ControlCall::CreateAcls(bindings) => {
                ControlReply::Done(self.create_acls(host, bindings).await)
            }
            ControlCall::DeleteAcls(filters) => {
                ControlReply::DeletedAcls(self.delete_acls(host, filters).await)
            }
            ControlCall::AlterUserScramCredentials {
                deletions,
                upsertions,
            } => ControlReply::Users(
                self.alter_user_scram_credentials(host, deletions, upsertions)
                    .await,
            ),
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

    /// Per-partition outcomes of an election; a failed call fails each of `asked` (empty
    /// when every partition was asked: the failure is the whole answer).
    pub fn into_elected(
        self,
        asked: &[(String, i32)],
    ) -> Result<Vec<(String, i32, Outcome<()>)>, super::controller::TopicError> {
        match self {
            ControlReply::Elected(results) => Ok(results),
            other => {
                let failure = other.failure();
                if asked.is_empty() {
                    return Err(failure);
                }
                Ok(asked
                    .iter()
                    .map(|(name, partition)| (name.clone(), *partition, Err(failure.clone())))
                    .collect())
            }
        }
    }

    /// Per-user outcomes; a failed call fails each of `users`.
    pub fn into_users(self, users: &[String]) -> Vec<(String, Outcome<()>)> {
        match self {
            ControlReply::Users(results) => results,
            other => {
                let failure = other.failure();
                users
                    .iter()
                    .map(|user| (user.clone(), Err(failure.clone())))
                    .collect()
            }
        }
    }

    /// Per-filter outcomes of a DeleteAcls of `count` filters.
    pub fn into_deleted_acls(self, count: usize) -> Vec<Outcome<Vec<AclBinding>>> {
        match self {
            ControlReply::DeletedAcls(outcomes) => outcomes,
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
