//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka speaks them: the
//! server's side of the exchange, and the credentials it checks against. A credential
//! holds no password: the salt, the iteration count, StoredKey = H(HMAC(SaltedPassword,
//! "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"). Kafka's admin client
//! sends the salted password (AlterUserScramCredentials), so the broker never runs PBKDF2
//! for SCRAM; only a PLAIN login checked against a SCRAM credential does (`super::plain`).
//!
//! Messages are hostile input: each is capped in length, parsed without panics, and an
//! unknown user runs the exchange to its end with a made-up credential, so the answer does
//! not say whether the user exists.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use serde::{Deserialize, Serialize};

use super::SaslError;

/// Kafka's bounds on a credential's iterations (`ScramMechanism.minIterations()`, and
/// `kafka-configs`' upper limit).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;
/// A SCRAM message is a few hundred bytes; anything far longer is refused unread.
const MESSAGE_BYTES_MAX: usize = 4096;
/// Bytes of the server's share of the nonce (before base64).
const NONCE_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type codes (AlterUserScramCredentials).
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// Bytes of its hash (and of a salted password).
    pub fn hash_bytes(self) -> usize {
        self.digest().output_len()
    }

    fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash_of(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// Hi(password, salt, iterations): PBKDF2 with this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_bytes()];
        pbkdf2::derive(self.pbkdf2(), iterations, salt, password, &mut out);
        out
    }
}

/// What the broker keeps of a user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// From the salted password an admin client sends (AlterUserScramCredentials).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        iterations: u32,
        salted_password: &[u8],
    ) -> ScramCredential {
        let client_key = mechanism.hmac_of(salted_password, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: mechanism.hash_of(&client_key),
            server_key: mechanism.hmac_of(salted_password, b"Server Key"),
        }
    }

    /// Whether `password` is this credential's (PLAIN's check): one PBKDF2 run.
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let Some(iterations) = NonZeroU32::new(self.iterations) else {
            return false;
        };
        let salted = mechanism.salted_password(password, &self.salt, iterations);
        let candidate =
            ScramCredential::from_salted_password(mechanism, Vec::new(), 0, &salted).stored_key;
        equal_in_constant_time(&candidate, &self.stored_key)
    }
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    bytes
}

/// The server's side of one SCRAM exchange: client-first in, server-first out, then
/// client-final in, server-final out and the authenticated user.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

enum State {
    AwaitingClientFirst,
    /// Boxed: the exchange's strings, kept between the two client messages.
    AwaitingClientFinal(Box<Pending>),
    Done,
}

struct Pending {
    user: String,
    /// None: no such user (the exchange runs on to fail at its end).
    credential: Option<ScramCredential>,
    /// The client's first message without its GS2 header.
    client_first_bare: String,
    gs2_header: String,
    server_first: String,
    nonce: String,
    client_nonce: String,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::AwaitingClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the client's next message; returns the server's answer, and once the
    /// exchange succeeded, the user it authenticated.
    pub fn step(
        &mut self,
        message: &[u8],
        credential_of: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<(Vec<u8>, Option<String>), SaslError> {
        if message.len() > MESSAGE_BYTES_MAX {
            return Err(SaslError::Malformed("a SCRAM message over 4 KiB".into()));
        }
        let text = std::str::from_utf8(message)
            .map_err(|_| SaslError::Malformed("a SCRAM message is not UTF-8".into()))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingClientFirst => {
                let answer = self.client_first(text, credential_of)?;
                Ok((answer.into_bytes(), None))
            }
            State::AwaitingClientFinal(pending) => {
                let Pending {
                    user,
                    credential,
                    client_first_bare,
                    gs2_header,
                    server_first,
                    nonce,
                    client_nonce,
                } = *pending;
                let expected = Expected {
                    credential,
                    client_first_bare: &client_first_bare,
                    gs2_header: &gs2_header,
                    server_first: &server_first,
                    nonce: &nonce,
                    client_nonce: &client_nonce,
                };
                let answer = self.client_final(text, expected)?;
                Ok((answer.into_bytes(), Some(user)))
            }
            State::Done => Err(SaslError::Malformed(
                "a message after the exchange ended".into(),
            )),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        credential_of: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<String, SaslError> {
        // gs2-header: "n,," or "y,," (no channel binding), optionally "n,a=authzid,".
        let mut parts = text.splitn(3, ',');
        let binding = parts.next().unwrap_or_default();
        let authzid = parts.next().unwrap_or_default();
        let bare = parts
            .next()
            .ok_or_else(|| SaslError::Malformed("no GS2 header".into()))?;
        if binding != "n" && binding != "y" {
            return Err(SaslError::Malformed(
                "channel binding is not supported".into(),
            ));
        }
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", name)) => user = Some(decode_saslname(name)?),
                Some(("r", nonce)) => client_nonce = Some(nonce),
                Some(("m", _)) => {
                    return Err(SaslError::Malformed("mandatory extensions (m=)".into()))
                }
                Some(("tokenauth", _)) => {
                    return Err(SaslError::Malformed(
                        "delegation tokens are not supported".into(),
                    ))
                }
                _ => {} // Kafka's other SCRAM extensions are ignored
            }
        }
        let user = user.ok_or_else(|| SaslError::Malformed("no user name (n=)".into()))?;
        let client_nonce = client_nonce
            .filter(|nonce| {
                !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',')
            })
            .ok_or_else(|| SaslError::Malformed("no nonce (r=)".into()))?;
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_saslname(authzid)? != user {
                return Err(SaslError::Malformed(
                    "an authorization id other than the user".into(),
                ));
            }
        }
        let credential = credential_of(&user);
        // An unknown user gets a salt and iteration count like a real one's.
        let (salt, iterations) = match &credential {
            Some(credential) => (credential.salt.clone(), credential.iterations),
            None => (random_bytes(self.mechanism.hash_bytes()), ITERATIONS_MIN),
        };
        let nonce = format!("{client_nonce}{}", BASE64.encode(random_bytes(NONCE_BYTES)));
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
        self.state = State::AwaitingClientFinal(Box::new(Pending {
            user,
            credential,
            client_first_bare: bare.to_string(),
            gs2_header: format!("{binding},{authzid},"),
            server_first: server_first.clone(),
            nonce,
            client_nonce: client_nonce.to_string(),
        }));
        Ok(server_first)
    }

    fn client_final(&self, text: &str, expected: Expected<'_>) -> Result<String, SaslError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| SaslError::Malformed("no proof (p=)".into()))?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", value)) => binding = Some(value),
                Some(("r", value)) => nonce = Some(value),
                _ => {}
            }
        }
        if binding != Some(BASE64.encode(expected.gs2_header).as_str()) {
            return Err(SaslError::Malformed(
                "the channel binding does not repeat the GS2 header".into(),
            ));
        }
        // librdkafka before 2.6.1 (confluentinc/librdkafka#4895) repeats its own nonce in
        // front of the combined one; Kafka 3.8.1 and 3.9 accept that (`endsWith`), and
        // Debian's kcat still links such a librdkafka. The exact form, or that one only:
        // the combined nonce is whole either way and the proof signs what was sent.
        let old_librdkafka = format!("{}{}", expected.client_nonce, expected.nonce);
        if nonce != Some(expected.nonce) && nonce != Some(old_librdkafka.as_str()) {
            return Err(SaslError::Malformed("the nonce does not match".into()));
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| SaslError::Malformed("the proof is not base64".into()))?;
        let credential = expected.credential.ok_or(SaslError::BadCredentials)?;
        let auth_message = format!(
            "{},{},{without_proof}",
            expected.client_first_bare, expected.server_first
        );
        let signature = self
            .mechanism
            .hmac_of(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(SaslError::BadCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored_key = self.mechanism.hash_of(&client_key);
        if !equal_in_constant_time(&stored_key, &credential.stored_key) {
            return Err(SaslError::BadCredentials);
        }
        let server_signature = self
            .mechanism
            .hmac_of(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

/// What the client's final message is checked against.
struct Expected<'a> {
    credential: Option<ScramCredential>,
    client_first_bare: &'a str,
    gs2_header: &'a str,
    server_first: &'a str,
    nonce: &'a str,
    client_nonce: &'a str,
}

/// A saslname: `=2C` is a comma, `=3D` an equals sign, any other `=` is malformed.
fn decode_saslname(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(SaslError::Malformed("a bad escape in the user name".into())),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(SaslError::Malformed("an empty user name".into()));
    }
    Ok(out)
}

/// The client's side of an exchange: what a client sends for `user` and `password`, and
/// the check of the server's signature. The black-box tests log in with it; a broker's own
/// SASL client (replica fetches on a SASL listener) is its other use to come.
pub mod client {
    use super::*;

    pub struct ScramClient {
        mechanism: ScramMechanism,
        user: String,
        password: String,
        nonce: String,
        first_bare: String,
        server_signature: Vec<u8>,
    }

    impl ScramClient {
        /// A client with a random nonce.
        pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> Self {
            Self::with_nonce(
                mechanism,
                user,
                password,
                &BASE64.encode(random_bytes(NONCE_BYTES)),
            )
        }

        pub fn with_nonce(
            mechanism: ScramMechanism,
            user: &str,
            password: &str,
            nonce: &str,
        ) -> Self {
            ScramClient {
                mechanism,
                user: user.into(),
                password: password.into(),
                nonce: nonce.into(),
                first_bare: String::new(),
                server_signature: Vec::new(),
            }
        }

        /// client-first.
        pub fn first(&mut self) -> String {
            let name = self.user.replace('=', "=3D").replace(',', "=2C");
            self.first_bare = format!("n={name},r={}", self.nonce);
            format!("n,,{}", self.first_bare)
        }

        /// client-final, from the server's first message.
        pub fn last(&mut self, server_first: &str) -> Result<String, SaslError> {
            self.last_with(server_first, false)
        }

        /// client-final as librdkafka before 2.6.1 wrote it: its nonce once more in front.
        #[cfg(test)]
        pub fn last_as_old_librdkafka(&mut self, server_first: &str) -> Result<String, SaslError> {
            self.last_with(server_first, true)
        }

        fn last_with(
            &mut self,
            server_first: &str,
            repeat_nonce: bool,
        ) -> Result<String, SaslError> {
            let bad = |what: &str| SaslError::Malformed(format!("server-first: {what}"));
            let mut nonce = None;
            let mut salt = None;
            let mut iterations = None;
            for attribute in server_first.split(',') {
                match attribute.split_once('=') {
                    Some(("r", value)) => nonce = Some(value),
                    Some(("s", value)) => salt = BASE64.decode(value).ok(),
                    Some(("i", value)) => iterations = value.parse::<u32>().ok(),
                    _ => {}
                }
            }
            let nonce = nonce
                .filter(|nonce| nonce.starts_with(&self.nonce))
                .ok_or_else(|| bad("the nonce"))?;
            let salt = salt.ok_or_else(|| bad("the salt"))?;
            let iterations = iterations
                .filter(|i| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(i))
                .and_then(NonZeroU32::new)
                .ok_or_else(|| bad("the iterations"))?;
            let salted =
                self.mechanism
                    .salted_password(self.password.as_bytes(), &salt, iterations);
            let credential = ScramCredential::from_salted_password(
                self.mechanism,
                salt,
                iterations.get(),
                &salted,
            );
            let repeated = if repeat_nonce {
                self.nonce.as_str()
            } else {
                ""
            };
            let without_proof = format!("c=biws,r={repeated}{nonce}");
            let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
            let client_key = self.mechanism.hmac_of(&salted, b"Client Key");
            let signature = self
                .mechanism
                .hmac_of(&credential.stored_key, auth_message.as_bytes());
            let proof: Vec<u8> = client_key
                .iter()
                .zip(&signature)
                .map(|(k, s)| k ^ s)
                .collect();
            self.server_signature = self
                .mechanism
                .hmac_of(&credential.server_key, auth_message.as_bytes());
            Ok(format!("{without_proof},p={}", BASE64.encode(proof)))
        }

        /// Whether server-final proves the server knew the credential.
        pub fn verify(&self, server_final: &str) -> bool {
            let expected = format!("v={}", BASE64.encode(&self.server_signature));
            !self.server_signature.is_empty()
                && equal_in_constant_time(server_final.as_bytes(), expected.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client::ScramClient;
    use super::*;

    fn credential(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(
            password.as_bytes(),
            salt,
            NonZeroU32::new(iterations).expect("iterations"),
        );
        ScramCredential::from_salted_password(mechanism, salt.to_vec(), iterations, &salted)
    }

    /// RFC 7677's example: user "user", password "pencil", the server's nonce and salt as
    /// given there; the server's final message must match the RFC's.
    #[test]
    fn rfc_7677_example_gives_the_rfc_server_signature() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let stored = credential(ScramMechanism::Sha256, "pencil", &salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (server_first, user) = server.step(first, |_| Some(stored.clone())).expect("first");
        assert!(user.is_none());
        let server_first = String::from_utf8(server_first).expect("utf-8");
        assert!(server_first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        // Swap in the RFC's server nonce so its proof applies.
        let rfc_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let State::AwaitingClientFinal(pending) = &mut server.state else {
            panic!("awaiting the client's final message");
        };
        pending.server_first = rfc_first.into();
        pending.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        let last = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (server_final, user) = server.step(last, |_| None).expect("final");
        assert_eq!(user.as_deref(), Some("user"));
        assert_eq!(
            String::from_utf8(server_final).expect("utf-8"),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn a_client_with_the_password_gets_in_and_checks_the_server_and_others_do_not() {
        for mechanism in ScramMechanism::ALL {
            let stored = credential(mechanism, "secret", b"salty", 4096);
            let lookup = |user: &str| (user == "alice").then(|| stored.clone());
            let run = |user: &str, password: &str| {
                let mut client = ScramClient::with_nonce(mechanism, user, password, "abc123");
                let mut server = ScramServer::new(mechanism);
                let (first, _) = server.step(client.first().as_bytes(), lookup)?;
                let last = client.last(std::str::from_utf8(&first).expect("utf-8"))?;
                let (server_final, user) = server.step(last.as_bytes(), lookup)?;
                assert!(client.verify(std::str::from_utf8(&server_final).expect("utf-8")));
                Ok::<_, SaslError>(user)
            };
            assert_eq!(
                run("alice", "secret").expect("admitted").as_deref(),
                Some("alice")
            );
            assert!(matches!(
                run("alice", "wrong"),
                Err(SaslError::BadCredentials)
            ));
            assert!(matches!(
                run("bob", "secret"),
                Err(SaslError::BadCredentials)
            ));
            assert!(stored.matches_password(mechanism, b"secret"));
            assert!(!stored.matches_password(mechanism, b"Secret"));
        }
    }

    #[test]
    fn old_librdkafka_s_repeated_nonce_is_accepted_and_nothing_else_is() {
        let stored = credential(ScramMechanism::Sha512, "secret", b"salt", 4096);
        let lookup = |_: &str| Some(stored.clone());
        let mut client = ScramClient::with_nonce(ScramMechanism::Sha512, "a", "secret", "cn");
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        let (first, _) = server
            .step(client.first().as_bytes(), lookup)
            .expect("first");
        let first = String::from_utf8(first).expect("utf-8");
        let last = client.last_as_old_librdkafka(&first).expect("last");
        let (server_final, user) = server.step(last.as_bytes(), lookup).expect("accepted");
        assert_eq!(user.as_deref(), Some("a"));
        assert!(client.verify(std::str::from_utf8(&server_final).expect("utf-8")));
        // Another prefix is not.
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        let (first, _) = server
            .step(client.first().as_bytes(), lookup)
            .expect("first");
        let first = String::from_utf8(first).expect("utf-8");
        let last = client.last(&first).expect("last").replace("r=cn", "r=xxcn");
        assert!(server.step(last.as_bytes(), lookup).is_err());
    }

    #[test]
    fn malformed_and_hostile_messages_are_refused_without_panicking() {
        let stored = credential(ScramMechanism::Sha512, "secret", b"salt", 4096);
        let lookup = |_: &str| Some(stored.clone());
        for first in [
            &b""[..],
            b"n,,",
            b"p=tls-unique,,n=a,r=x",
            b"n,,n=,r=x",
            b"n,,n=a",
            b"n,,n=a=ZZ,r=x",
            b"n,a=b,n=a,r=x",
            b"n,,n=a,r=x,tokenauth=true",
            b"\xff\xfe",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            assert!(server.step(first, lookup).is_err(), "{first:?}");
        }
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        assert!(server.step(&vec![b'n'; 5000], lookup).is_err(), "too long");
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        server
            .step(b"n,,n=a=2Cb,r=x", lookup)
            .expect("escaped name");
        for last in [
            &b"c=biws,r=x"[..],
            b"c=biws,r=wrong,p=AAAA",
            b"c=eSws,r=x,p=AAAA",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            server.step(b"n,,n=a,r=x", lookup).expect("first");
            assert!(server.step(last, lookup).is_err(), "{last:?}");
        }
    }
}
