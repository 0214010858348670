//! This broker as a node of a cluster (`--controller-quorum-voters`), on the controller
//! shard: the metadata quorum's node and links, the catalogue it applies, the local
//! partitions kept in step with that catalogue, the broker's registration and heartbeats,
//! and, on the quorum's leader, the controller and the fencing of silent brokers.
//!
//! Every voter applies the committed metadata records to its own catalogue (`Machine`); a
//! broker-only node (not among the voters) follows the catalogue instead: it asks a voter
//! for it, and the voter answers once it has applied something newer (a long poll), with
//! the whole catalogue (`follow_catalogue`). Then `reconcile` opens the partitions this
//! broker holds a replica of, deletes those of removed topics, applies config changes, and
//! gives every shard the new snapshot.
//! Controller operations run only on the quorum's leader once it has applied every earlier
//! entry; another node sends them there and answers once it has applied the result too.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Shard;
use crate::cluster::control::{ControlCall, ControlReply};
use crate::cluster::controller::TopicError;
use crate::cluster::election;
use crate::cluster::metadata::{BrokerInfo, ClusterMetadata, Topic};
use crate::cluster::quorum::core::{QuorumError, QuorumSettings, QuorumStatus, StateMachine};
use crate::cluster::quorum::journal::Journal;
use crate::cluster::quorum::node::QuorumNode;
use crate::cluster::quorum::store::initial_snapshot;
use crate::cluster::quorum::transport::{CallError, Hello, PeerTransport, Peers};
use crate::cluster::quorum::voters::QuorumConfig;
use crate::cluster::reassignment;
use crate::cluster::records::{self, MetadataRecord};
use crate::runtime::shutdown::Shutdown;

/// How long a call to the quorum's leader may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an answer waits for this node to apply the change it made.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How long a new leader may take to apply earlier entries before it decides anything.
const LEADER_READY_WAIT: Duration = Duration::from_secs(10);
/// How long a stopping broker waits for the quorum to fence it.
const LEAVE_WAIT: Duration = Duration::from_secs(3);
/// Retry pause while no leader is known.
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// A broker whose connection to the quorum's leader closed and did not come back within
/// this is fenced without waiting for its session to end: its process is gone (its kernel
/// closed the connection). A partition or a paused process keeps the connection and is
/// fenced when its session ends.
const DISCONNECTED_FENCE_AFTER: Duration = Duration::from_secs(1);

/// How long a voter holds a broker-only node's catalogue request when it has nothing newer.
const CATALOGUE_WAIT: Duration = Duration::from_secs(2);
/// A broker-only node's copy of the last catalogue it applied, under `__internal/`, so a
/// restart opens the replicas it holds (as a voter's journal replay does) instead of
/// taking them for leftovers of unknown topics. `<index>\n<catalogue JSON>`.
const CATALOGUE_FILE: &str = "catalogue";
/// The largest stored catalogue read back (a quorum frame's cap).
const CATALOGUE_BYTES_MAX: usize = 80 << 20;

/// What a node asks the quorum's leader (or, `Catalogue`, any voter).
#[derive(Debug, Serialize, Deserialize)]
enum NodeCall {
    /// A broker-only node asks for the catalogue once a voter has applied past `after`.
    Catalogue {
        after: u64,
    },
    Control(ControlCall),
    Register(BrokerInfo),
    Heartbeat {
        id: i32,
        epoch: u64,
        applied: u64,
    },
    /// The broker is shutting down: fence it now rather than after its session times out.
    Leave {
        id: i32,
        epoch: u64,
    },
    /// A partition's leader asks for a new ISR (a follower caught up, or fell behind).
    AlterPartition {
        broker: i32,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// A live broker's replica of a partition failed (its log's write or sync failed: a
    /// full disk, an I/O error): it leaves the ISR and hands its leadership over.
    ReplicaFailed {
        broker: i32,
        /// The broker's registration: a report from an earlier life is refused.
        epoch: u64,
        topic_id: Uuid,
        partition: i32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum NodeReply {
    /// The catalogue as applied at `index` (`None`: nothing newer than asked), and the
    /// quorum's leader as this voter knows it.
    Catalogue {
        index: u64,
        leader: u64,
        image: Option<String>,
    },
    /// The controller's answer, and the index this node must apply before answering.
    Control {
        reply: ControlReply,
        index: u64,
    },
    Registered {
        epoch: u64,
    },
    /// `stale`: the epoch named is not the broker's current registration.
    Heartbeat {
        fenced: bool,
        stale: bool,
    },
    NotLeader {
        leader: u64,
    },
    /// The request cannot be granted (e.g. a node id in use by a live broker).
    Refused(String),
    Failed(String),
}

/// Applies committed records to the node's catalogue.
struct Machine {
    image: Rc<RefCell<ClusterMetadata>>,
    changed: Rc<Event>,
}

impl StateMachine for Machine {
    fn apply(&self, index: u64, data: &[u8]) {
        match serde_json::from_slice::<Vec<MetadataRecord>>(data) {
            Ok(list) => {
                let mut image = self.image.borrow_mut();
                for record in list {
                    records::apply(&mut image, index, record);
                }
            }
            Err(error) => tracing::error!(index, %error, "undecodable metadata entry skipped"),
        }
        self.changed.notify(usize::MAX);
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.image.borrow().encode())
    }

    fn restore(&self, index: u64, data: &[u8]) {
        match ClusterMetadata::decode(data) {
            Ok(mut restored) => {
                let mut image = self.image.borrow_mut();
                restored.cluster_id = image.cluster_id.clone();
                *image = restored;
            }
            Err(error) => tracing::error!(index, %error, "undecodable metadata snapshot"),
        }
        self.changed.notify(usize::MAX);
    }
}

/// A voter of the metadata quorum, or a broker only.
enum Role {
    Voter(Rc<QuorumNode>),
    /// Its status: the catalogue's index it has applied and the leader it last heard of.
    Observer {
        status: Cell<QuorumStatus>,
        changed: Event,
    },
}

pub struct ClusterNode {
    role: Role,
    /// This node's id in the quorum's terms.
    node_id: u64,
    peers: Rc<Peers>,
    image: Rc<RefCell<ClusterMetadata>>,
    changed: Rc<Event>,
    config: QuorumConfig,
    broker_id: i32,
    incarnation: Uuid,
    /// This broker's registration epoch, once registered.
    epoch: Cell<Option<u64>>,
    /// The catalogue index every shard's snapshot has reached (`reconcile`), and its event.
    published: Cell<u64>,
    published_changed: Event,
    /// Leader only: when each broker was last heard from.
    last_seen: RefCell<HashMap<i32, Instant>>,
    /// Leader only: brokers with an unfence record in flight.
    unfencing: RefCell<HashSet<i32>>,
    shutdown: Rc<Shutdown>,
    stopped: async_channel::Receiver<()>,
}

impl ClusterNode {
    /// Starts this node of the cluster on the controller shard: journal, quorum node,
    /// links, then registers the broker and waits until the quorum has unfenced it, and
    /// opens the partitions it holds. Returns once the broker may serve.
    pub async fn start(shard: &Rc<Shard>, cluster_id: String) -> Result<Rc<ClusterNode>, String> {
        let config = shard.config.quorum.clone().ok_or("no quorum configured")?;
        let node_id = u64::try_from(shard.config.node_id).map_err(|_| "negative node id")?;
        let shutdown = Rc::new(Shutdown::new());
        {
            let shard = shard.clone();
            let shutdown = shutdown.clone();
            glommio::spawn_local(async move {
                shard
                    .shutdown
                    .or_stopped(std::future::pending::<()>())
                    .await;
                // The quorum node outlives the shard's shutdown signal until the broker
                // has been fenced (controlled shutdown, bounded by LEAVE_WAIT).
                if let Some(cluster) = shard.cluster() {
                    cluster.leave(&shard).await;
                }
                shutdown.begin();
            })
            .detach();
        }
        let peers = Peers::new(
            Hello {
                cluster_id: cluster_id.clone(),
                node_id,
            },
            config.voters.clone().into_iter().collect(),
            shutdown.clone(),
        );
        let mut empty = ClusterMetadata::new();
        empty.cluster_id = cluster_id;
        let image = Rc::new(RefCell::new(empty));
        let changed = Rc::new(Event::new());
        let (role, stopped) = if config.voters.contains_key(&node_id) {
            let (node, stopped) = start_voter(
                shard,
                &config,
                node_id,
                &peers,
                Machine {
                    image: image.clone(),
                    changed: changed.clone(),
                },
                &shutdown,
            )
            .await?;
            (Role::Voter(node), stopped)
        } else {
            tracing::info!(
                node = node_id,
                "not among the quorum's voters: joining as a broker only"
            );
            let (done, stopped) = async_channel::bounded(1);
            let ended = shutdown.clone();
            glommio::spawn_local(async move {
                ended.or_stopped(std::future::pending::<()>()).await;
                drop(done);
            })
            .detach();
            let first_voter = config.voters.keys().next().copied().unwrap_or(0);
            let mut status = QuorumStatus {
                leader: first_voter,
                ..QuorumStatus::default()
            };
            // What this node knew before it stopped, as a voter's journal would give it.
            match load_catalogue(&catalogue_path(shard)).await {
                Ok(Some((index, mut catalogue))) => {
                    catalogue.cluster_id = image.borrow().cluster_id.clone();
                    *image.borrow_mut() = catalogue;
                    status.applied = index;
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(format!("reading the stored catalogue: {error}"));
                }
            }
            let role = Role::Observer {
                status: Cell::new(status),
                changed: Event::new(),
            };
            (role, stopped)
        };
        let cluster = Rc::new(ClusterNode {
            role,
            node_id,
            peers: peers.clone(),
            image,
            changed,
            config,
            broker_id: shard.config.node_id,
            incarnation: Uuid::new_v4(),
            epoch: Cell::new(None),
            published: Cell::new(0),
            published_changed: Event::new(),
            last_seen: RefCell::new(HashMap::new()),
            unfencing: RefCell::new(Default::default()),
            shutdown,
            stopped,
        });
        *shard.cluster.borrow_mut() = Some(cluster.clone());
        if cluster.is_voter() {
            let shard = shard.clone();
            peers.set_call_handler(Rc::new(move |_caller, body| {
                let shard = shard.clone();
                Box::pin(async move { answer_call(&shard, body).await })
            }));
        } else {
            glommio::spawn_local(follow_catalogue(cluster.clone(), catalogue_path(shard))).detach();
        }
        // What this node knew before it stopped is served from the start.
        let mut published = Arc::new(ClusterMetadata::new());
        published = reconcile(shard, &published, false).await;
        cluster.register(shard).await?;
        glommio::spawn_local(heartbeat_loop(shard.clone(), cluster.clone())).detach();
        if cluster.is_voter() {
            glommio::spawn_local(leader_duties(shard.clone(), cluster.clone())).detach();
        }
        // Serve only once the quorum lists this broker as live.
        loop {
            let listener = cluster.changed.listen();
            let live = cluster
                .image
                .borrow()
                .brokers
                .get(&cluster.broker_id)
                .is_some_and(|broker| !broker.fenced && Some(broker.epoch) == cluster.epoch.get());
            if live {
                break;
            }
            if cluster.shutdown.is_started() {
                return Err("shut down while starting".into());
            }
            futures_lite::future::or(listener, glommio::timer::sleep(RETRY_DELAY)).await;
        }
        published = reconcile(shard, &published, true).await;
        glommio::spawn_local(reconcile_loop(shard.clone(), cluster.clone(), published)).detach();
        Ok(cluster)
    }

    fn is_voter(&self) -> bool {
        matches!(self.role, Role::Voter(_))
    }

    /// The quorum as this node sees it: a voter's Raft status; a broker-only node's is the
    /// catalogue index it has applied and the leader it last heard of (never itself).
    pub fn status(&self) -> QuorumStatus {
        match &self.role {
            Role::Voter(node) => node.status(),
            Role::Observer { status, .. } => status.get(),
        }
    }

    /// Waits (up to `timeout`) until the status satisfies `ready`; `Err` with the last
    /// status seen if it did not.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&QuorumStatus) -> bool,
    ) -> Result<QuorumStatus, QuorumStatus> {
        let changed = match &self.role {
            Role::Voter(node) => return node.wait_for(timeout, ready).await,
            Role::Observer { changed, .. } => changed,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let listener = changed.listen();
            let status = self.status();
            if ready(&status) {
                return Ok(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(status);
            }
            futures_lite::future::or(listener, glommio::timer::sleep(left)).await;
        }
    }

    /// Waits (up to `APPLY_WAIT`) until every shard's snapshot holds catalogue `index`.
    async fn wait_published(&self, index: u64) {
        let deadline = Instant::now() + APPLY_WAIT;
        loop {
            let listener = self.published_changed.listen();
            if self.published.get() >= index {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            futures_lite::future::or(listener, glommio::timer::sleep(left)).await;
        }
    }

    /// A broker-only node learns of a newer catalogue or another leader.
    fn observe(&self, index: Option<u64>, leader: u64) {
        let Role::Observer { status, changed } = &self.role else {
            return;
        };
        let mut seen = status.get();
        if let Some(index) = index {
            seen.applied = seen.applied.max(index);
        }
        if leader != 0 {
            seen.leader = leader;
        }
        status.set(seen);
        changed.notify(usize::MAX);
    }

    /// The catalogue as this node has applied it.
    pub fn image(&self) -> Arc<ClusterMetadata> {
        Arc::new(self.image.borrow().clone())
    }

    /// Commits `records` (as one entry) and returns once they are applied here.
    pub async fn commit(&self, records: Vec<MetadataRecord>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        propose(self, records)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// Controlled shutdown: asks the quorum to fence this broker at once, so clients stop
    /// being sent here now instead of after the session timeout. Best effort, bounded.
    pub async fn leave(&self, shard: &Rc<Shard>) {
        let Some(epoch) = self.epoch.get() else {
            return;
        };
        let call = NodeCall::Leave {
            id: self.broker_id,
            epoch,
        };
        let asked = futures_lite::future::or(async { Some(self.ask(shard, call).await) }, async {
            glommio::timer::sleep(LEAVE_WAIT).await;
            None
        })
        .await;
        match asked {
            Some(Ok(_)) => tracing::info!(broker = self.broker_id, "fenced for shutdown"),
            Some(Err(error)) => {
                tracing::warn!(%error, "could not fence this broker before stopping")
            }
            None => tracing::warn!("the quorum did not fence this broker in time before stopping"),
        }
    }

    /// Reports this broker's replica of a partition as failed (its log refuses work), so
    /// that it leaves the ISR and another in-sync replica leads instead of clients
    /// getting storage errors from it (Kafka moves leaders off a failed log dir too).
    pub async fn report_failed_replica(
        &self,
        shard: &Rc<Shard>,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<(), String> {
        let epoch = self.epoch.get().ok_or("not registered yet")?;
        let call = NodeCall::ReplicaFailed {
            broker: self.broker_id,
            epoch,
            topic_id,
            partition,
        };
        match self.ask(shard, call).await? {
            NodeReply::Heartbeat { .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }

    /// Asks the quorum's leader for a new ISR of a partition this broker leads.
    pub async fn alter_partition(
        &self,
        shard: &Rc<Shard>,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<(), String> {
        let call = NodeCall::AlterPartition {
            broker: self.broker_id,
            topic_id,
            partition,
            leader_epoch,
            isr,
        };
        match self.ask(shard, call).await? {
            NodeReply::Heartbeat { .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }

    /// Waits for the quorum node to stop (after shutdown).
    pub async fn stopped(&self) {
        let _ = self.stopped.recv().await;
    }

    async fn call(&self, call: &NodeCall) -> Result<NodeReply, String> {
        let body = serde_json::to_vec(call).map_err(|error| error.to_string())?;
        let mut leader = self.status().leader;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            if let Some(refusal) = self.peers.refused_by_majority() {
                return Err(refusal);
            }
            if Instant::now() >= deadline {
                return Err("no metadata quorum leader answered in time".into());
            }
            if leader == 0 {
                glommio::timer::sleep(RETRY_DELAY).await;
                leader = self.status().leader;
                continue;
            }
            let answer = if leader == self.node_id {
                None
            } else {
                // A call to a leader that died waits for no reply: give up on it as soon
                // as this node learns of another leader.
                let left = deadline.saturating_duration_since(Instant::now());
                let moved = self.wait_for(left, move |status| status.leader != leader);
                futures_lite::future::or(
                    async { Some(self.peers.call(leader, &body, left).await) },
                    async {
                        let _ = moved.await;
                        Some(Err(CallError::Timeout(leader)))
                    },
                )
                .await
            };
            let reply = match answer {
                // The leader is this node: its own shard answers, without the network.
                None => return Err(String::new()),
                Some(Ok(bytes)) => serde_json::from_slice::<NodeReply>(&bytes)
                    .map_err(|error| format!("undecodable reply from node {leader}: {error}"))?,
                Some(Err(error)) => {
                    tracing::debug!(%error, "calling the quorum leader failed; retrying");
                    glommio::timer::sleep(RETRY_DELAY).await;
                    leader = self.status().leader;
                    continue;
                }
            };
            match reply {
                NodeReply::NotLeader { leader: known } => {
                    glommio::timer::sleep(RETRY_DELAY).await;
                    leader = if known != 0 && known != leader {
                        known
                    } else {
                        self.status().leader
                    };
                }
                other => return Ok(other),
            }
        }
    }

    /// Registers this broker (retrying until a leader answers) and records its epoch.
    async fn register(&self, shard: &Rc<Shard>) -> Result<(), String> {
        let info = BrokerInfo {
            id: self.broker_id,
            host: shard.config.advertised.0.clone(),
            port: shard.config.advertised.1,
            incarnation: self.incarnation,
            epoch: 0,
            fenced: true,
        };
        // A broker restarted right after a crash finds its old registration still live
        // until that session ends (as in Kafka, DUPLICATE_BROKER_REGISTRATION is retried);
        // a refusal that outlasts a whole session is another live broker with this id.
        let mut refused_since: Option<Instant> = None;
        let patience = self.config.session_timeout + self.config.heartbeat_interval * 2;
        loop {
            if self.shutdown.is_started() {
                return Err("shut down while registering".into());
            }
            let reply = self.ask(shard, NodeCall::Register(info.clone())).await?;
            match reply {
                NodeReply::Registered { epoch } => {
                    self.epoch.set(Some(epoch));
                    tracing::info!(
                        broker = self.broker_id,
                        epoch,
                        "registered with the metadata quorum"
                    );
                    return Ok(());
                }
                NodeReply::Refused(reason) => {
                    let since = *refused_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= patience {
                        return Err(reason);
                    }
                    tracing::info!(%reason, "registration refused; retrying until the old session ends");
                    glommio::timer::sleep(RETRY_DELAY).await;
                }
                other => {
                    tracing::debug!(?other, "registration not granted yet; retrying");
                    glommio::timer::sleep(RETRY_DELAY).await;
                }
            }
        }
    }

    /// Sends `call` to the quorum's leader, or answers it here if this node leads.
    async fn ask(&self, shard: &Rc<Shard>, call: NodeCall) -> Result<NodeReply, String> {
        loop {
            let status = self.status();
            if status.is_leader {
                return Ok(lead(shard, self, call).await);
            }
            match self.call(&call).await {
                Err(reason) if reason.is_empty() => continue, // became the leader meanwhile
                other => return other,
            }
        }
    }
}

/// A voter's part of the start: the journal (its voters must be the configured ones), the
/// quorum listener and the Raft node.
async fn start_voter(
    shard: &Rc<Shard>,
    config: &QuorumConfig,
    node_id: u64,
    peers: &Rc<Peers>,
    machine: Machine,
    shutdown: &Rc<Shutdown>,
) -> Result<(Rc<QuorumNode>, async_channel::Receiver<()>), String> {
    let dir = shard
        .config
        .data_dir
        .join("__internal")
        .join("cluster-metadata");
    let (journal, mut core) = Journal::open(shard.storage.clone(), dir)
        .await
        .map_err(|error| format!("opening the metadata journal: {error}"))?;
    let configured: Vec<u64> = config.voters.keys().copied().collect();
    let journaled = core.snapshot.get_metadata().get_conf_state().voters.clone();
    if journaled.is_empty() {
        core.snapshot = initial_snapshot(configured.clone());
    } else {
        let mut sorted = journaled.clone();
        sorted.sort_unstable();
        if sorted != configured {
            return Err(format!(
                "the metadata journal's voters are {sorted:?}, but --controller-quorum-voters \
                 names {configured:?}; changing the voters is not supported"
            ));
        }
    }
    let listener = crate::runtime::net::Listener::bind(config.listen)
        .map_err(|error| format!("cannot listen for the quorum on {}: {error}", config.listen))?;
    glommio::spawn_local(peers.clone().serve(listener)).detach();
    let (node, stopped) = QuorumNode::start(
        QuorumSettings::new(node_id),
        journal,
        core,
        machine,
        PeerTransport(peers.clone()),
        shutdown.clone(),
    )
    .map_err(|error| error.to_string())?;
    peers.set_node(node.clone());
    Ok((node, stopped))
}

/// A broker-only node: keeps its catalogue in step with the voters' (long polls, each
/// answered with the whole catalogue once a voter has applied something newer), trying
/// the voters in turn while one does not answer.
async fn follow_catalogue(cluster: Rc<ClusterNode>, stored: std::path::PathBuf) {
    let voters: Vec<u64> = cluster.config.voters.keys().copied().collect();
    let mut next = 0usize;
    while !cluster.shutdown.is_started() {
        let known = cluster.status();
        // The leader first (it is never behind), else the voters in turn.
        let voter = if known.leader != 0 && next == 0 {
            known.leader
        } else {
            voters[next % voters.len().max(1)]
        };
        let call = NodeCall::Catalogue {
            after: known.applied,
        };
        let body = serde_json::to_vec(&call).expect("calls serialize");
        let answered = cluster
            .peers
            .call(voter, &body, CATALOGUE_WAIT + CALL_TIMEOUT)
            .await
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<NodeReply>(&bytes).map_err(|error| error.to_string())
            });
        match answered {
            Ok(NodeReply::Catalogue {
                index,
                leader,
                image,
            }) => {
                next = 0;
                let decoded = image.map(|text| ClusterMetadata::decode(text.as_bytes()));
                match decoded {
                    Some(Ok(mut catalogue)) if index > cluster.status().applied => {
                        catalogue.cluster_id = cluster.image.borrow().cluster_id.clone();
                        // Stored before it is applied: a replica opened from it is then
                        // known to the next start. A failed write costs only that.
                        if let Err(error) = store_catalogue(&stored, index, &catalogue).await {
                            tracing::warn!(%error, "storing the catalogue failed");
                        }
                        *cluster.image.borrow_mut() = catalogue;
                        cluster.observe(Some(index), leader);
                        cluster.changed.notify(usize::MAX);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(voter, %error, "undecodable catalogue from a voter")
                    }
                    _ => cluster.observe(None, leader),
                }
            }
            other => {
                tracing::debug!(voter, answer = ?other, "no catalogue from this voter; trying another");
                next += 1;
                glommio::timer::sleep(RETRY_DELAY).await;
            }
        }
    }
}

fn catalogue_path(shard: &Shard) -> std::path::PathBuf {
    shard
        .config
        .data_dir
        .join("__internal")
        .join(CATALOGUE_FILE)
}

/// The catalogue a broker-only node stored, with its index; `None` if there is none.
async fn load_catalogue(path: &std::path::Path) -> Result<Option<(u64, ClusterMetadata)>, String> {
    let Some(bytes) = crate::storage::io::read_small_file(path, CATALOGUE_BYTES_MAX)
        .await
        .map_err(|error| error.to_string())?
    else {
        return Ok(None);
    };
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no index line")?;
    let index = std::str::from_utf8(&bytes[..newline])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or("bad index line")?;
    let catalogue =
        ClusterMetadata::decode(&bytes[newline + 1..]).map_err(|error| error.to_string())?;
    Ok(Some((index, catalogue)))
}

/// Replaces the stored catalogue (temp file, fdatasync, rename, directory fsync).
async fn store_catalogue(
    path: &std::path::Path,
    index: u64,
    catalogue: &ClusterMetadata,
) -> Result<(), crate::storage::StorageError> {
    if let Some(dir) = path.parent() {
        crate::storage::io::create_dir_all(dir).await?;
    }
    let mut bytes = format!("{index}\n").into_bytes();
    bytes.extend_from_slice(&catalogue.encode());
    crate::storage::io::write_file_atomic(path, &bytes).await
}

/// Answers a peer's call (on the controller shard).
async fn answer_call(shard: &Rc<Shard>, body: Bytes) -> Bytes {
    let reply = match (shard.cluster(), serde_json::from_slice::<NodeCall>(&body)) {
        (Some(cluster), Ok(NodeCall::Catalogue { after })) => {
            // Any voter answers, from what it has applied: a committed prefix, and never
            // older than asked (`after`), so the broker's catalogue only moves forward.
            let status = match cluster
                .wait_for(CATALOGUE_WAIT, |status| status.applied > after)
                .await
            {
                Ok(status) | Err(status) => status,
            };
            let image = (status.applied > after)
                .then(|| serde_json::to_string(&*cluster.image.borrow()).ok())
                .flatten();
            NodeReply::Catalogue {
                index: status.applied,
                leader: status.leader,
                image,
            }
        }
        (Some(cluster), Ok(call)) => {
            if cluster.status().is_leader {
                lead(shard, &cluster, call).await
            } else {
                NodeReply::NotLeader {
                    leader: cluster.status().leader,
                }
            }
        }
        (None, _) => NodeReply::Failed("this node's quorum is not running".into()),
        (_, Err(error)) => NodeReply::Failed(format!("undecodable call: {error}")),
    };
    Bytes::from(serde_json::to_vec(&reply).expect("replies serialize"))
}

/// Runs `call` as the quorum's leader.
async fn lead(shard: &Rc<Shard>, cluster: &ClusterNode, call: NodeCall) -> NodeReply {
    let ready = cluster
        .wait_for(LEADER_READY_WAIT, |status| {
            status.leader_ready || !status.is_leader
        })
        .await;
    match ready {
        Ok(status) if status.leader_ready => {}
        Ok(status) | Err(status) => {
            return NodeReply::NotLeader {
                leader: status.leader,
            }
        }
    }
    match call {
        // Answered by any voter, before this (`answer_call`).
        NodeCall::Catalogue { .. } => NodeReply::Failed("not a leader's call".into()),
        NodeCall::Control(call) => {
            let reply = shard.controller.execute(shard, call).await;
            NodeReply::Control {
                reply,
                index: cluster.status().applied,
            }
        }
        NodeCall::Register(info) => {
            let conflict = {
                let image = cluster.image.borrow();
                let seen = cluster.last_seen.borrow().get(&info.id).copied();
                image.brokers.get(&info.id).and_then(|current| {
                    let live = !current.fenced
                        && seen.is_some_and(|at| at.elapsed() < cluster.config.session_timeout);
                    (live && current.incarnation != info.incarnation).then(|| {
                        format!(
                            "node id {} is in use by a live broker at {}:{} (registered at \
                             epoch {}); give this broker another --node-id",
                            info.id, current.host, current.port, current.epoch
                        )
                    })
                })
            };
            if let Some(reason) = conflict {
                return NodeReply::Refused(reason);
            }
            let id = info.id;
            // A new registration starts fenced: what the old one led moves now.
            let registered = shard
                .controller
                .exclusive(async {
                    let mut records = vec![MetadataRecord::RegisterBroker(info)];
                    records.extend(election::on_fence(&cluster.image.borrow(), id));
                    propose(cluster, records).await
                })
                .await;
            match registered {
                Ok(epoch) => {
                    cluster.last_seen.borrow_mut().insert(id, Instant::now());
                    NodeReply::Registered { epoch }
                }
                Err(error) => NodeReply::Failed(error.to_string()),
            }
        }
        NodeCall::AlterPartition {
            broker,
            topic_id,
            partition,
            leader_epoch,
            isr,
        } => {
            let altered = shard
                .controller
                .exclusive(async {
                    let change = isr_change(
                        &cluster.image.borrow(),
                        broker,
                        topic_id,
                        partition,
                        leader_epoch,
                        isr,
                    );
                    match change {
                        Ok(Some(record)) => {
                            let records =
                                with_completed_reassignment(&cluster.image.borrow(), record);
                            propose(cluster, records).await.map_err(|e| e.to_string())
                        }
                        Ok(None) => Ok(cluster.status().applied),
                        Err(reason) => Err(reason),
                    }
                })
                .await;
            match altered {
                Ok(_) => NodeReply::Heartbeat {
                    fenced: false,
                    stale: false,
                },
                Err(reason) => NodeReply::Refused(reason),
            }
        }
        NodeCall::ReplicaFailed {
            broker,
            epoch,
            topic_id,
            partition,
        } => {
            let outcome = shard
                .controller
                .exclusive(async {
                    let change = {
                        let image = cluster.image.borrow();
                        let current = image.brokers.get(&broker).map(|b| b.epoch);
                        if current != Some(epoch) {
                            return Err(format!(
                                "broker {broker} at registration {epoch} is not registered so"
                            ));
                        }
                        election::on_replica_failed(&image, broker, &topic_id, partition)
                    };
                    match change {
                        Some(record) => {
                            tracing::warn!(broker, %topic_id, partition, "a replica's log failed; it leaves the ISR and leads no more");
                            propose(cluster, vec![record]).await.map_err(|e| e.to_string())
                        }
                        None => Ok(cluster.status().applied),
                    }
                })
                .await;
            match outcome {
                Ok(_) => NodeReply::Heartbeat {
                    fenced: false,
                    stale: false,
                },
                Err(reason) => NodeReply::Refused(reason),
            }
        }
        NodeCall::Leave { id, epoch } => {
            cluster.last_seen.borrow_mut().remove(&id);
            match fence(shard, cluster, id, epoch).await {
                Ok(_) => NodeReply::Heartbeat {
                    fenced: true,
                    stale: false,
                },
                Err(error) => NodeReply::Failed(error.to_string()),
            }
        }
        NodeCall::Heartbeat { id, epoch, applied } => {
            cluster.last_seen.borrow_mut().insert(id, Instant::now());
            let current = cluster.image.borrow().brokers.get(&id).cloned();
            let Some(current) = current.filter(|broker| broker.epoch == epoch) else {
                return NodeReply::Heartbeat {
                    fenced: true,
                    stale: true,
                };
            };
            // Unfenced once it has applied its own registration (caught up that far).
            if current.fenced && applied >= epoch && cluster.unfencing.borrow_mut().insert(id) {
                let outcome = shard
                    .controller
                    .exclusive(async {
                        let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch }];
                        let mut image = cluster.image.borrow().clone();
                        records::apply(&mut image, 0, records[0].clone());
                        records.extend(election::on_unfence(&image, id));
                        propose(cluster, records).await
                    })
                    .await;
                cluster.unfencing.borrow_mut().remove(&id);
                if let Err(error) = outcome {
                    return NodeReply::Failed(error.to_string());
                }
            }
            let fenced = cluster
                .image
                .borrow()
                .brokers
                .get(&id)
                .is_none_or(|broker| broker.fenced);
            NodeReply::Heartbeat {
                fenced,
                stale: false,
            }
        }
    }
}

/// The record for a leader's ISR change, if it is current (the asking broker leads the
/// partition at that epoch) and sound (the leader is in it, every member is a replica, and
/// every added member is live); `None` if the ISR is already that.
fn isr_change(
    image: &ClusterMetadata,
    broker: i32,
    topic_id: Uuid,
    partition: i32,
    leader_epoch: i32,
    isr: Vec<i32>,
) -> Result<Option<MetadataRecord>, String> {
    let topic = image.topic_by_id(&topic_id).ok_or("no such topic")?;
    let state = topic.state_of(partition).ok_or("no such partition")?;
    if state.leader != broker || state.leader_epoch != leader_epoch {
        return Err(format!(
            "stale ISR change: broker {broker} at epoch {leader_epoch}, but the partition is \
             led by {} at epoch {}",
            state.leader, state.leader_epoch
        ));
    }
    let replicas = topic.replicas_of(partition);
    let sound = isr.contains(&broker)
        && isr.iter().all(|id| replicas.contains(id))
        && isr
            .iter()
            .all(|id| state.isr.contains(id) || image.is_live(*id));
    if !sound {
        return Err(format!("ISR {isr:?} is not the leader and live replicas"));
    }
    if state.isr == isr {
        return Ok(None);
    }
    Ok(Some(MetadataRecord::PartitionChange {
        topic_id,
        partition,
        state: crate::cluster::metadata::PartitionState {
            isr,
            ..state.clone()
        },
    }))
}

/// An ISR change, or, if it brings every replica a reassignment adds in sync, the
/// partition's topic with that reassignment completed (`cluster::reassignment`).
fn with_completed_reassignment(
    image: &ClusterMetadata,
    record: MetadataRecord,
) -> Vec<MetadataRecord> {
    let MetadataRecord::PartitionChange {
        topic_id,
        partition,
        state,
    } = &record
    else {
        return vec![record];
    };
    let Some(topic) = image.topic_by_id(topic_id) else {
        return vec![record];
    };
    let moving = topic
        .state_of(*partition)
        .is_some_and(|current| !current.adding.is_empty() || !current.removing.is_empty());
    let slot = usize::try_from(*partition).ok();
    let Some(slot) = slot.filter(|&slot| moving && slot < topic.states.len()) else {
        return vec![record];
    };
    let mut topic = topic.clone();
    topic.states[slot] = state.clone();
    if reassignment::complete_if_caught_up(&mut topic, *partition, |id| image.is_live(id)) {
        tracing::info!(topic = %topic.name, partition, replicas = ?topic.replicas[slot], "reassignment complete");
        vec![MetadataRecord::PutTopic(topic)]
    } else {
        vec![record]
    }
}

/// Fences broker `id` (registration `epoch`) and moves what it led, in one entry.
async fn fence(
    shard: &Rc<Shard>,
    cluster: &ClusterNode,
    id: i32,
    epoch: u64,
) -> Result<u64, QuorumError> {
    shard
        .controller
        .exclusive(async {
            let mut records = vec![MetadataRecord::FenceBroker { id, epoch }];
            records.extend(election::on_fence(&cluster.image.borrow(), id));
            propose(cluster, records).await
        })
        .await
}

async fn propose(cluster: &ClusterNode, list: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
    let data = serde_json::to_vec(&list).expect("metadata records serialize");
    match &cluster.role {
        Role::Voter(node) => node.propose(Bytes::from(data)).await,
        Role::Observer { status, .. } => Err(QuorumError::NotLeader {
            leader: status.get().leader,
        }),
    }
}

/// Heartbeats to the leader every interval; re-registers if the quorum forgot this
/// registration (e.g. it was fenced and its epoch replaced).
async fn heartbeat_loop(shard: Rc<Shard>, cluster: Rc<ClusterNode>) {
    let interval = cluster.config.heartbeat_interval;
    let mut first = true;
    loop {
        // The first heartbeat goes at once: the broker is fenced until one arrives.
        let pause = if first { Duration::ZERO } else { interval };
        first = false;
        if cluster
            .shutdown
            .or_stopped(glommio::timer::sleep(pause))
            .await
            .is_none()
        {
            return;
        }
        let Some(epoch) = cluster.epoch.get() else {
            continue;
        };
        let call = NodeCall::Heartbeat {
            id: cluster.broker_id,
            epoch,
            applied: cluster.status().applied,
        };
        match cluster.ask(&shard, call).await {
            Ok(NodeReply::Heartbeat { stale: true, .. }) => {
                tracing::warn!(
                    broker = cluster.broker_id,
                    "registration lost; registering again"
                );
                if let Err(error) = cluster.register(&shard).await {
                    tracing::error!(%error, "registering again failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "heartbeat failed"),
        }
    }
}

/// On the leader: fences brokers silent for longer than the session timeout. A node that
/// just became leader gives every broker a full session first.
async fn leader_duties(shard: Rc<Shard>, cluster: Rc<ClusterNode>) {
    let tick = cluster
        .config
        .heartbeat_interval
        .min(Duration::from_millis(500));
    let mut leading = false;
    while cluster
        .shutdown
        .or_stopped(glommio::timer::sleep(tick))
        .await
        .is_some()
    {
        let status = cluster.status();
        if !status.leader_ready {
            leading = false;
            continue;
        }
        if !leading {
            // A new leader gives every broker a full session (what it saw when it led
            // before is stale), except those whose connection to it closed: their
            // process is gone, and they are fenced at once.
            leading = true;
            let now = Instant::now();
            let ids: Vec<i32> = cluster.image.borrow().brokers.keys().copied().collect();
            let mut seen = cluster.last_seen.borrow_mut();
            for id in ids {
                let gone = u64::try_from(id)
                    .ok()
                    .and_then(|id| cluster.peers.disconnected_for(id))
                    .is_some();
                if gone {
                    seen.remove(&id);
                } else {
                    seen.insert(id, now);
                }
            }
            continue;
        }
        let silent: Vec<(i32, u64, &str)> = {
            let seen = cluster.last_seen.borrow();
            cluster
                .image
                .borrow()
                .live_brokers()
                .filter(|broker| broker.id != cluster.broker_id)
                .filter_map(|broker| {
                    let heard = seen.get(&broker.id);
                    if heard.is_none_or(|at| at.elapsed() >= cluster.config.session_timeout) {
                        return Some((broker.id, broker.epoch, "missed its session"));
                    }
                    let gone = u64::try_from(broker.id)
                        .ok()
                        .and_then(|id| cluster.peers.disconnected_for(id))
                        .is_some_and(|for_how_long| {
                            for_how_long >= DISCONNECTED_FENCE_AFTER
                                && heard.is_none_or(|at| at.elapsed() >= for_how_long)
                        });
                    gone.then_some((broker.id, broker.epoch, "closed its connection"))
                })
                .collect()
        };
        for (id, epoch, why) in silent {
            tracing::warn!(broker = id, "broker {why}; fencing it");
            if let Err(error) = fence(&shard, &cluster, id, epoch).await {
                tracing::warn!(%error, "fencing a broker failed");
            }
        }
    }
}

/// Keeps the local partitions and every shard's snapshot in step with the catalogue.
async fn reconcile_loop(
    shard: Rc<Shard>,
    cluster: Rc<ClusterNode>,
    mut published: Arc<ClusterMetadata>,
) {
    loop {
        let listener = cluster.changed.listen();
        if *cluster.image.borrow() != *published {
            published = reconcile(&shard, &published, true).await;
            continue;
        }
        if cluster.shutdown.or_stopped(listener).await.is_none() {
            return;
        }
    }
}

/// Brings this broker from `published` to the node's current catalogue: deletes the
/// local logs of removed topics, opens the partitions newly assigned here (`fresh`: as
/// new logs, moving any leftover directory aside), reconfigures changed topics, and gives
/// every shard the snapshot. Returns the snapshot published.
async fn reconcile(
    shard: &Rc<Shard>,
    published: &ClusterMetadata,
    fresh: bool,
) -> Arc<ClusterMetadata> {
    let Some(cluster) = shard.cluster() else {
        return Arc::new(published.clone());
    };
    // The index first: the catalogue taken next holds at least what it names.
    let index = cluster.status().applied;
    let current = cluster.image();
    let me = shard.config.node_id;
    for (name, old) in published.topics() {
        let kept = current.topic(name).is_some_and(|topic| topic.id == old.id);
        if !kept && holds_any(old, me) {
            shard.delete_topic_logs(old).await;
        }
    }
    for (name, topic) in current.topics() {
        let old = published.topic(name).filter(|old| old.id == topic.id);
        let opened: Vec<i32> = (0..topic.partitions)
            .filter(|&p| topic.replicas_of(p).contains(&me))
            .filter(|&p| old.is_none_or(|old| !old.replicas_of(p).contains(&me)))
            .collect();
        if !opened.is_empty() {
            if let Err(error) = shard.open_topic_partitions(topic, opened, fresh).await {
                tracing::error!(topic = %name, %error, "opening partitions assigned here failed");
            }
        }
        // Replicas moved away (a completed reassignment): this broker's copy goes.
        let dropped: Vec<i32> = old.map_or_else(Vec::new, |old| {
            (0..old.partitions)
                .filter(|&p| old.replicas_of(p).contains(&me))
                .filter(|&p| !topic.replicas_of(p).contains(&me))
                .collect()
        });
        if !dropped.is_empty() {
            tracing::info!(topic = %name, partitions = ?dropped, "replicas moved away; deleting them here");
            shard.delete_topic_partitions(topic, dropped).await;
        }
        if old.is_some_and(|old| old.configs != topic.configs) && holds_any(topic, me) {
            shard.reconfigure_topic_logs(topic).await;
        }
    }
    shard.publish(current.clone()).await;
    cluster.published.set(cluster.published.get().max(index));
    cluster.published_changed.notify(usize::MAX);
    current
}

fn holds_any(topic: &Topic, broker: i32) -> bool {
    topic
        .replicas
        .iter()
        .any(|replicas| replicas.contains(&broker))
}

/// For `Shard::control`: runs `call` on the quorum's leader.
pub async fn control(shard: &Rc<Shard>, cluster: &ClusterNode, call: ControlCall) -> ControlReply {
    let failed = |message: String| ControlReply::Failed(TopicError::NotController(message));
    let reply = match cluster.ask(shard, NodeCall::Control(call.clone())).await {
        Ok(reply) => reply,
        Err(error) => return failed(error),
    };
    match reply {
        NodeReply::Control { reply, index } => {
            // Answer once this broker's shards see the change too (a Metadata request
            // right after a CreateTopics must list the topic).
            cluster.wait_published(index).await;
            reply
        }
        other => failed(format!("the controller could not run it: {other:?}")),
    }
}
