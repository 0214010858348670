//! A cluster node's start: the journal and the quorum node (a voter) or the stored
//! catalogue (a broker-only node), the links, registration, and the wait until the quorum
//! has unfenced this broker; then the partitions it holds are opened and kept in step.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use event_listener::Event;
use uuid::Uuid;

use super::node::{ClusterNode, Role, StartError, RETRY_DELAY};
use super::{observer, reconcile};
use crate::cluster::controller::Controller;
use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::node::catalogue::Catalogue;
use crate::cluster::node::members::{Members, MembershipConfig};
use crate::cluster::quorum::core::QuorumSettings;
use crate::cluster::quorum::journal::Journal;
use crate::cluster::quorum::node::QuorumNode;
use crate::cluster::quorum::store::initial_snapshot;
use crate::cluster::quorum::transport::{Hello, PeerTransport, Peers};
use crate::cluster::quorum::voters::QuorumConfig;
use crate::runtime::net::Listener;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::time;
use crate::shard::Shard;

impl ClusterNode {
    /// Starts this node of the cluster on the controller shard: journal, quorum node,
    /// links, then registers the broker, waits until the quorum has unfenced it, and opens
    /// the partitions it holds. Returns once the broker may serve.
    pub async fn start(
        shard: &Rc<Shard>,
        cluster_id: String,
        controller: Controller,
    ) -> Result<Rc<ClusterNode>, StartError> {
        let config = shard.config.quorum.clone().ok_or(StartError::NoQuorum)?;
        let broker_id = shard.config.node_id;
        let node_id =
            u64::try_from(broker_id).map_err(|_| StartError::NegativeNodeId(broker_id))?;
        let shutdown = Rc::new(Shutdown::new());
        let hello = Hello {
            cluster_id: cluster_id.clone(),
            node_id,
        };
        let addresses = config.voters.clone().into_iter().collect();
        let security = shard.config.quorum_security.clone();
        let peers = Peers::new(hello, addresses, security, shutdown.clone());
        let catalogue = Catalogue::new(cluster_id);
        let (role, stopped) = if config.voters.contains_key(&node_id) {
            start_voter(shard, &config, node_id, &peers, &catalogue, &shutdown).await?
        } else {
            observer::start(shard, &config, &catalogue, &shutdown).await?
        };
        let node = Rc::new(ClusterNode {
            role,
            node_id,
            broker_id,
            incarnation: Uuid::new_v4(),
            peers: peers.clone(),
            catalogue,
            membership: MembershipConfig::of(&config),
            config,
            controller,
            shard: shard.clone(),
            epoch: Cell::new(None),
            published: Cell::new(0),
            published_changed: Event::new(),
            members: RefCell::new(Members::default()),
            read_at: Cell::new(None),
            shutdown,
            stopped,
        });
        node.leave_on_shutdown();
        if node.is_voter() {
            node.answer_peers();
            crate::runtime::spawn(node.clone().leader_duties()).detach();
        } else {
            crate::runtime::spawn(node.clone().follow_catalogue()).detach();
        }
        // What this node knew before it stopped is served from the start.
        let published = reconcile::reconcile(&node, &ClusterMetadata::new(), false).await;
        node.register().await?;
        crate::runtime::spawn(node.clone().heartbeat_loop()).detach();
        node.wait_until_live().await?;
        let published = reconcile::reconcile(&node, &published, true).await;
        crate::runtime::spawn(reconcile::reconcile_loop(node.clone(), published)).detach();
        Ok(node)
    }

    /// When the shard shuts down, the node first asks the quorum to fence this broker
    /// (controlled shutdown, bounded), then stops its quorum node and links.
    fn leave_on_shutdown(self: &Rc<Self>) {
        let node = self.clone();
        crate::runtime::spawn(async move {
            node.shard
                .shutdown
                .or_stopped(std::future::pending::<()>())
                .await;
            node.leave().await;
            node.shutdown.begin();
        })
        .detach();
    }

    /// Serves only once the quorum lists this broker as live (registered, unfenced).
    async fn wait_until_live(&self) -> Result<(), StartError> {
        loop {
            let listener = self.catalogue.changed().listen();
            let live = self
                .catalogue
                .image()
                .brokers
                .get(&self.broker_id)
                .is_some_and(|broker| !broker.fenced && Some(broker.epoch) == self.epoch.get());
            if live {
                return Ok(());
            }
            if self.shutdown.is_started() {
                return Err(StartError::ShutDown);
            }
            let _ = time::timeout(RETRY_DELAY, listener).await;
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
    catalogue: &Catalogue,
    shutdown: &Rc<Shutdown>,
) -> Result<(Role, async_channel::Receiver<()>), StartError> {
    let dir = shard
        .config
        .data_dir
        .join("__internal")
        .join("cluster-metadata");
    let (journal, mut core) = Journal::open(shard.storage.clone(), dir)
        .await
        .map_err(|error| StartError::Journal(error.to_string()))?;
    let configured: Vec<u64> = config.voters.keys().copied().collect();
    let journaled = core.snapshot.get_metadata().get_conf_state().voters.clone();
    if journaled.is_empty() {
        core.snapshot = initial_snapshot(configured.clone());
    } else {
        let mut sorted = journaled;
        sorted.sort_unstable();
        if sorted != configured {
            return Err(StartError::VotersChanged {
                journaled: sorted,
                configured,
            });
        }
    }
    let listener = Listener::bind(config.listen).map_err(|source| StartError::Listen {
        address: config.listen,
        source,
    })?;
    crate::runtime::spawn(peers.clone().serve(listener)).detach();
    let (node, stopped) = QuorumNode::start(
        QuorumSettings::new(node_id),
        journal,
        core,
        catalogue.clone(),
        PeerTransport(peers.clone()),
        shutdown.clone(),
    )?;
    peers.set_node(node.clone());
    Ok((Role::Voter(node), stopped))
}
