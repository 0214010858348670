//! TLS for the stream seam ([`super::net`]): a listener's server configuration, built at
//! start from PEM files (read on the main thread, before any shard runs), with rustls and
//! its `ring` provider (no OpenSSL). [`super::net::Stream::accept_tls`] runs the handshake.
//!
//! Certificates are replaced without a restart: on SIGHUP the main thread reads the files
//! again ([`Reloadable::reload`]) and swaps the configuration in; a handshake takes the
//! current one with a lock-free load, so no shard waits on a reload. Connections already
//! open keep their session; a reload that fails keeps the configuration in use.
//!
//! Client certificates (mTLS), as Kafka's `ssl.client.auth`: `none` asks for none,
//! `requested` verifies one if the client sends it, `required` refuses a client without a
//! certificate signed by the truststore's CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// A listener's TLS configuration, shared by every shard.
pub type ServerTls = Reloadable<rustls::ServerConfig>;
/// A node's configuration for its links to other nodes (quorum links, replica fetches).
pub type ClientTls = Reloadable<rustls::ClientConfig>;

/// A TLS configuration built from files, replaced as a whole when they are read again.
/// Clones share it.
#[derive(Clone)]
pub struct Reloadable<T> {
    files: TlsFiles,
    build: fn(&TlsFiles) -> Result<Arc<T>, TlsError>,
    current: Arc<ArcSwap<T>>,
}

impl<T> Reloadable<T> {
    fn new(
        files: &TlsFiles,
        build: fn(&TlsFiles) -> Result<Arc<T>, TlsError>,
    ) -> Result<Reloadable<T>, TlsError> {
        Ok(Reloadable {
            files: files.clone(),
            build,
            current: Arc::new(ArcSwap::new(build(files)?)),
        })
    }

    /// The configuration a new handshake uses.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Reads the files again and, if they make a configuration, uses it from the next
    /// handshake on. Blocking file reads: the main thread's, never a shard's.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store((self.build)(&self.files)?);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether `other` is this configuration (a clone of it), not just an equal one.
    pub fn same(&self, other: &Reloadable<T>) -> bool {
        Arc::ptr_eq(&self.current, &other.current)
    }
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Reloadable")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// Any of a broker's TLS configurations, for the main thread's reload.
#[derive(Debug, Clone)]
pub enum AnyTls {
    Server(ServerTls),
    Client(ClientTls),
}

impl AnyTls {
    pub fn reload(&self) -> Result<(), TlsError> {
        match self {
            AnyTls::Server(tls) => tls.reload(),
            AnyTls::Client(tls) => tls.reload(),
        }
    }

    pub fn files(&self) -> &TlsFiles {
        match self {
            AnyTls::Server(tls) => tls.files(),
            AnyTls::Client(tls) => tls.files(),
        }
    }

    fn same(&self, other: &AnyTls) -> bool {
        match (self, other) {
            (AnyTls::Server(a), AnyTls::Server(b)) => a.same(b),
            (AnyTls::Client(a), AnyTls::Client(b)) => a.same(b),
            _ => false,
        }
    }
}

/// `configs` without repeats (listeners share one configuration).
pub fn distinct(configs: impl IntoIterator<Item = AnyTls>) -> Vec<AnyTls> {
    let mut distinct: Vec<AnyTls> = Vec::new();
    for config in configs {
        if !distinct.iter().any(|seen| seen.same(&config)) {
            distinct.push(config);
        }
    }
    distinct
}

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<ClientAuth, String> {
        match text {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err("expected none, requested or required".into()),
        }
    }
}

/// Where a listener's certificate, key and trusted CAs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then its chain.
    pub certificate: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs client certificates must be signed by (needed unless `client_auth` is
    /// `none`).
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("client certificates are {0:?} but no truststore is given")]
    NoTruststore(ClientAuth),
    #[error("the truststore's CAs cannot verify clients: {0}")]
    Verifier(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the files and builds the server configuration: TLS 1.3 and 1.2, as Kafka's default
/// `ssl.enabled.protocols`.
pub fn server_config(files: &TlsFiles) -> Result<ServerTls, TlsError> {
    Reloadable::new(files, build_server_config)
}

fn build_server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(provider());
    let chain = certificates(&files.certificate)?;
    let key = private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (files.client_auth, &files.truststore) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (auth, None) => return Err(TlsError::NoTruststore(auth)),
        (auth, Some(truststore)) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(truststore)? {
                roots.add(certificate)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|error| TlsError::Verifier(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

/// A node's client side: it trusts only the truststore's CAs (the cluster's) and presents
/// its own certificate, so a node it connects to can tell it is a node (mTLS). TLS 1.3 and
/// 1.2.
pub fn client_config(files: &TlsFiles) -> Result<ClientTls, TlsError> {
    Reloadable::new(files, build_client_config)
}

fn build_client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let Some(truststore) = &files.truststore else {
        return Err(TlsError::NoTruststore(ClientAuth::Required));
    };
    let mut roots = RootCertStore::empty();
    for certificate in certificates(truststore)? {
        roots.add(certificate)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certificates(&files.certificate)?, private_key(&files.key)?)?;
    Ok(Arc::new(config))
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// rustls's `ring` provider. rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange (which Kafka's clients do not offer either); its alternative, aws-lc-rs, is a
/// large C and cmake build on every CI run. Revisit when clients negotiate ML-KEM.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |error: rustls::pki_types::pem::Error| TlsError::Read {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}
