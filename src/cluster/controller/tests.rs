//! The controller with a host that can fail at any step.

use std::cell::RefCell;
use std::collections::BTreeSet;

use std::ops::Range;
use std::sync::Arc;

use std::collections::BTreeMap;

use uuid::Uuid;

use super::assignment::{assign_round_robin, check_assignments};
use super::*;
use crate::cluster::metadata::{ClusterMetadata, PartitionState, Topic, OFFSETS_TOPIC};
use crate::cluster::topic_config::TopicDefaults;

/// A host that opens partitions in order and fails at one of them, remembering which
/// logs are open.
struct FakeHost {
    metadata: RefCell<Arc<ClusterMetadata>>,
    fail_at: i32,
    open: RefCell<BTreeSet<(String, i32)>>,
    commit_fails: bool,
}

impl TopicHost for FakeHost {
    fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    async fn open_logs(&self, topic: &Topic, range: Range<i32>) -> Result<(), String> {
        for partition in range {
            if partition == self.fail_at {
                return Err(format!("cannot open partition {partition}"));
            }
            self.open
                .borrow_mut()
                .insert((topic.name.clone(), partition));
        }
        Ok(())
    }

    async fn delete_logs(&self, topic: &Topic) {
        self.open
            .borrow_mut()
            .retain(|(name, _)| name != &topic.name);
    }

    async fn discard_logs(&self, topic: &Topic, range: Range<i32>) {
        self.open
            .borrow_mut()
            .retain(|(name, index)| name != &topic.name || !range.contains(index));
    }

    async fn reconfigure_logs(&self, _topic: &Topic) {}

    async fn commit(&self, metadata: ClusterMetadata) -> Result<(), String> {
        if self.commit_fails {
            return Err("the metadata cannot be persisted".into());
        }
        *self.metadata.borrow_mut() = Arc::new(metadata);
        Ok(())
    }
}

/// A catalogue with the one broker, 0, live.
fn one_broker() -> ClusterMetadata {
    let mut metadata = ClusterMetadata::new();
    metadata.brokers.insert(
        0,
        crate::cluster::metadata::BrokerInfo {
            id: 0,
            host: "localhost".into(),
            port: 9092,
            incarnation: Uuid::nil(),
            epoch: 0,
            fenced: false,
            listeners: Vec::new(),
        },
    );
    metadata
}

fn controller() -> Controller {
    Controller::new(ControllerSettings {
        node_id: 0,
        default_partitions: 1,
        topic_defaults: TopicDefaults {
            min_insync_replicas: 1,
            replication_factor: 1,
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: -1,
            max_message_bytes: 1 << 20,
        },
        partitions_max: 1000,
    })
}

#[test]
fn a_failed_growth_closes_the_partitions_it_opened_and_keeps_the_old_ones() {
    let mut metadata = one_broker();
    let topic = Topic {
        name: "t".into(),
        id: Uuid::new_v4(),
        partitions: 2,
        configs: BTreeMap::new(),
        replicas: vec![vec![0]; 2],
        states: vec![PartitionState::new(&[0], |_| true); 2],
    };
    metadata.insert_topic(topic);
    let host = FakeHost {
        metadata: RefCell::new(Arc::new(metadata)),
        fail_at: 3,
        open: RefCell::new([("t".to_string(), 0), ("t".to_string(), 1)].into()),
        commit_fails: false,
    };
    let grown = futures_lite::future::block_on(controller().create_partitions(
        &host,
        vec![PartitionGrowth {
            topic: "t".into(),
            count: 5,
            assignments: None,
        }],
        false,
    ));
    assert!(
        matches!(grown.as_slice(), [Err(TopicError::Storage(_))]),
        "{grown:?}"
    );
    let open: Vec<(String, i32)> = host.open.borrow().iter().cloned().collect();
    assert_eq!(open, [("t".to_string(), 0), ("t".to_string(), 1)]);
    assert_eq!(host.metadata().topic("t").map(|t| t.partitions), Some(2));
}

#[test]
fn logs_of_a_change_that_cannot_be_persisted_are_deleted_again() {
    let temp = tempfile::tempdir().expect("temp dir");
    // The metadata file cannot be written (its directory does not exist).
    let outcome = crate::runtime::run_single("controller-test", temp.path().into(), || async {
        let host = FakeHost {
            metadata: RefCell::new(Arc::new(one_broker())),
            fail_at: i32::MAX,
            open: RefCell::new(BTreeSet::new()),
            commit_fails: true,
        };
        let spec = TopicSpec {
            name: "new".into(),
            partitions: 3,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        };
        let created = controller().create_topics(&host, vec![spec], false).await;
        let open = host.open.borrow().len();
        (created, open)
    });
    let (created, open) = outcome.expect("executor");
    assert!(
        matches!(created.as_slice(), [Err(TopicError::Storage(_))]),
        "{created:?}"
    );
    assert_eq!(open, 0, "the opened logs stayed");
}

/// Only the brokers create `__consumer_offsets` (kept forever); clients can neither
/// create, delete nor grow it, nor get it auto-created.
#[test]
fn the_offsets_topic_is_internal() {
    let host = FakeHost {
        metadata: RefCell::new(Arc::new(one_broker())),
        fail_at: i32::MAX,
        open: RefCell::new(BTreeSet::new()),
        commit_fails: false,
    };
    let spec = |name: &str| TopicSpec {
        name: name.into(),
        partitions: 2,
        replication_factor: -1,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
    };
    let controller = controller();
    use futures_lite::future::block_on;
    let refused =
        block_on(controller.create_topics(&host, vec![spec("plain"), spec(OFFSETS_TOPIC)], false));
    assert!(
        matches!(
            refused.as_slice(),
            [
                Err(TopicError::InvalidConfig(_)),
                Err(TopicError::InternalTopic(_))
            ]
        ),
        "{refused:?}"
    );
    assert!(
        host.metadata().topics().is_empty(),
        "nothing of that request created"
    );
    assert!(auto_create_specs(&host.metadata(), vec![OFFSETS_TOPIC.into()]).is_empty());
    let created = block_on(controller.create_offsets_topic(&host, 4, 1)).expect("created");
    assert_eq!(created.partitions, 4);
    assert_eq!(
        created.configs.get("retention.ms").map(String::as_str),
        Some("-1")
    );
    let deleted =
        block_on(controller.delete_topics(&host, vec![TopicRef::Name(OFFSETS_TOPIC.into())]));
    assert!(matches!(
        deleted.as_slice(),
        [Err(TopicError::InternalTopic(_))]
    ));
    let grown = block_on(controller.create_partitions(
        &host,
        vec![PartitionGrowth {
            topic: OFFSETS_TOPIC.into(),
            count: 8,
            assignments: None,
        }],
        false,
    ));
    assert!(matches!(
        grown.as_slice(),
        [Err(TopicError::InternalTopic(_))]
    ));
    assert_eq!(
        host.metadata().topic(OFFSETS_TOPIC).map(|t| t.partitions),
        Some(4)
    );
}

/// Three brokers, one fenced: new partitions spread round robin over the two live
/// ones, explicit assignments must name registered brokers, and a replication factor
/// above the live brokers is refused.
#[test]
fn partitions_are_assigned_round_robin_over_live_brokers() {
    let mut metadata = one_broker();
    for (id, fenced) in [(1, false), (2, true)] {
        let mut broker = metadata.brokers[&0].clone();
        broker.id = id;
        broker.fenced = fenced;
        metadata.brokers.insert(id, broker);
    }
    let replicas = assign_round_robin(&metadata, "t", 0..4, 1).expect("assign");
    let leaders: Vec<i32> = replicas.iter().map(|r| r[0]).collect();
    assert!(leaders.iter().all(|id| [0, 1].contains(id)), "{leaders:?}");
    assert_ne!(leaders[0], leaders[1]);
    assert_eq!(leaders[0], leaders[2]);
    // Two replicas each: both live brokers, the leaders still spread.
    let replicas = assign_round_robin(&metadata, "t", 0..2, 2).expect("assign");
    assert_eq!(replicas[0].len(), 2);
    assert_ne!(replicas[0][0], replicas[0][1]);
    assert_ne!(replicas[0][0], replicas[1][0]);
    assert!(matches!(
        assign_round_robin(&metadata, "t", 0..1, 3),
        Err(TopicError::InvalidReplicationFactor(_))
    ));
    assert!(check_assignments(&metadata, &[vec![2], vec![0]]).is_ok());
    for bad in [vec![vec![7]], vec![vec![0], vec![]], vec![vec![0, 0]]] {
        assert!(
            matches!(
                check_assignments(&metadata, &bad),
                Err(TopicError::InvalidReplicaAssignment(_))
            ),
            "{bad:?}"
        );
    }
    let mut topic_metadata = metadata.clone();
    topic_metadata.insert_topic(Topic {
        name: "t".into(),
        id: Uuid::new_v4(),
        partitions: 2,
        configs: BTreeMap::new(),
        states: vec![
            PartitionState::new(&[1], |id| metadata.is_live(id)),
            PartitionState::new(&[2], |id| metadata.is_live(id)),
        ],
        replicas: vec![vec![1], vec![2]],
    });
    let topic = topic_metadata.topic("t").unwrap();
    assert_eq!(topic_metadata.leader_of(topic, 0), Some(1));
    assert_eq!(
        topic_metadata.leader_of(topic, 1),
        None,
        "its broker is fenced"
    );
    assert_eq!(
        topic_metadata.leader_of(topic, 2),
        None,
        "no such partition"
    );
}
