//! SASL PLAIN (RFC 4616): `authzid NUL user NUL password` in one message, checked against
//! the user's SCRAM credential (SHA-512 if it has one, else SHA-256): one PBKDF2 run per
//! login, a few milliseconds at Kafka's 4096 iterations, once per connection. Send it only
//! over TLS (SASL_SSL): the password crosses the wire as it is.

use super::scram::{ScramCredential, ScramMechanism};
use super::SaslError;

/// A PLAIN message is a user and a password; anything far longer is refused unread.
const MESSAGE_BYTES_MAX: usize = 4096;

/// Checks one PLAIN message; returns the user it authenticates.
pub fn authenticate(
    message: &[u8],
    credential_of: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
) -> Result<String, SaslError> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(SaslError::Malformed("a PLAIN message over 4 KiB".into()));
    }
    let mut parts = message.split(|&byte| byte == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "expected authzid NUL user NUL password".into(),
        ));
    };
    let user = std::str::from_utf8(user)
        .ok()
        .filter(|user| !user.is_empty())
        .ok_or_else(|| SaslError::Malformed("the user is empty or not UTF-8".into()))?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(SaslError::Malformed(
            "an authorization id other than the user".into(),
        ));
    }
    let found = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|mechanism| credential_of(user, mechanism).map(|c| (mechanism, c)));
    match found {
        Some((mechanism, credential)) if credential.matches_password(mechanism, password) => {
            Ok(user.to_string())
        }
        _ => Err(SaslError::BadCredentials),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    #[test]
    fn the_password_of_a_scram_credential_logs_in_and_nothing_else_does() {
        let mechanism = ScramMechanism::Sha256;
        let iterations = NonZeroU32::new(4096).expect("iterations");
        let salted = mechanism.salted_password(b"secret", b"salt", iterations);
        let stored =
            ScramCredential::from_salted_password(mechanism, b"salt".to_vec(), 4096, &salted);
        let lookup = |user: &str, m: ScramMechanism| {
            (user == "alice" && m == mechanism).then(|| stored.clone())
        };
        assert_eq!(authenticate(b"\0alice\0secret", lookup), Ok("alice".into()));
        assert_eq!(
            authenticate(b"alice\0alice\0secret", lookup),
            Ok("alice".into())
        );
        assert_eq!(
            authenticate(b"\0alice\0wrong", lookup),
            Err(SaslError::BadCredentials)
        );
        assert_eq!(
            authenticate(b"\0bob\0secret", lookup),
            Err(SaslError::BadCredentials)
        );
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"x\0alice\0secret",
            b"\0\0secret",
            b"\0a\0b\0c",
        ] {
            assert!(
                matches!(authenticate(bad, lookup), Err(SaslError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(authenticate(&vec![0u8; 5000], lookup).is_err());
    }
}
