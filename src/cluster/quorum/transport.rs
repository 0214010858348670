//! The quorum's own TCP links (`--controller-listen`): Raft messages between voters, and
//! calls from any node to the quorum's leader (controller operations, broker registration
//! and heartbeats). One outbound connection per peer carries this node's messages and
//! calls; replies come back on it. Frames are `[u32 length][u8 kind][payload]`, capped
//! before allocation; a connection starts with a hello naming the cluster and the node,
//! and a node of another cluster is refused with the reason.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_channel::oneshot;
use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};

use super::codec;
use super::node::{QuorumNode, Transport};
use crate::runtime::net::{self, Listener, Stream};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::time;
use crate::runtime::tls::{ClientTls, ServerTls};
use crate::security::principal::{self, MappingRules};

/// Largest frame: a snapshot of a large catalogue (the journal's batch cap) and headroom.
const FRAME_BYTES_MAX: usize = 80 << 20;
/// Frames queued per peer; beyond it Raft messages are dropped (Raft resends).
const LINK_QUEUE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A hello is a cluster id and a node id.
const HELLO_BYTES_MAX: usize = 4096;
/// Calls one peer may have unanswered on one connection (registration, heartbeats, ISR
/// changes, forwarded controller operations). Past it a call is answered "busy" at once
/// (the caller retries): a slow controller must not cost a live broker its connection,
/// which would look like a dead process (`disconnected_for`).
const CALLS_IN_FLIGHT_MAX: usize = 256;

const KIND_HELLO: u8 = 0;
const KIND_RAFT: u8 = 1;
const KIND_CALL: u8 = 2;
const KIND_REPLY: u8 = 3;
const KIND_REFUSED: u8 = 4;
/// The answer to a call made past `CALLS_IN_FLIGHT_MAX`: not run; try again later.
const KIND_BUSY: u8 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: String,
    pub node_id: u64,
}

impl Hello {
    /// A peer's hello (JSON, at most `HELLO_BYTES_MAX`, read before the peer is known):
    /// `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Hello> {
        if bytes.len() > HELLO_BYTES_MAX {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

/// How a node proves it is one on quorum links (`--controller-security-protocol SSL`):
/// both sides present certificates the truststore's CAs (the cluster's) signed, before the
/// hello; with `nodes` (an authorizer's super users) the peer's principal must also be one
/// of them. ACLs do not apply here: they live in the catalogue the quorum itself carries.
#[derive(Debug, Clone)]
pub struct PeerSecurity {
    /// Requires a client certificate.
    pub server: ServerTls,
    pub client: ClientTls,
    pub mapping: MappingRules,
    pub nodes: Option<Vec<String>>,
}

impl PeerSecurity {
    /// The server side of a peer's connection: its TLS handshake within the hello's time,
    /// then its principal checked; the refusal names the peer's address.
    async fn admit(&self, stream: Stream) -> Result<Stream, String> {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
        let stream = stream
            .accept_tls(&self.server, HELLO_TIMEOUT)
            .await
            .map_err(|error| format!("{peer} has no node certificate of this cluster: {error}"))?;
        let certificate = stream
            .peer_certificate()
            .ok_or_else(|| format!("{peer} presented no certificate"))?;
        let principal = principal::subject_dn(certificate)
            .and_then(|dn| self.mapping.name_of(&dn))
            .map(|name| principal::of_user(&name))
            .map_err(|error| format!("{peer}: {error}"))?;
        if let Some(nodes) = &self.nodes {
            if !nodes.contains(&principal) {
                return Err(format!(
                    "{peer} is {principal}, not a node's principal (--super-users)"
                ));
            }
        }
        Ok(stream)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("node {0} is not a known quorum peer")]
    UnknownPeer(u64),
    #[error("no answer from node {0} in time")]
    Timeout(u64),
    #[error("the link to node {0} is full, or node {0} has too many of this node's calls")]
    Busy(u64),
}

type CallHandler = Rc<dyn Fn(u64, Bytes) -> Pin<Box<dyn Future<Output = Bytes>>>>;

pub struct Peers {
    hello: Hello,
    /// With `--controller-security-protocol SSL`: how peers prove they are nodes.
    security: Option<PeerSecurity>,
    addresses: HashMap<u64, SocketAddr>,
    links: RefCell<HashMap<u64, async_channel::Sender<Bytes>>>,
    /// Calls awaiting their answer: the reply, or `None` if the peer was too busy.
    pending: RefCell<HashMap<u64, oneshot::Sender<Option<Bytes>>>>,
    next_call: Cell<u64>,
    node: RefCell<Option<Rc<QuorumNode>>>,
    on_call: RefCell<Option<CallHandler>>,
    /// Why peers refused this node (another cluster), by peer.
    refusals: RefCell<HashMap<u64, String>>,
    /// Connections from each peer: how many are open, and since when none has been.
    inbound: RefCell<HashMap<u64, Inbound>>,
    shutdown: Rc<Shutdown>,
}

/// Peers whose connections are tracked (ids are claimed by the sender's hello: a bound).
const PEERS_TRACKED_MAX: usize = 4096;

#[derive(Default)]
struct Inbound {
    open: usize,
    closed_since: Option<Instant>,
}

/// Counts one open connection from a peer for as long as it lives.
struct InboundGuard {
    peers: Rc<Peers>,
    id: u64,
    /// This node closed the connection (a protocol violation): the peer's process may
    /// well be alive, so the close is not evidence of its death.
    closed_here: bool,
}

impl InboundGuard {
    fn new(peers: &Rc<Peers>, id: u64) -> Option<InboundGuard> {
        let mut inbound = peers.inbound.borrow_mut();
        if inbound.len() >= PEERS_TRACKED_MAX && !inbound.contains_key(&id) {
            return None;
        }
        let entry = inbound.entry(id).or_default();
        entry.open += 1;
        entry.closed_since = None;
        Some(InboundGuard {
            peers: peers.clone(),
            id,
            closed_here: false,
        })
    }
}

impl Drop for InboundGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.peers.inbound.borrow_mut().get_mut(&self.id) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && !self.closed_here {
                entry.closed_since = Some(time::now());
            }
        }
    }
}

fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u32(u32::try_from(payload.len() + 1).expect("frames are capped"));
    out.put_u8(kind);
    out.put_slice(payload);
    out.freeze()
}

fn id_frame(kind: u8, id: u64, body: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(8 + body.len());
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(body);
    frame(kind, &payload)
}

fn split_id(payload: Bytes) -> Option<(u64, Bytes)> {
    let id = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    Some((id, payload.slice(8..)))
}

/// Reads one frame of at most `bytes_max` bytes (checked before allocating): its kind and
/// payload.
async fn read_frame(
    reader: &mut (impl futures_lite::AsyncRead + Unpin),
    bytes_max: usize,
) -> std::io::Result<(u8, Bytes)> {
    let body = net::read_frame(reader, bytes_max).await?;
    Ok((body[0], body.slice(1..)))
}

impl Peers {
    pub fn new(
        hello: Hello,
        addresses: HashMap<u64, SocketAddr>,
        security: Option<PeerSecurity>,
        shutdown: Rc<Shutdown>,
    ) -> Rc<Peers> {
        Rc::new(Peers {
            hello,
            security,
            addresses,
            links: RefCell::new(HashMap::new()),
            pending: RefCell::new(HashMap::new()),
            next_call: Cell::new(1),
            node: RefCell::new(None),
            on_call: RefCell::new(None),
            refusals: RefCell::new(HashMap::new()),
            inbound: RefCell::new(HashMap::new()),
            shutdown,
        })
    }

    /// How long peer `id` has had no connection to this node, if it had one that closed
    /// (a process that dies has its connections closed by its kernel; a partition or a
    /// paused process does not close them). `None`: connected, or never was.
    pub fn disconnected_for(&self, id: u64) -> Option<Duration> {
        let inbound = self.inbound.borrow();
        let entry = inbound.get(&id)?;
        if entry.open > 0 {
            return None;
        }
        entry.closed_since.map(|since| time::now() - since)
    }

    /// The node inbound Raft messages go to.
    pub fn set_node(&self, node: Rc<QuorumNode>) {
        *self.node.borrow_mut() = Some(node);
    }

    /// What answers peers' calls: `(caller, body) -> reply`.
    pub fn set_call_handler(&self, handler: CallHandler) {
        *self.on_call.borrow_mut() = Some(handler);
    }

    /// Accepts peers' connections until shutdown.
    pub async fn serve(self: Rc<Self>, listener: Listener) {
        while let Some(accepted) = self.shutdown.or_stopped(listener.accept()).await {
            match accepted {
                Ok(stream) => {
                    crate::runtime::spawn(self.clone().serve_peer(stream)).detach();
                }
                Err(error) => {
                    tracing::warn!(%error, "quorum accept failed");
                    time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn serve_peer(self: Rc<Self>, stream: Stream) {
        let stream = match &self.security {
            None => stream,
            Some(security) => match security.admit(stream).await {
                Ok(stream) => stream,
                Err(refusal) => {
                    tracing::warn!("refusing a quorum connection: {refusal}");
                    return;
                }
            },
        };
        let (mut reader, writer) = futures_lite::io::split(stream);
        // Before the hello nothing is known of the sender: a small frame only.
        let hello = time::timeout(HELLO_TIMEOUT, read_frame(&mut reader, HELLO_BYTES_MAX)).await;
        let peer = match hello {
            Ok(Ok((KIND_HELLO, body))) => match Hello::decode(&body) {
                Some(hello) => hello,
                None => return,
            },
            _ => return,
        };
        let writer = Rc::new(async_lock::Mutex::new(writer));
        if peer.cluster_id != self.hello.cluster_id {
            let reason = format!(
                "node {} belongs to cluster {}, but node {} (at {}) to cluster {}",
                peer.node_id,
                peer.cluster_id,
                self.hello.node_id,
                self.addresses
                    .get(&self.hello.node_id)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                self.hello.cluster_id
            );
            tracing::error!("refusing a quorum peer: {reason}");
            let refused = frame(KIND_REFUSED, reason.as_bytes());
            let _ = net::write_frame(&mut *writer.lock().await, &refused).await;
            return;
        }
        let mut tracked = InboundGuard::new(&self, peer.node_id);
        let closed_here = self
            .read_peer_frames(&mut reader, &writer, peer.node_id)
            .await;
        if let Some(tracked) = tracked.as_mut() {
            tracked.closed_here = closed_here;
        }
    }

    /// Handles a peer's frames until its connection ends; `true` if this node ended it
    /// (a protocol violation, or shutdown), `false` if the peer closed it or it failed.
    async fn read_peer_frames(
        &self,
        reader: &mut (impl futures_lite::AsyncRead + Unpin),
        writer: &Rc<async_lock::Mutex<impl futures_lite::AsyncWrite + Unpin + 'static>>,
        peer: u64,
    ) -> bool {
        let calls_in_flight = Rc::new(Cell::new(0usize));
        loop {
            let (kind, body) = match self
                .shutdown
                .or_stopped(read_frame(reader, FRAME_BYTES_MAX))
                .await
            {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => frame,
            };
            match kind {
                KIND_RAFT => match codec::decode_message(body) {
                    Ok(message) if message.from == peer => {
                        if let Some(node) = self.node.borrow().as_ref() {
                            node.receive(message);
                        }
                    }
                    Ok(_) => {
                        tracing::warn!(peer, "a quorum message claims another sender");
                        return true;
                    }
                    Err(error) => {
                        tracing::warn!(peer, %error, "undecodable quorum message");
                        return true;
                    }
                },
                KIND_CALL => {
                    let Some((id, body)) = split_id(body) else {
                        return true;
                    };
                    let Some(handler) = self.on_call.borrow().clone() else {
                        continue;
                    };
                    // Past the cap a call is not queued for: "busy" at once (reading waits
                    // for that answer to be written, which paces a peer that floods).
                    if calls_in_flight.get() >= CALLS_IN_FLIGHT_MAX {
                        tracing::debug!(peer, "too many quorum calls in flight; answering busy");
                        let busy = id_frame(KIND_BUSY, id, &[]);
                        if net::write_frame(&mut *writer.lock().await, &busy)
                            .await
                            .is_err()
                        {
                            return false;
                        }
                        continue;
                    }
                    calls_in_flight.set(calls_in_flight.get() + 1);
                    let (writer, in_flight) = (writer.clone(), calls_in_flight.clone());
                    crate::runtime::spawn(async move {
                        let reply = handler(peer, body).await;
                        in_flight.set(in_flight.get() - 1);
                        let reply = id_frame(KIND_REPLY, id, &reply);
                        let _ = net::write_frame(&mut *writer.lock().await, &reply).await;
                    })
                    .detach();
                }
                _ => return true,
            }
        }
    }

    fn link(self: &Rc<Self>, to: u64) -> Option<async_channel::Sender<Bytes>> {
        if let Some(link) = self.links.borrow().get(&to) {
            return Some(link.clone());
        }
        let address = *self.addresses.get(&to)?;
        let (sender, receiver) = async_channel::bounded(LINK_QUEUE);
        self.links.borrow_mut().insert(to, sender.clone());
        crate::runtime::spawn(self.clone().run_link(to, address, receiver)).detach();
        Some(sender)
    }

    /// Keeps a connection to peer `to` and writes its queued frames, reconnecting after
    /// any failure. Frames queued while disconnected wait (up to the queue's bound).
    async fn run_link(
        self: Rc<Self>,
        to: u64,
        address: SocketAddr,
        frames: async_channel::Receiver<Bytes>,
    ) {
        let hello = frame(
            KIND_HELLO,
            &serde_json::to_vec(&self.hello).expect("hello serializes"),
        );
        let mut logged = false;
        let address_text = address.to_string();
        while !self.shutdown.is_started() {
            let connected = match &self.security {
                None => Stream::connect(&address_text, CONNECT_TIMEOUT).await,
                Some(security) => {
                    Stream::connect_tls(&address_text, CONNECT_TIMEOUT, &security.client).await
                }
            };
            let stream = match connected {
                Ok(stream) => stream,
                Err(error) => {
                    if !logged {
                        tracing::debug!(peer = to, %address, %error, "quorum peer unreachable; retrying");
                        logged = true;
                    }
                    time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            };
            logged = false;
            let (mut reader, mut writer) = futures_lite::io::split(stream);
            if net::write_frame(&mut writer, &hello).await.is_err() {
                continue;
            }
            let (closed_tx, closed_rx) = async_channel::bounded::<()>(1);
            let peers = self.clone();
            crate::runtime::spawn(async move {
                while let Ok((kind, body)) = read_frame(&mut reader, FRAME_BYTES_MAX).await {
                    match kind {
                        KIND_REPLY | KIND_BUSY => {
                            if let Some((id, body)) = split_id(body) {
                                if let Some(done) = peers.pending.borrow_mut().remove(&id) {
                                    let _ = done.send((kind == KIND_REPLY).then_some(body));
                                }
                            }
                        }
                        KIND_REFUSED => {
                            let reason = String::from_utf8_lossy(&body).into_owned();
                            tracing::error!(peer = to, "refused by a quorum peer: {reason}");
                            peers.refusals.borrow_mut().insert(to, reason);
                            break;
                        }
                        _ => break,
                    }
                }
                drop(closed_tx);
            })
            .detach();
            loop {
                let next = futures_lite::future::or(async { frames.recv().await.ok() }, async {
                    let _ = closed_rx.recv().await;
                    None
                })
                .await;
                let Some(bytes) = next else {
                    break;
                };
                if net::write_frame(&mut writer, &bytes).await.is_err() {
                    break;
                }
            }
            if frames.is_closed() {
                return;
            }
            time::sleep(RECONNECT_DELAY).await;
        }
    }

    /// Why this node cannot join, once a majority of the voters refused it: then it is
    /// the one misconfigured (a single refusal may come from a misconfigured peer).
    pub fn refused_by_majority(&self) -> Option<String> {
        let refusals = self.refusals.borrow();
        let majority = self.addresses.len() / 2 + 1;
        if refusals.len() < majority {
            return None;
        }
        let mut reasons: Vec<&String> = refusals.values().collect();
        reasons.sort();
        reasons.first().map(|reason| reason.to_string())
    }

    /// Calls node `to` with `body` and returns its reply.
    pub async fn call(
        self: &Rc<Self>,
        to: u64,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let link = self.link(to).ok_or(CallError::UnknownPeer(to))?;
        let id = self.next_call.get();
        self.next_call.set(id + 1);
        let (done, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(id, done);
        if link.try_send(id_frame(KIND_CALL, id, body)).is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(CallError::Busy(to));
        }
        let answer = time::timeout(timeout, answer).await;
        self.pending.borrow_mut().remove(&id);
        match answer {
            Ok(Ok(Some(reply))) => Ok(reply),
            Ok(Ok(None)) => Err(CallError::Busy(to)),
            Ok(Err(_)) | Err(time::Elapsed) => Err(CallError::Timeout(to)),
        }
    }
}

/// Raft messages go out on the peers' links.
#[derive(Clone)]
pub struct PeerTransport(pub Rc<Peers>);

impl Transport for PeerTransport {
    fn send(&self, message: Message) {
        let to = message.to;
        if let Some(link) = self.0.link(to) {
            let _ = link.try_send(frame(KIND_RAFT, &codec::encode_message(&message)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt;
    use futures_lite::AsyncWriteExt;

    fn hello(node_id: u64) -> Hello {
        Hello {
            cluster_id: "transport-test".into(),
            node_id,
        }
    }

    /// A node answering calls with `handler`, listening on an ephemeral loopback port.
    fn serving(
        node_id: u64,
        shutdown: &Rc<Shutdown>,
        handler: CallHandler,
    ) -> (Rc<Peers>, SocketAddr) {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let address = listener.local_addr().expect("address");
        let peers = Peers::new(hello(node_id), HashMap::new(), None, shutdown.clone());
        peers.set_call_handler(handler);
        crate::runtime::spawn(peers.clone().serve(listener)).detach();
        (peers, address)
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn a_peer_past_its_call_cap_is_answered_busy_and_keeps_its_connection() {
        crate::runtime::run_single("transport-test", std::env::temp_dir(), || async {
            let shutdown = Rc::new(Shutdown::new());
            let started = Rc::new(Cell::new(0usize));
            let counted = started.clone();
            // A controller that never finishes a call (stalled on a commit).
            let (server, address) = serving(
                1,
                &shutdown,
                Rc::new(move |_, _| {
                    counted.set(counted.get() + 1);
                    Box::pin(futures_lite::future::pending::<Bytes>())
                }),
            );
            let caller = Peers::new(
                hello(2),
                HashMap::from([(1, address)]),
                None,
                shutdown.clone(),
            );
            for _ in 0..CALLS_IN_FLIGHT_MAX {
                let caller = caller.clone();
                crate::runtime::spawn(async move {
                    let _ = caller.call(1, b"slow", Duration::from_secs(60)).await;
                })
                .detach();
            }
            eventually("every call under the cap runs", || {
                started.get() == CALLS_IN_FLIGHT_MAX
            })
            .await;
            let answered = caller.call(1, b"one more", Duration::from_secs(10)).await;
            assert_eq!(answered, Err(CallError::Busy(1)));
            assert_eq!(
                started.get(),
                CALLS_IN_FLIGHT_MAX,
                "the busy call did not run"
            );
            assert_eq!(server.disconnected_for(2), None, "still connected");
            assert_eq!(server.inbound.borrow().get(&2).map(|i| i.open), Some(1));
            shutdown.begin();
        })
        .expect("executor");
    }

    /// The call's timeout runs on the clock it is given: under a fake clock a minute-long
    /// timeout ends when the test says a minute has passed, not after a real minute.
    #[test]
    fn a_call_to_a_silent_peer_times_out_by_the_runtime_clock() {
        crate::runtime::run_single("transport-test", std::env::temp_dir(), || async {
            let guard = time::FakeClock::install();
            let clock = guard.clock().clone();
            let shutdown = Rc::new(Shutdown::new());
            let (_server, address) = serving(
                1,
                &shutdown,
                Rc::new(|_, _| Box::pin(futures_lite::future::pending::<Bytes>())),
            );
            let caller = Peers::new(
                hello(2),
                HashMap::from([(1, address)]),
                None,
                shutdown.clone(),
            );
            let answer = Rc::new(RefCell::new(None));
            let call = crate::runtime::spawn({
                let (caller, answer) = (caller.clone(), answer.clone());
                async move {
                    let result = caller.call(1, b"anyone?", Duration::from_secs(60)).await;
                    *answer.borrow_mut() = Some(result);
                }
            });
            // Real time passes; the fake clock does not: the call still waits.
            glommio::timer::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                *answer.borrow(),
                None,
                "60 s have not passed on the fake clock"
            );
            clock.advance(Duration::from_secs(60));
            call.await;
            assert_eq!(*answer.borrow(), Some(Err(CallError::Timeout(1))));
            shutdown.begin();
        })
        .expect("executor");
    }

    #[test]
    fn only_a_connection_the_peer_closed_counts_as_a_disconnection() {
        crate::runtime::run_single("transport-test", std::env::temp_dir(), || async {
            let shutdown = Rc::new(Shutdown::new());
            let (server, address) = serving(
                1,
                &shutdown,
                Rc::new(|_, body| Box::pin(async move { body })),
            );
            let hello_frame = |id| frame(KIND_HELLO, &serde_json::to_vec(&hello(id)).unwrap());

            // Node 3 sends an undecodable Raft message: the server closes the connection.
            let mut violator = Stream::connect(&address.to_string(), Duration::from_secs(1))
                .await
                .expect("connect");
            violator.write_all(&hello_frame(3)).await.expect("hello");
            eventually("node 3 is connected", || {
                server.inbound.borrow().get(&3).is_some_and(|i| i.open == 1)
            })
            .await;
            violator
                .write_all(&frame(KIND_RAFT, b"not a raft message"))
                .await
                .expect("send");
            let mut rest = Vec::new();
            let _ = violator.read_to_end(&mut rest).await;
            eventually("node 3's connection is closed", || {
                server.inbound.borrow().get(&3).is_some_and(|i| i.open == 0)
            })
            .await;
            assert_eq!(server.disconnected_for(3), None, "closed here: no evidence");

            // Node 4 closes its own connection: its process may be gone.
            let mut leaving = Stream::connect(&address.to_string(), Duration::from_secs(1))
                .await
                .expect("connect");
            leaving.write_all(&hello_frame(4)).await.expect("hello");
            eventually("node 4 is connected", || {
                server.inbound.borrow().get(&4).is_some_and(|i| i.open == 1)
            })
            .await;
            assert_eq!(server.disconnected_for(4), None);
            drop(leaving);
            eventually("node 4 counts as disconnected", || {
                server.disconnected_for(4).is_some()
            })
            .await;
            shutdown.begin();
        })
        .expect("executor");
    }
}
