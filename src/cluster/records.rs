//! The records of the replicated metadata log, and how they change the catalogue. Every
//! node applies the same records in the same order (the metadata quorum's commit order),
//! so every node holds the same `ClusterMetadata`. JSON-encoded; decoding is bounded by
//! the quorum's message cap and never panics.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::metadata::{BrokerInfo, ClusterMetadata, PartitionState, Topic};
use crate::security::acl::AclBinding;
use crate::security::quota::{QuotaEntity, QuotaValue};
use crate::security::scram::{ScramCredential, ScramMechanism};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker (re)registered; its epoch is this record's index. It starts fenced.
    RegisterBroker(BrokerInfo),
    /// A broker's heartbeats stopped (or it shut down): it leads nothing.
    FenceBroker {
        id: i32,
        epoch: u64,
    },
    /// A registered broker is heartbeating and caught up: clients may use it.
    UnfenceBroker {
        id: i32,
        epoch: u64,
    },
    /// A topic created or changed (grown, reconfigured): the whole entry.
    PutTopic(Topic),
    RemoveTopic {
        id: Uuid,
    },
    /// A partition's new leader, leader epoch or in-sync replicas (`cluster::election`).
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        state: PartitionState,
    },
    /// Producer ids below this may have been handed out.
    ProducerIdBlock {
        end: i64,
    },
    /// A user's SCRAM credential for one mechanism, new or replaced.
    PutScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    RemoveScramCredential {
        user: String,
        mechanism: ScramMechanism,
    },
    /// An ACL binding created (CreateAcls).
    PutAcl(AclBinding),
    /// An ACL binding deleted (DeleteAcls).
    RemoveAcl(AclBinding),
    /// The bootstrap users were considered (`ClusterMetadata::bootstrapped`).
    Bootstrapped,
    /// A client quota set (AlterClientQuotas).
    PutClientQuota {
        entity: QuotaEntity,
        key: String,
        value: QuotaValue,
    },
    /// A client quota removed.
    RemoveClientQuota {
        entity: QuotaEntity,
        key: String,
    },
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata records always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<MetadataRecord, String> {
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    }
}

/// The records of one metadata entry (the quorum replicates entries, each a list of
/// records applied together).
pub fn encode_entry(records: &[MetadataRecord]) -> Vec<u8> {
    serde_json::to_vec(records).expect("metadata records always serialize")
}

pub fn decode_entry(bytes: &[u8]) -> Result<Vec<MetadataRecord>, String> {
    serde_json::from_slice(bytes).map_err(|error| error.to_string())
}

/// Applies `record` (committed at `index`) to `metadata`. Records that no longer match
/// the state (a fence for an older epoch) change nothing.
pub fn apply(metadata: &mut ClusterMetadata, index: u64, record: MetadataRecord) {
    match record {
        MetadataRecord::RegisterBroker(mut broker) => {
            broker.epoch = index;
            broker.fenced = true;
            metadata.brokers.insert(broker.id, broker);
        }
        MetadataRecord::FenceBroker { id, epoch } => set_fenced(metadata, id, epoch, true),
        MetadataRecord::UnfenceBroker { id, epoch } => set_fenced(metadata, id, epoch, false),
        MetadataRecord::PutTopic(topic) => metadata.insert_topic(topic),
        MetadataRecord::PartitionChange {
            topic_id,
            partition,
            state,
        } => metadata.set_partition_state(&topic_id, partition, state),
        MetadataRecord::RemoveTopic { id } => {
            if let Some(name) = metadata.topic_by_id(&id).map(|t| t.name.clone()) {
                metadata.remove_topic(&name);
            }
        }
        MetadataRecord::ProducerIdBlock { end } => {
            metadata.producer_id_block_end = metadata.producer_id_block_end.max(end);
        }
        MetadataRecord::PutScramCredential {
            user,
            mechanism,
            credential,
        } => {
            metadata
                .scram_credentials
                .entry(user)
                .or_default()
                .insert(mechanism, credential);
        }
        MetadataRecord::PutAcl(binding) => {
            metadata.acls.insert(binding);
        }
        MetadataRecord::RemoveAcl(binding) => {
            metadata.acls.remove(&binding);
        }
        MetadataRecord::Bootstrapped => metadata.bootstrapped = true,
        MetadataRecord::PutClientQuota { entity, key, value } => {
            metadata
                .client_quotas
                .entry(entity)
                .or_default()
                .insert(key, value);
        }
        MetadataRecord::RemoveClientQuota { entity, key } => {
            if let Some(values) = metadata.client_quotas.get_mut(&entity) {
                values.remove(&key);
                if values.is_empty() {
                    metadata.client_quotas.remove(&entity);
                }
            }
        }
        MetadataRecord::RemoveScramCredential { user, mechanism } => {
            if let Some(credentials) = metadata.scram_credentials.get_mut(&user) {
                credentials.remove(&mechanism);
                if credentials.is_empty() {
                    metadata.scram_credentials.remove(&user);
                }
            }
        }
    }
}

fn set_fenced(metadata: &mut ClusterMetadata, id: i32, epoch: u64, fenced: bool) {
    if let Some(broker) = metadata.brokers.get_mut(&id) {
        if broker.epoch == epoch {
            broker.fenced = fenced;
        }
    }
}

/// The records that turn `old` into `new` (a controller change computed on a copy):
/// changed or new topics whole, removed topics by id, a new producer-id block end.
/// Brokers are not diffed: they change only through their own records.
pub fn diff(old: &ClusterMetadata, new: &ClusterMetadata) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (name, topic) in old.topics() {
        let kept = new.topic(name).is_some_and(|t| t.id == topic.id);
        if !kept {
            records.push(MetadataRecord::RemoveTopic { id: topic.id });
        }
    }
    for (name, topic) in new.topics() {
        if old.topic(name) != Some(topic) {
            records.push(MetadataRecord::PutTopic(topic.clone()));
        }
    }
    if new.producer_id_block_end != old.producer_id_block_end {
        records.push(MetadataRecord::ProducerIdBlock {
            end: new.producer_id_block_end,
        });
    }
    records.extend(diff_scram(old, new));
    records.extend(
        old.acls
            .difference(&new.acls)
            .cloned()
            .map(MetadataRecord::RemoveAcl),
    );
    records.extend(
        new.acls
            .difference(&old.acls)
            .cloned()
            .map(MetadataRecord::PutAcl),
    );
    if new.bootstrapped && !old.bootstrapped {
        records.push(MetadataRecord::Bootstrapped);
    }
    records.extend(diff_quotas(old, new));
    records
}

/// Client quotas removed, then set or changed, per (entity, key).
fn diff_quotas(old: &ClusterMetadata, new: &ClusterMetadata) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (entity, values) in &old.client_quotas {
        let kept = new.client_quotas.get(entity);
        for key in values.keys() {
            if kept.is_none_or(|kept| !kept.contains_key(key)) {
                records.push(MetadataRecord::RemoveClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    for (entity, values) in &new.client_quotas {
        let before = old.client_quotas.get(entity);
        for (key, &value) in values {
            if before.and_then(|b| b.get(key)) != Some(&value) {
                records.push(MetadataRecord::PutClientQuota {
                    entity: entity.clone(),
                    key: key.clone(),
                    value,
                });
            }
        }
    }
    records
}

/// The credential records that turn `old`'s SCRAM credentials into `new`'s.
fn diff_scram(old: &ClusterMetadata, new: &ClusterMetadata) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (user, credentials) in &old.scram_credentials {
        for mechanism in credentials.keys() {
            let kept = new
                .scram_credentials
                .get(user)
                .is_some_and(|now| now.contains_key(mechanism));
            if !kept {
                records.push(MetadataRecord::RemoveScramCredential {
                    user: user.clone(),
                    mechanism: *mechanism,
                });
            }
        }
    }
    for (user, credentials) in &new.scram_credentials {
        for (mechanism, credential) in credentials {
            let before = old
                .scram_credentials
                .get(user)
                .and_then(|then| then.get(mechanism));
            if before != Some(credential) {
                records.push(MetadataRecord::PutScramCredential {
                    user: user.clone(),
                    mechanism: *mechanism,
                    credential: credential.clone(),
                });
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::metadata::fixture;

    fn topic(name: &str, partitions: i32) -> Topic {
        Topic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            configs: BTreeMap::new(),
            replicas: vec![vec![1]; partitions as usize],
            states: Vec::new(),
        }
    }

    #[test]
    fn applying_the_diff_reproduces_the_change() {
        let mut old = ClusterMetadata::new();
        old.insert_topic(topic("kept", 1));
        old.insert_topic(topic("grown", 1));
        old.insert_topic(topic("gone", 2));
        old.insert_topic(topic("recreated", 1));
        let mut new = old.clone();
        new.remove_topic("gone");
        new.insert_topic(topic("recreated", 3));
        let grown = Topic {
            partitions: 2,
            replicas: vec![vec![1], vec![2]],
            ..old.topic("grown").unwrap().clone()
        };
        new.insert_topic(grown);
        new.insert_topic(topic("added", 4));
        new.producer_id_block_end = 2000;
        let records = diff(&old, &new);
        assert_eq!(records.len(), 6, "{records:?}");
        let mut replayed = old.clone();
        for (index, record) in records.into_iter().enumerate() {
            let decoded = MetadataRecord::decode(&record.encode()).unwrap();
            apply(&mut replayed, index as u64, decoded);
        }
        assert_eq!(replayed, new);
    }

    #[test]
    fn acl_bindings_and_credentials_diff_and_replay() {
        use crate::security::acl::{
            AclBinding, Operation, PatternType, Permission, ResourcePattern, ResourceType,
        };
        let binding = |name: &str, operation| AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Topic,
                name: name.into(),
                pattern: PatternType::Literal,
            },
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission: Permission::Allow,
        };
        let credential = ScramCredential::from_salted_password(
            ScramMechanism::Sha256,
            b"salt".to_vec(),
            4096,
            &[7u8; 32],
        );
        let mut old = ClusterMetadata::new();
        old.acls.insert(binding("kept", Operation::Read));
        old.acls.insert(binding("gone", Operation::Write));
        old.scram_credentials
            .entry("alice".into())
            .or_default()
            .insert(ScramMechanism::Sha256, credential.clone());
        let mut new = old.clone();
        new.acls.remove(&binding("gone", Operation::Write));
        new.acls.insert(binding("added", Operation::Describe));
        new.scram_credentials.clear();
        new.scram_credentials
            .entry("bob".into())
            .or_default()
            .insert(ScramMechanism::Sha256, credential);
        new.bootstrapped = true;
        let quota = |user: &str| crate::security::quota::QuotaEntity {
            user: Some(crate::security::quota::EntityName::Named(user.into())),
            client_id: None,
        };
        let value = crate::security::quota::QuotaValue::new(1024.0);
        old.client_quotas
            .entry(quota("gone"))
            .or_default()
            .insert("producer_byte_rate".into(), value);
        new.client_quotas
            .entry(quota("added"))
            .or_default()
            .insert("consumer_byte_rate".into(), value);
        let records = diff(&old, &new);
        assert_eq!(records.len(), 7, "{records:?}");
        let mut replayed = old.clone();
        for (index, record) in records.into_iter().enumerate() {
            let decoded = MetadataRecord::decode(&record.encode()).unwrap();
            apply(&mut replayed, index as u64, decoded);
        }
        assert_eq!(replayed, new);
    }

    #[test]
    fn a_fence_for_an_older_registration_changes_nothing() {
        let mut metadata = ClusterMetadata::new();
        let broker = fixture::broker(2, 0, false);
        apply(&mut metadata, 10, MetadataRecord::RegisterBroker(broker));
        assert!(
            metadata.brokers[&2].fenced,
            "registered brokers start fenced"
        );
        apply(
            &mut metadata,
            11,
            MetadataRecord::UnfenceBroker { id: 2, epoch: 10 },
        );
        assert!(!metadata.brokers[&2].fenced);
        apply(
            &mut metadata,
            12,
            MetadataRecord::FenceBroker { id: 2, epoch: 9 },
        );
        assert!(!metadata.brokers[&2].fenced);
        assert!(MetadataRecord::decode(b"{\"Nope\":1}").is_err());
    }
}
