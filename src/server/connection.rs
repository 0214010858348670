//! One client connection.
//!
//! A reader task reads frames (size prefix capped at `request_bytes_max` before anything is
//! allocated), takes a share of the connection's in-flight byte budget, and starts a task
//! per request (pipelining). Requests pass their ordered phase in arrival order (`turn`),
//! so produces append in request order while their durability waits overlap. A writer task awaits
//! those tasks in arrival order and writes each response, so responses leave in request
//! order as Kafka requires. At most `inflight_requests_max` requests are queued; when the
//! queue or the byte budget is full the reader stops reading (backpressure).
//!
//! A SASL connection's session (`server::authentication`) may end: a SaslHandshake
//! re-authenticates in place (KIP-368), any other request after the end closes.
//!
//! Timeouts: an idle connection closes after `connection_idle`; a request that has started
//! must arrive whole within `request_read_timeout` (slow-loris). A malformed frame, an
//! unknown API or an undecodable request closes the connection, as Kafka does.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::ApiKey;

use crate::runtime::net::{self, Stream};
use crate::runtime::sync::local_channel::{self, LocalReceiver, LocalSender};
use crate::runtime::sync::{Semaphore, StaticPermit};
use crate::runtime::time;

use super::authentication;
use super::exchange::DispatchError;
use super::registry;
use super::turn::Turn;
use crate::protocol::frame;
use crate::security::principal;
use crate::shard::Shard;

/// A request's eventual reply. Requests run as detached tasks: a request is never cancelled
/// half-way (an append must finish once started), even if its client goes away.
type Reply = futures_channel::oneshot::Receiver<Result<Option<Bytes>, DispatchError>>;

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("idle for too long")]
    Idle,
    #[error("request not received in time")]
    SlowRequest,
    #[error("broker shutting down")]
    Shutdown,
    #[error("the SASL session of {0:?} expired without a re-authentication")]
    SessionExpired(String),
    #[error("re-authentication failed: {0}")]
    Reauthentication(#[from] authentication::AuthenticationError),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves one client connection accepted on listener `listener` (an index in
/// `config.listeners.all`); an SSL listener's handshake runs first, here, so a slow one
/// holds this connection's task only, bounded by the request read timeout.
pub async fn serve(shard: Rc<Shard>, stream: Stream, listener: usize) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    stream.set_nodelay();
    let config = &shard.config.listeners.all[listener];
    let mut stream = match &config.tls {
        None => stream,
        Some(tls) => match stream
            .accept_tls(tls, shard.config.request_read_timeout)
            .await
        {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(%peer, %error, "TLS handshake failed; closing the connection");
                return;
            }
        },
    };
    let mut session = None;
    let principal: Rc<str> = if config.protocol.sasl() {
        match authentication::authenticate(&shard, &mut stream).await {
            Ok(opened) => {
                let principal = Rc::from(principal::of_user(&opened.user));
                session = Some(opened);
                principal
            }
            Err(error) => {
                tracing::info!(%peer, %error, "SASL authentication failed; closing the connection");
                return;
            }
        }
    } else if let Some(certificate) = stream.peer_certificate() {
        let named = principal::subject_dn(certificate)
            .and_then(|dn| shard.config.principal_mapping.name_of(&dn));
        match named {
            Ok(name) => Rc::from(principal::of_user(&name)),
            Err(error) => {
                tracing::info!(%peer, %error, "no principal for the client certificate; closing the connection");
                return;
            }
        }
    } else {
        Rc::from(principal::ANONYMOUS)
    };
    let (reader, writer) = futures_lite::io::split(stream);
    let budget = Rc::new(Semaphore::new(
        shard.config.connection_inflight_bytes_max as u64,
    ));
    let (queue_tx, queue_rx) =
        local_channel::new_bounded::<(Reply, StaticPermit)>(shard.config.inflight_requests_max);
    let writer_task = crate::runtime::spawn(write_replies(writer, queue_rx, peer.clone()));
    let client_host = format!(
        "/{}",
        peer.rsplit_once(':').map_or(peer.as_str(), |(ip, _)| ip)
    );
    let origin = Origin {
        client_host,
        listener,
        principal,
        mute: Rc::default(),
    };
    let outcome = read_requests(&shard, &origin, session, reader, &budget, &queue_tx).await;
    drop(queue_tx);
    match outcome {
        ReadError::Closed | ReadError::Shutdown => {
            tracing::debug!(%peer, principal = %origin.principal, "connection done")
        }
        error => tracing::info!(%peer, principal = %origin.principal, %error, "closing connection"),
    }
    // Replies to everything already read still go out (also on shutdown).
    writer_task.await;
}

/// Where a connection's requests come from, as handlers see it.
struct Origin {
    /// The peer as Kafka shows it (`/ip`).
    client_host: String,
    /// The listener it came in on.
    listener: usize,
    /// Who the connection proved to be (SASL, a client certificate) or `User:ANONYMOUS`.
    principal: Rc<str>,
    /// Set by a request whose client went over its quota (`server::quota`).
    mute: super::quota::Mute,
}

async fn read_requests(
    shard: &Rc<Shard>,
    origin: &Origin,
    mut session: Option<authentication::Session>,
    mut reader: futures_lite::io::ReadHalf<Stream>,
    budget: &Rc<Semaphore>,
    queue: &LocalSender<(Reply, StaticPermit)>,
) -> ReadError {
    let config = &shard.config;
    let mut previous_turn = None;
    loop {
        // A client over its quota: nothing more is read until its throttle has passed.
        if let Some(until) = origin.mute.take() {
            let wait = until.saturating_duration_since(time::now());
            if shard.shutdown.or_stopped(time::sleep(wait)).await.is_none() {
                return ReadError::Shutdown;
            }
        }
        // Between requests: wait for the next one, the idle timeout, or shutdown.
        let mut prefix = [0u8; 4];
        let next = time::timeout(config.connection_idle, reader.read(&mut prefix[..1]));
        let Some(first) = shard.shutdown.or_stopped(next).await else {
            return ReadError::Shutdown;
        };
        match first {
            Ok(Ok(0)) => return ReadError::Closed,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return error.into(),
            Err(time::Elapsed) => return ReadError::Idle,
        }
        // A request has started: the rest must arrive within the read timeout.
        let deadline = config.request_read_timeout;
        if let Err(error) = read_exact_within(&mut reader, &mut prefix[1..], deadline).await {
            return error;
        }
        let size = match frame::frame_size(prefix, config.request_bytes_max) {
            Ok(size) => size,
            Err(error) => return error.into(),
        };
        let permit = match budget.acquire_static_permit(size as u64).await {
            Ok(permit) => permit,
            Err(_) => return ReadError::Closed,
        };
        let mut body = BytesMut::zeroed(size);
        if let Err(error) = read_exact_within(&mut reader, &mut body, deadline).await {
            return error;
        }
        let mut request = match frame::parse_request(body.freeze()) {
            Ok(request) => request,
            Err(error) => return error.into(),
        };
        if let Some(current) = &session {
            if request.api_key == ApiKey::SaslHandshake {
                // KIP-368: earlier requests' answers go out first (the queue keeps order).
                let mut frames = Reauthentication {
                    reader: &mut reader,
                    queue,
                    budget,
                };
                match authentication::reauthenticate(shard, &mut frames, request, current).await {
                    Ok(renewed) => {
                        tracing::info!(principal = %origin.principal, "SASL session renewed");
                        session = Some(renewed);
                    }
                    Err(error) => return error.into(),
                }
                drop(permit);
                continue;
            }
            if current.expired(time::now()) {
                return ReadError::SessionExpired(current.user.clone());
            }
        }
        request.client_host.clone_from(&origin.client_host);
        request.listener = origin.listener;
        request.principal = origin.principal.clone();
        request.mute = origin.mute.clone();
        let (answer, reply) = futures_channel::oneshot::channel();
        let (turn, next_turn) = Turn::chain(previous_turn.take());
        previous_turn = Some(next_turn);
        let handler_shard = shard.clone();
        crate::runtime::spawn(async move {
            let _ = answer.send(registry::dispatch(handler_shard, request, turn).await);
        })
        .detach();
        if queue.send((reply, permit)).await.is_err() {
            // The writer stopped (the client went away).
            return ReadError::Closed;
        }
    }
}

/// A re-authentication's frames: read from the connection (its requests are not
/// pipelined), answered through the reply queue so they follow earlier answers.
struct Reauthentication<'a> {
    reader: &'a mut futures_lite::io::ReadHalf<Stream>,
    queue: &'a LocalSender<(Reply, StaticPermit)>,
    budget: &'a Rc<Semaphore>,
}

impl authentication::Frames for Reauthentication<'_> {
    async fn read(&mut self, bytes_max: usize) -> std::io::Result<Bytes> {
        net::read_frame(self.reader, bytes_max).await
    }

    async fn write(&mut self, frame: Bytes) -> std::io::Result<()> {
        let gone = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed");
        let permit = self
            .budget
            .acquire_static_permit(0)
            .await
            .map_err(|_| gone())?;
        let (answer, reply) = futures_channel::oneshot::channel();
        let _ = answer.send(Ok(Some(frame)));
        self.queue.send((reply, permit)).await.map_err(|_| gone())
    }
}

async fn read_exact_within(
    reader: &mut futures_lite::io::ReadHalf<Stream>,
    buffer: &mut [u8],
    within: Duration,
) -> Result<(), ReadError> {
    net::read_exact_within(reader, buffer, within)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof => ReadError::Closed,
            std::io::ErrorKind::TimedOut => ReadError::SlowRequest,
            _ => ReadError::Io(error),
        })
}

async fn write_replies(
    mut writer: futures_lite::io::WriteHalf<Stream>,
    queue: LocalReceiver<(Reply, StaticPermit)>,
    peer: String,
) {
    while let Some((reply, permit)) = queue.recv().await {
        match reply.await.unwrap_or(Err(DispatchError::Abandoned)) {
            Ok(Some(response)) => {
                if let Err(error) = net::write_frame(&mut writer, &response).await {
                    tracing::debug!(%peer, %error, "write failed");
                    break;
                }
            }
            Ok(None) => {} // acks=0 produce: Kafka sends no response.
            Err(error) => {
                tracing::info!(%peer, %error, "closing connection");
                break;
            }
        }
        drop(permit);
    }
    let _ = writer.close().await;
}
