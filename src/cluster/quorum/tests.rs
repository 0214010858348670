//! Three quorum nodes on one executor, connected by an in-memory transport that a test
//! can cut.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use raft::eraftpb::Message;

use super::core::{QuorumSettings, QuorumStatus, StateMachine};
use super::journal::Journal;
use super::node::{QuorumNode, Transport};
use super::store::initial_snapshot;
use crate::runtime::shutdown::Shutdown;
use crate::storage::{ShardStorage, ShardStorageConfig};

#[derive(Default)]
struct Network {
    nodes: HashMap<u64, Rc<QuorumNode>>,
    /// Nodes cut off from every other.
    isolated: HashSet<u64>,
}

#[derive(Clone)]
struct Link(Rc<RefCell<Network>>);

impl Transport for Link {
    fn send(&self, message: Message) {
        // Through the codec, as over TCP.
        let bytes = super::codec::encode_message(&message);
        let network = self.0.borrow();
        if network.isolated.contains(&message.from) || network.isolated.contains(&message.to) {
            return;
        }
        if let Some(node) = network.nodes.get(&message.to) {
            node.receive(super::codec::decode_message(bytes).expect("own encoding"));
        }
    }
}

/// Applied records in order; the snapshot is all of them joined.
#[derive(Clone, Default)]
struct Records(Rc<RefCell<Vec<Vec<u8>>>>);

impl StateMachine for Records {
    fn apply(&self, _index: u64, data: &[u8]) {
        self.0.borrow_mut().push(data.to_vec());
    }
    fn snapshot(&self) -> Bytes {
        Bytes::from(self.0.borrow().join(&b'\n'))
    }
    fn restore(&self, _index: u64, data: &[u8]) {
        *self.0.borrow_mut() = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    }
}

struct TestNode {
    node: Rc<QuorumNode>,
    records: Records,
    shutdown: Rc<Shutdown>,
    stopped: async_channel::Receiver<()>,
}

async fn start(id: u64, dir: &Path, network: &Link, snapshot_entries: u64) -> TestNode {
    let storage = ShardStorage::new(&ShardStorageConfig::default());
    let (journal, mut core) = Journal::open(storage, dir.join(format!("node-{id}")))
        .await
        .expect("journal");
    if core
        .snapshot
        .get_metadata()
        .get_conf_state()
        .voters
        .is_empty()
    {
        core.snapshot = initial_snapshot(vec![1, 2, 3]);
    }
    let records = Records::default();
    let shutdown = Rc::new(Shutdown::new());
    let mut settings = QuorumSettings::new(id);
    settings.tick = Duration::from_millis(20);
    settings.snapshot_entries = snapshot_entries;
    let (node, stopped) = QuorumNode::start(
        settings,
        journal,
        core,
        records.clone(),
        network.clone(),
        shutdown.clone(),
    )
    .expect("start");
    network.0.borrow_mut().nodes.insert(id, node.clone());
    TestNode {
        node,
        records,
        shutdown,
        stopped,
    }
}

async fn stop(node: TestNode, network: &Link) {
    network.0.borrow_mut().nodes.remove(&node.node.id());
    node.shutdown.begin();
    let _ = node.stopped.recv().await;
}

async fn leader_of(nodes: &[&TestNode]) -> Rc<QuorumNode> {
    for _ in 0..500 {
        for node in nodes {
            if node.node.status().leader_ready {
                return node.node.clone();
            }
        }
        crate::runtime::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader elected");
}

async fn applied_everywhere(nodes: &[&TestNode], index: u64) {
    for node in nodes {
        node.node
            .wait_for(Duration::from_secs(5), |s: &QuorumStatus| {
                s.applied >= index
            })
            .await
            .unwrap_or_else(|status| panic!("node {} stuck at {status:?}", node.node.id()));
    }
}

fn run<F, Fut>(test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().to_path_buf();
    crate::runtime::run_single("quorum-test", dir.clone(), move || test(dir)).expect("executor");
}

#[test]
fn a_committed_record_reaches_every_node_and_survives_a_restart() {
    run(|dir| async move {
        let network = Link(Rc::default());
        let a = start(1, &dir, &network, 1000).await;
        let b = start(2, &dir, &network, 1000).await;
        let c = start(3, &dir, &network, 1000).await;
        let leader = leader_of(&[&a, &b, &c]).await;
        let follower = [&a, &b, &c]
            .into_iter()
            .find(|n| n.node.id() != leader.id())
            .unwrap();
        let refused = follower.node.propose(Bytes::from_static(b"x")).await;
        assert!(
            matches!(refused, Err(super::core::QuorumError::NotLeader { leader: l }) if l == leader.id()),
            "{refused:?}"
        );
        let mut last = 0;
        for n in 0..5u8 {
            last = leader
                .propose(Bytes::from(vec![b'a' + n]))
                .await
                .expect("commit");
        }
        applied_everywhere(&[&a, &b, &c], last).await;
        let want: Vec<Vec<u8>> = (0..5u8).map(|n| vec![b'a' + n]).collect();
        for node in [&a, &b, &c] {
            assert_eq!(*node.records.0.borrow(), want);
        }
        // A restarted node has everything before it hears from anyone.
        network.0.borrow_mut().isolated.insert(3);
        stop(c, &network).await;
        let c = start(3, &dir, &network, 1000).await;
        assert_eq!(*c.records.0.borrow(), want);
        network.0.borrow_mut().isolated.clear();
        stop(a, &network).await;
        stop(b, &network).await;
        stop(c, &network).await;
    });
}

#[test]
fn a_new_leader_takes_over_and_a_lagging_node_catches_up_from_a_snapshot() {
    run(|dir| async move {
        let network = Link(Rc::default());
        let a = start(1, &dir, &network, 4).await;
        let b = start(2, &dir, &network, 4).await;
        let c = start(3, &dir, &network, 4).await;
        let first = leader_of(&[&a, &b, &c]).await;
        first
            .propose(Bytes::from_static(b"one"))
            .await
            .expect("commit");
        // Cut the leader off: the other two elect a new one and commit without it.
        network.0.borrow_mut().isolated.insert(first.id());
        let rest: Vec<&TestNode> = [&a, &b, &c]
            .into_iter()
            .filter(|n| n.node.id() != first.id())
            .collect();
        let second = leader_of(&rest).await;
        assert_ne!(second.id(), first.id());
        let mut last = 0;
        for n in 0..12u8 {
            last = second
                .propose(Bytes::from(vec![b'A' + n]))
                .await
                .expect("commit");
        }
        // The old leader cannot commit alone.
        let lone = first.propose(Bytes::from_static(b"lost")).await;
        assert!(lone.is_err(), "{lone:?}");
        // Back on the network, it catches up (the others compacted: a snapshot).
        network.0.borrow_mut().isolated.clear();
        applied_everywhere(&[&a, &b, &c], last).await;
        let expected = rest[0].records.0.borrow().clone();
        assert_eq!(expected.len(), 13);
        for node in [&a, &b, &c] {
            assert_eq!(
                *node.records.0.borrow(),
                expected,
                "node {}",
                node.node.id()
            );
        }
        stop(a, &network).await;
        stop(b, &network).await;
        stop(c, &network).await;
    });
}

/// A follower whose journal was lost (a replaced disk, a wiped and reformatted data dir)
/// comes back empty while the leader still believes it holds the log: the leader's
/// heartbeats name a commit index past its end, which raft-rs would take as a fatal
/// inconsistency (a panic, again at every restart). The node ignores that commit index
/// and catches up by the ordinary append path instead.
#[test]
fn a_follower_that_lost_its_journal_catches_up_instead_of_crashing() {
    run(|dir| async move {
        let network = Link(Rc::default());
        let a = start(1, &dir, &network, 1000).await;
        let b = start(2, &dir, &network, 1000).await;
        let c = start(3, &dir, &network, 1000).await;
        let leader = leader_of(&[&a, &b, &c]).await;
        for n in 0..5u8 {
            leader
                .propose(Bytes::from(vec![b'a' + n]))
                .await
                .expect("commit");
        }
        let wiped = [&a, &b, &c]
            .into_iter()
            .find(|n| n.node.id() != leader.id())
            .map(|n| n.node.id())
            .expect("a follower");
        let (mut kept, lost): (Vec<TestNode>, Vec<TestNode>) =
            [a, b, c].into_iter().partition(|n| n.node.id() != wiped);
        for node in lost {
            stop(node, &network).await;
        }
        std::fs::remove_dir_all(dir.join(format!("node-{wiped}"))).expect("wipe");
        let fresh = start(wiped, &dir, &network, 1000).await;
        // Heartbeats reach it for a while before anything new is proposed.
        crate::runtime::time::sleep(Duration::from_millis(300)).await;
        let last = leader
            .propose(Bytes::from_static(b"after"))
            .await
            .expect("commit");
        kept.push(fresh);
        let nodes: Vec<&TestNode> = kept.iter().collect();
        applied_everywhere(&nodes, last).await;
        let expected = nodes[0].records.0.borrow().clone();
        assert_eq!(expected.len(), 6);
        for node in &nodes {
            assert_eq!(
                *node.records.0.borrow(),
                expected,
                "node {}",
                node.node.id()
            );
        }
        for node in kept {
            stop(node, &network).await;
        }
    });
}

/// Three nodes over real loopback TCP links; then a node of another cluster is refused.
#[test]
fn nodes_agree_over_tcp_and_a_node_of_another_cluster_is_refused() {
    use super::transport::{Hello, PeerTransport, Peers};
    run(|dir| async move {
        let listeners: Vec<crate::runtime::net::Listener> = (0..4)
            .map(|_| {
                crate::runtime::net::Listener::bind("127.0.0.1:0".parse().unwrap()).expect("bind")
            })
            .collect();
        let addresses: HashMap<u64, std::net::SocketAddr> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.local_addr().expect("address")))
            .collect();
        let mut nodes = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let id = index as u64 + 1;
            let cluster_id = if id == 4 { "other" } else { "petrel" };
            let shutdown = Rc::new(Shutdown::new());
            let peers = Peers::new(
                Hello {
                    cluster_id: cluster_id.into(),
                    node_id: id,
                },
                addresses.clone(),
                None,
                shutdown.clone(),
            );
            crate::runtime::spawn(peers.clone().serve(listener)).detach();
            if id == 4 {
                // Not a voter: it only knocks on node 1's door.
                let answer = peers.call(1, b"hello?", Duration::from_millis(500)).await;
                assert!(answer.is_err());
                assert_eq!(
                    peers.refused_by_majority(),
                    None,
                    "one refusal of four voters"
                );
                for other in [2, 3] {
                    let _ = peers
                        .call(other, b"hello?", Duration::from_millis(500))
                        .await;
                }
                let refusal = peers.refused_by_majority().expect("refused by a majority");
                assert!(
                    refusal.contains("cluster other") && refusal.contains("cluster petrel"),
                    "{refusal}"
                );
                continue;
            }
            let storage = ShardStorage::new(&ShardStorageConfig::default());
            let (journal, mut core) = Journal::open(storage, dir.join(format!("tcp-{id}")))
                .await
                .expect("journal");
            core.snapshot = initial_snapshot(vec![1, 2, 3]);
            let records = Records::default();
            let mut settings = QuorumSettings::new(id);
            settings.tick = Duration::from_millis(20);
            let (node, stopped) = QuorumNode::start(
                settings,
                journal,
                core,
                records.clone(),
                PeerTransport(peers.clone()),
                shutdown.clone(),
            )
            .expect("start");
            peers.set_node(node.clone());
            nodes.push(TestNode {
                node,
                records,
                shutdown,
                stopped,
            });
        }
        let refs: Vec<&TestNode> = nodes.iter().collect();
        let leader = leader_of(&refs).await;
        let index = leader
            .propose(Bytes::from_static(b"over tcp"))
            .await
            .expect("commit");
        applied_everywhere(&refs, index).await;
        for node in &nodes {
            assert_eq!(*node.records.0.borrow(), vec![b"over tcp".to_vec()]);
        }
        for node in nodes {
            node.shutdown.begin();
            let _ = node.stopped.recv().await;
        }
    });
}
