//! A SASL listener's authentication phase (KIP-152): before a connection's first other
//! request, the client picks a mechanism (SaslHandshake) and runs it, its messages inside
//! SaslAuthenticate requests (handshake v1) or as bare length-prefixed tokens (v0).
//! ApiVersions is answered meanwhile; anything else closes the connection, as does a
//! failed login (after a SASL_AUTHENTICATION_FAILED answer with v1).
//!
//! With `connections.max.reauth.ms` set, a session ends: SaslAuthenticate tells the client
//! its lifetime, the client logs in again on the same connection before it ends
//! ([`reauthenticate`], KIP-368), and a request after the end closes the connection
//! (`server::connection`), so a changed password or a removed user stops old sessions.
//!
//! Bounded before anyone is known: one frame at a time (no pipelining), each at most
//! `FRAME_BYTES_MAX`, the whole phase within the request read timeout, at most
//! `EXCHANGES_MAX` frames.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::ResponseError;

use super::exchange::{self, DispatchError};
use super::handlers::{sasl_authenticate, sasl_handshake};
use super::registry;
use crate::protocol::frame::{self, Request};
use crate::runtime::net::{self, Stream};
use crate::runtime::time;
use crate::security::scram::{ScramMechanism, ScramServer};
use crate::security::{plain, SaslError, MECHANISMS};
use crate::shard::Shard;

/// Kafka's `sasl.server.max.receive.size`.
const FRAME_BYTES_MAX: usize = 512 * 1024;
/// Frames one authentication may take: ApiVersions, a handshake, two SCRAM rounds, with
/// room for a client that asks ApiVersions twice.
const EXCHANGES_MAX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    #[error("authentication did not finish within {0:?}")]
    Slow(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("{0}")]
    Dispatch(#[from] DispatchError),
    #[error("{0:?} before authenticating")]
    Unauthenticated(ApiKey),
    #[error("unsupported SASL mechanism {0:?}")]
    Mechanism(String),
    #[error("SaslAuthenticate before SaslHandshake")]
    NoHandshake,
    #[error("user {user:?}: {error}")]
    Failed { user: String, error: SaslError },
    #[error("more than {EXCHANGES_MAX} frames without authenticating")]
    TooLong,
    #[error("re-authentication with {0:?}, not the mechanism of the first login")]
    MechanismChanged(String),
    #[error("re-authentication needs SaslHandshake v1 or later")]
    ReauthenticationV0,
}

enum Mechanism {
    Plain,
    /// Boxed: the exchange's state between messages.
    Scram(Box<ScramServer>),
}

/// What a login proved, and until when (KIP-368).
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    /// The mechanism it used: a re-authentication must use the same one, as in Kafka.
    pub mechanism: &'static str,
    /// With `connections.max.reauth.ms` set: past this instant a request other than a
    /// re-authentication closes the connection.
    pub expires: Option<Instant>,
}

impl Session {
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|expires| now >= expires)
    }
}

/// Where an exchange's frames come from and go to: the bare stream during the first login,
/// the connection's reader and ordered reply queue during a re-authentication.
pub(crate) trait Frames {
    /// The next frame, at most `bytes_max` long.
    async fn read(&mut self, bytes_max: usize) -> std::io::Result<Bytes>;
    async fn write(&mut self, frame: Bytes) -> std::io::Result<()>;
}

impl Frames for Stream {
    async fn read(&mut self, bytes_max: usize) -> std::io::Result<Bytes> {
        net::read_frame(self, bytes_max).await
    }

    async fn write(&mut self, frame: Bytes) -> std::io::Result<()> {
        net::write_frame(self, &frame).await
    }
}

/// Runs the phase on `stream`; returns the session it opened.
pub async fn authenticate(
    shard: &Rc<Shard>,
    stream: &mut Stream,
) -> Result<Session, AuthenticationError> {
    let within = shard.config.request_read_timeout;
    match time::timeout(within, exchange_frames(shard, stream, None, None)).await {
        Ok(outcome) => outcome,
        Err(time::Elapsed) => Err(AuthenticationError::Slow(within)),
    }
}

/// Re-authentication (KIP-368) on an authenticated connection, from its SaslHandshake on:
/// the same mechanism and the same user must log in again, with the credentials the
/// cluster holds now (a changed password fails here). Bounded as the first login.
pub(crate) async fn reauthenticate(
    shard: &Rc<Shard>,
    frames: &mut impl Frames,
    handshake: Request,
    previous: &Session,
) -> Result<Session, AuthenticationError> {
    let within = shard.config.request_read_timeout;
    let exchange = exchange_frames(shard, frames, Some(handshake), Some(previous));
    match time::timeout(within, exchange).await {
        Ok(outcome) => outcome,
        Err(time::Elapsed) => Err(AuthenticationError::Slow(within)),
    }
}

async fn exchange_frames(
    shard: &Rc<Shard>,
    frames: &mut impl Frames,
    mut first: Option<Request>,
    previous: Option<&Session>,
) -> Result<Session, AuthenticationError> {
    let mut mechanism: Option<(Mechanism, &'static str, i16)> = None;
    for _ in 0..EXCHANGES_MAX {
        let request = match first.take() {
            Some(request) => request,
            None => {
                let bytes = frames.read(FRAME_BYTES_MAX).await?;
                if let Some((chosen, name, 0)) = &mut mechanism {
                    // After a v0 handshake the client sends bare tokens, and a failure
                    // just closes.
                    let (answer, user) =
                        step(shard, chosen, &bytes).map_err(|e| failed(&bytes, e))?;
                    frames.write(length_prefixed(&answer)).await?;
                    match user {
                        Some(user) => return Ok(session(shard, user, name)),
                        None => continue,
                    }
                }
                frame::parse_request(bytes)?
            }
        };
        match request.api_key {
            ApiKey::ApiVersions => {
                // As outside the phase (franz-go asks v5, newer than ours, first).
                write(frames, registry::answer_api_versions(&request)?).await?;
            }
            ApiKey::SaslHandshake => {
                let body: SaslHandshakeRequest = exchange::decode(&request)?;
                let name = body.mechanism.as_str();
                let chosen = choose(name);
                let refusal = match (&chosen, previous) {
                    (None, _) => Some(AuthenticationError::Mechanism(name.to_string())),
                    // A re-authentication needs SaslAuthenticate (handshake v1) and the
                    // mechanism of the first login.
                    (Some(_), Some(previous)) if previous.mechanism != name => {
                        Some(AuthenticationError::MechanismChanged(name.to_string()))
                    }
                    (Some(_), Some(_)) if request.api_version == 0 => {
                        Some(AuthenticationError::ReauthenticationV0)
                    }
                    _ => None,
                };
                if let Some(refusal) = refusal {
                    let error = Some(ResponseError::UnsupportedSaslMechanism);
                    write(frames, sasl_handshake::answer(&request, error)?).await?;
                    return Err(refusal);
                }
                write(frames, sasl_handshake::answer(&request, None)?).await?;
                let chosen = chosen.expect("refused above when unknown");
                let name = MECHANISMS
                    .into_iter()
                    .find(|known| *known == name)
                    .expect("choose() knows only these");
                mechanism = Some((chosen, name, request.api_version));
            }
            ApiKey::SaslAuthenticate => {
                let Some((chosen, name, _)) = &mut mechanism else {
                    let message = "SaslAuthenticate before SaslHandshake";
                    let answer = sasl_authenticate::failure(
                        &request,
                        ResponseError::IllegalSaslState,
                        message,
                    )?;
                    write(frames, answer).await?;
                    return Err(AuthenticationError::NoHandshake);
                };
                let body: SaslAuthenticateRequest = exchange::decode(&request)?;
                let outcome =
                    step(shard, chosen, &body.auth_bytes).and_then(|(answer, user)| {
                        match (user, previous) {
                            (Some(user), Some(previous)) if user != previous.user => {
                                Err(SaslError::PrincipalChanged(previous.user.clone(), user))
                            }
                            (user, _) => Ok((answer, user)),
                        }
                    });
                match outcome {
                    Ok((answer, None)) => {
                        write(frames, sasl_authenticate::answer(&request, answer, 0)?).await?;
                    }
                    Ok((answer, Some(user))) => {
                        let session = session(shard, user, name);
                        let lifetime_ms = session_lifetime_ms(shard);
                        let answer = sasl_authenticate::answer(&request, answer, lifetime_ms)?;
                        write(frames, answer).await?;
                        return Ok(session);
                    }
                    Err(error) => {
                        let failure = failed(&body.auth_bytes, error);
                        let answer = sasl_authenticate::failure(
                            &request,
                            ResponseError::SaslAuthenticationFailed,
                            &failure.to_string(),
                        )?;
                        write(frames, answer).await?;
                        return Err(failure);
                    }
                }
            }
            other => return Err(AuthenticationError::Unauthenticated(other)),
        }
    }
    Err(AuthenticationError::TooLong)
}

/// A session opened now: it lasts `connections.max.reauth.ms` when that is set.
fn session(shard: &Shard, user: String, mechanism: &'static str) -> Session {
    Session {
        user,
        mechanism,
        expires: shard
            .config
            .connection_reauth_max
            .map(|lifetime| time::now() + lifetime),
    }
}

/// What SaslAuthenticate tells the client (0: no limit; KIP-368 clients re-authenticate
/// at 85 to 95% of it).
fn session_lifetime_ms(shard: &Shard) -> i64 {
    shard
        .config
        .connection_reauth_max
        .map_or(0, |lifetime| lifetime.as_millis() as i64)
}

fn choose(name: &str) -> Option<Mechanism> {
    if !MECHANISMS.contains(&name) {
        return None;
    }
    match ScramMechanism::from_name(name) {
        Some(scram) => Some(Mechanism::Scram(Box::new(ScramServer::new(scram)))),
        None => Some(Mechanism::Plain),
    }
}

/// One message of the exchange: the answer, and the user once authenticated.
fn step(
    shard: &Shard,
    mechanism: &mut Mechanism,
    message: &[u8],
) -> Result<(Vec<u8>, Option<String>), SaslError> {
    let metadata = shard.metadata();
    let credential_of = |user: &str, scram: ScramMechanism| {
        metadata
            .scram_credentials
            .get(user)
            .and_then(|credentials| credentials.get(&scram))
            .cloned()
    };
    match mechanism {
        Mechanism::Plain => {
            plain::authenticate(message, credential_of).map(|user| (Vec::new(), Some(user)))
        }
        Mechanism::Scram(server) => {
            let scram = server.mechanism();
            server.step(message, |user| credential_of(user, scram))
        }
    }
}

/// The failure, naming the user the message claimed when it names one.
fn failed(message: &[u8], error: SaslError) -> AuthenticationError {
    AuthenticationError::Failed {
        user: claimed_user(message).unwrap_or_default(),
        error,
    }
}

/// The user a PLAIN or SCRAM client-first message names, for the log.
fn claimed_user(message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message.get(..message.len().min(512))?).ok()?;
    if let Some(start) = text.find("n=") {
        let name = &text[start + 2..];
        return Some(name.split(',').next().unwrap_or_default().to_string());
    }
    text.split('\0').nth(1).map(str::to_string)
}

fn length_prefixed(bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(bytes.len() + 4);
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
    out.freeze()
}

async fn write(
    frames: &mut impl Frames,
    response: Option<Bytes>,
) -> Result<(), AuthenticationError> {
    if let Some(bytes) = response {
        frames.write(bytes).await?;
    }
    Ok(())
}
