//! SASL from the client's side, over a [`Raw`] connection: SCRAM credentials set with
//! AlterUserScramCredentials (salted here, as `kafka-configs` does), handshakes and SCRAM
//! logins.

use std::num::NonZeroU32;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use petrel::security::scram::client::ScramClient;
use petrel::security::scram::ScramMechanism;

use super::Raw;

pub fn upsertion(
    user: &str,
    mechanism: ScramMechanism,
    password: &str,
    iterations: i32,
) -> ScramCredentialUpsertion {
    let salt = format!("salt of {user}").into_bytes();
    let count = NonZeroU32::new(iterations.max(1) as u32).expect("iterations");
    let salted = mechanism.salted_password(password.as_bytes(), &salt, count);
    let mut upsertion = ScramCredentialUpsertion::default();
    upsertion.name = StrBytes::from_string(user.into());
    upsertion.mechanism = mechanism.code();
    upsertion.iterations = iterations;
    upsertion.salt = Bytes::from(salt);
    upsertion.salted_password = Bytes::from(salted);
    upsertion
}

pub fn alter(raw: &mut Raw, request: AlterUserScramCredentialsRequest) -> Vec<(String, i16)> {
    let response: AlterUserScramCredentialsResponse =
        raw.call(ApiKey::AlterUserScramCredentials, 0, &request);
    response
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect()
}

pub fn set_user(raw: &mut Raw, user: &str, mechanism: ScramMechanism, password: &str) {
    let mut request = AlterUserScramCredentialsRequest::default();
    request.upsertions = vec![upsertion(user, mechanism, password, 4096)];
    assert_eq!(alter(raw, request), vec![(user.to_string(), 0)]);
}

pub fn handshake(raw: &mut Raw, mechanism: &str, version: i16) -> SaslHandshakeResponse {
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_string(mechanism.into());
    raw.call(ApiKey::SaslHandshake, version, &request)
}

pub fn authenticate(raw: &mut Raw, bytes: Vec<u8>) -> SaslAuthenticateResponse {
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = Bytes::from(bytes);
    raw.call(ApiKey::SaslAuthenticate, 2, &request)
}

/// A SCRAM login over handshake v1: Ok once the server proved itself, else the error code
/// of the failing step.
pub fn scram_login(
    raw: &mut Raw,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> Result<(), i16> {
    scram_session(raw, mechanism, user, password).map(|_| ())
}

/// [`scram_login`], returning the session lifetime the broker gave (KIP-368; 0: none).
pub fn scram_session(
    raw: &mut Raw,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> Result<i64, i16> {
    let shook = handshake(raw, mechanism.name(), 1);
    if shook.error_code != 0 {
        return Err(shook.error_code);
    }
    scram_exchange(raw, mechanism, user, password)
}

/// The SaslAuthenticate rounds of a SCRAM login, after its handshake.
pub fn scram_exchange(
    raw: &mut Raw,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> Result<i64, i16> {
    let mut client = ScramClient::new(mechanism, user, password);
    let first = authenticate(raw, client.first().into_bytes());
    if first.error_code != 0 {
        return Err(first.error_code);
    }
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).expect("utf-8");
    let last = client
        .last(&server_first)
        .expect("a well-formed server-first");
    let last = authenticate(raw, last.into_bytes());
    if last.error_code != 0 {
        return Err(last.error_code);
    }
    let server_final = String::from_utf8(last.auth_bytes.to_vec()).expect("utf-8");
    assert!(
        client.verify(&server_final),
        "the server knows the credential"
    );
    Ok(last.session_lifetime_ms)
}
