//! This broker as a node of a cluster, on the controller shard: the state the node's
//! tasks share. What it decides is in `cluster::node` (sans-I/O); this module and its
//! siblings run those decisions with the quorum, the links and the clock:
//!
//! - `start`: the node's start (journal, quorum node, links, registration);
//! - `client`: calls to the quorum's leader (or answered here when this node leads);
//! - `broker`: this broker's registration, heartbeats, leave, ISR changes and reports;
//! - `leader`: answering calls as the quorum's leader, and fencing silent brokers;
//! - `observer`: a broker-only node following a voter's catalogue;
//! - `reconcile`: this broker's partitions and every shard's snapshot kept in step with
//!   the catalogue;
//! - `host`: the controller's hands in a cluster (commit = propose records).
//!
//! Every voter applies the committed metadata records to its own catalogue; a broker-only
//! node (not among the voters) follows a voter's. Controller operations run only on the
//! quorum's leader once it has applied every earlier entry; another node sends them there
//! and answers once it has applied the result too.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use event_listener::Event;
use uuid::Uuid;

use crate::cluster::controller::Controller;
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::node::catalogue::Catalogue;
use crate::cluster::node::members::{Members, MembershipConfig};
use crate::cluster::quorum::core::{QuorumError, QuorumStatus};
use crate::cluster::quorum::node::QuorumNode;
use crate::cluster::quorum::transport::Peers;
use crate::cluster::quorum::voters::QuorumConfig;
use crate::cluster::records::{self, MetadataRecord};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::time::{self, Deadline};
use crate::shard::Shard;

/// How long an answer waits for this node to apply the change it made.
pub(super) const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How long a decision waits for the leader's earlier entries to be applied (a proposal
/// that timed out at its caller commits, or the leadership ends).
const SETTLE_WAIT: Duration = Duration::from_secs(10);
/// Retry pause while no leader is known, or after a refusal.
pub(super) const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Why this node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no quorum is configured")]
    NoQuorum,
    #[error("node id {0} is negative")]
    NegativeNodeId(i32),
    #[error("opening the metadata journal: {0}")]
    Journal(String),
    #[error(
        "the metadata journal's voters are {journaled:?}, but --controller-quorum-voters \
         names {configured:?}; changing the voters is not supported"
    )]
    VotersChanged {
        journaled: Vec<u64>,
        configured: Vec<u64>,
    },
    #[error("cannot listen for the quorum on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("reading the stored catalogue: {0}")]
    StoredCatalogue(String),
    #[error("registering: {0}")]
    Register(#[from] crate::cluster::node::rpc::NodeError),
    #[error("shut down while starting")]
    ShutDown,
}

/// A voter of the metadata quorum, or a broker only.
pub(super) enum Role {
    Voter(Rc<QuorumNode>),
    /// Its status: the catalogue's index it has applied and the leader it last heard of.
    Observer {
        status: Cell<QuorumStatus>,
        changed: Event,
    },
}

pub struct ClusterNode {
    pub(super) role: Role,
    /// This node's id in the quorum's terms.
    pub(super) node_id: u64,
    pub(super) broker_id: i32,
    pub(super) incarnation: Uuid,
    pub(super) peers: Rc<Peers>,
    pub(super) catalogue: Catalogue,
    pub(super) config: QuorumConfig,
    pub(super) membership: MembershipConfig,
    /// Topic changes and producer ids (run only while this node leads the quorum).
    pub(super) controller: Controller,
    /// The controller shard's services: its storage, settings, and the shards it reaches.
    pub(super) shard: Rc<Shard>,
    /// This broker's registration epoch, once registered.
    pub(super) epoch: Cell<Option<u64>>,
    /// The catalogue index every shard's snapshot has reached (`reconcile`), and its event.
    pub(super) published: Cell<u64>,
    pub(super) published_changed: Event,
    /// Leader only: what the leader knows of the brokers beyond the catalogue.
    pub(super) members: RefCell<Members>,
    /// The index of the catalogue the controller's current change was read at, if the
    /// node was settled then (`TopicHost::metadata`, `commit`).
    pub(super) read_at: Cell<Option<u64>>,
    pub(super) shutdown: Rc<Shutdown>,
    pub(super) stopped: async_channel::Receiver<()>,
}

impl ClusterNode {
    pub(super) fn is_voter(&self) -> bool {
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
        time::wait_until(changed, Deadline::after(timeout), || {
            let status = self.status();
            ready(&status).then_some(status)
        })
        .await
        .map_err(|_| self.status())
    }

    /// Waits (up to `APPLY_WAIT`) until every shard's snapshot holds catalogue `index`.
    pub(super) async fn wait_published(&self, index: u64) {
        let deadline = Deadline::after(APPLY_WAIT);
        let _ = time::wait_until(&self.published_changed, deadline, || {
            (self.published.get() >= index).then_some(())
        })
        .await;
    }

    /// The catalogue as this node has applied it.
    pub fn image(&self) -> std::sync::Arc<ClusterMetadata> {
        self.catalogue.copy()
    }

    /// Proposes `list` as one metadata entry; its index once it is committed and applied
    /// here. Only a voter that leads the quorum proposes, and only when settled: `list`
    /// was decided on the catalogue as applied, which must then hold every entry this
    /// leader appended (`QuorumStatus::settled`).
    pub(super) async fn propose(&self, list: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        match &self.role {
            Role::Voter(node) => {
                let status = node.status();
                if status.is_leader && !status.settled {
                    return Err(QuorumError::Unsettled);
                }
                node.propose(records::encode_entry(&list).into()).await
            }
            Role::Observer { status, .. } => Err(QuorumError::NotLeader {
                leader: status.get().leader,
            }),
        }
    }

    /// Waits (up to `SETTLE_WAIT`) until this leader has applied every entry it holds, so
    /// that a decision taken now undoes none of them; `Err` with the reply for the caller
    /// if it did not (no longer the leader, or an entry still uncommitted).
    pub(super) async fn settle(&self) -> Result<(), QuorumError> {
        let settled = self
            .wait_for(SETTLE_WAIT, |status| status.settled || !status.is_leader)
            .await;
        match settled {
            Ok(status) if status.settled => Ok(()),
            Ok(status) | Err(status) if !status.is_leader => Err(QuorumError::NotLeader {
                leader: status.leader,
            }),
            Ok(_) | Err(_) => Err(QuorumError::Unsettled),
        }
    }

    /// Waits for the quorum node to stop (after shutdown).
    pub async fn stopped(&self) {
        let _ = self.stopped.recv().await;
    }
}
