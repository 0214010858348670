//! A SASL listener's authentication phase (KIP-152): before a connection's first other
//! request, the client picks a mechanism (SaslHandshake) and runs it, its messages inside
//! SaslAuthenticate requests (handshake v1) or as bare length-prefixed tokens (v0).
//! ApiVersions is answered meanwhile; anything else closes the connection, as does a
//! failed login (after a SASL_AUTHENTICATION_FAILED answer with v1).
//!
//! Bounded before anyone is known: one frame at a time (no pipelining), each at most
//! `FRAME_BYTES_MAX`, the whole phase within the request read timeout, at most
//! `EXCHANGES_MAX` frames.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::ResponseError;

use super::exchange::{self, DispatchError};
use super::handlers::{sasl_authenticate, sasl_handshake};
use super::registry;
use crate::protocol::frame;
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
}

enum Mechanism {
    Plain,
    /// Boxed: the exchange's state between messages.
    Scram(Box<ScramServer>),
}

/// Runs the phase on `stream`; returns the authenticated user.
pub async fn authenticate(
    shard: &Rc<Shard>,
    stream: &mut Stream,
) -> Result<String, AuthenticationError> {
    let within = shard.config.request_read_timeout;
    match time::timeout(within, exchange_frames(shard, stream)).await {
        Ok(outcome) => outcome,
        Err(time::Elapsed) => Err(AuthenticationError::Slow(within)),
    }
}

async fn exchange_frames(
    shard: &Rc<Shard>,
    stream: &mut Stream,
) -> Result<String, AuthenticationError> {
    let mut mechanism: Option<(Mechanism, i16)> = None;
    for _ in 0..EXCHANGES_MAX {
        let bytes = net::read_frame(stream, FRAME_BYTES_MAX).await?;
        if let Some((chosen, 0)) = &mut mechanism {
            // After a v0 handshake the client sends bare tokens, and a failure just closes.
            match step(shard, chosen, &bytes) {
                Ok((answer, user)) => {
                    net::write_frame(stream, &length_prefixed(&answer)).await?;
                    if let Some(user) = user {
                        return Ok(user);
                    }
                    continue;
                }
                Err(error) => return Err(failed(&bytes, error)),
            }
        }
        let request = frame::parse_request(bytes)?;
        match request.api_key {
            ApiKey::ApiVersions => {
                // As outside the phase (franz-go asks v5, newer than ours, first).
                write(stream, registry::answer_api_versions(&request)?).await?;
            }
            ApiKey::SaslHandshake => {
                let body: SaslHandshakeRequest = exchange::decode(&request)?;
                let name = body.mechanism.as_str();
                let Some(chosen) = choose(name) else {
                    let error = Some(ResponseError::UnsupportedSaslMechanism);
                    write(stream, sasl_handshake::answer(&request, error)?).await?;
                    return Err(AuthenticationError::Mechanism(name.to_string()));
                };
                write(stream, sasl_handshake::answer(&request, None)?).await?;
                mechanism = Some((chosen, request.api_version));
            }
            ApiKey::SaslAuthenticate => {
                let Some((chosen, _)) = &mut mechanism else {
                    let message = "SaslAuthenticate before SaslHandshake";
                    let answer = sasl_authenticate::failure(
                        &request,
                        ResponseError::IllegalSaslState,
                        message,
                    )?;
                    write(stream, answer).await?;
                    return Err(AuthenticationError::NoHandshake);
                };
                let body: SaslAuthenticateRequest = exchange::decode(&request)?;
                match step(shard, chosen, &body.auth_bytes) {
                    Ok((answer, user)) => {
                        write(stream, sasl_authenticate::answer(&request, answer)?).await?;
                        if let Some(user) = user {
                            return Ok(user);
                        }
                    }
                    Err(error) => {
                        let failure = failed(&body.auth_bytes, error);
                        let answer = sasl_authenticate::failure(
                            &request,
                            ResponseError::SaslAuthenticationFailed,
                            &failure.to_string(),
                        )?;
                        write(stream, answer).await?;
                        return Err(failure);
                    }
                }
            }
            other => return Err(AuthenticationError::Unauthenticated(other)),
        }
    }
    Err(AuthenticationError::TooLong)
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

async fn write(stream: &mut Stream, response: Option<Bytes>) -> Result<(), AuthenticationError> {
    if let Some(bytes) = response {
        net::write_frame(stream, &bytes).await?;
    }
    Ok(())
}
