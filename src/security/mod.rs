//! Who a client is and what it may do, without I/O: SASL mechanisms (PLAIN,
//! SCRAM-SHA-256/512) and the credentials they check (`server::authentication` runs them
//! on a connection), principals (`principal`: SASL users, client certificates) and ACLs
//! (`acl`). Credentials and ACL bindings live in the catalogue
//! (`ClusterMetadata::scram_credentials`, `::acls`), so every broker checks the same.

pub mod acl;
pub mod plain;
pub mod principal;
pub mod quota;
pub mod scram;

/// Why an authentication failed. Kafka answers both with SASL_AUTHENTICATION_FAILED and
/// closes the connection; the message tells a malformed exchange from a wrong password,
/// never whether the user exists.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaslError {
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    #[error("authentication failed: invalid credentials")]
    BadCredentials,
    #[error("cannot change principals during re-authentication, from {0:?} to {1:?}")]
    PrincipalChanged(String, String),
}

/// The SASL mechanisms a SASL listener offers, in the order it lists them.
pub const MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];
