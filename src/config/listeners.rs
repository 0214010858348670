//! The client listeners, Kafka-style: `--listeners PLAINTEXT://:9092,SSL://:9093`, each
//! with its security protocol (its name, or `--listener-security-protocol-map`), its
//! advertised address (`--advertised-listeners`), and the TLS files an SSL listener uses.
//! `--listen`/`--advertised-listener` stay as the one-PLAINTEXT-listener short form.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::args::ServeArgs;
use super::error::{invalid, ConfigError};
use crate::runtime::tls::{self, ClientAuth, ServerTls, TlsFiles};

/// How a listener's connections are secured (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    /// TLS: encrypted, and with `ssl-client-auth` the client proves who it is.
    Ssl,
    /// SASL (PLAIN, SCRAM) in the clear: the user proves who they are.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(text: &str) -> Result<SecurityProtocol, String> {
        match text {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "{text} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) \
                 nor mapped to one by listener-security-protocol-map"
            )),
        }
    }

    /// Whether its connections run TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether its clients authenticate with SASL first.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One client listener: every shard accepts on it.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Its name, as clients' bootstrap lists and other brokers' registrations know it.
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Port 0 until the broker reserved a port (`broker::start`), then the real one.
    pub bind: SocketAddr,
    /// (host, port) Metadata gives clients that came in on this listener; port 0 means
    /// "the port actually bound".
    pub advertised: (String, u16),
    /// The TLS configuration of an SSL or SASL_SSL listener.
    pub tls: Option<ServerTls>,
}

/// The listeners, the inter-broker one first among equals.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub all: Vec<ListenerConfig>,
    /// Index in `all` of the listener other brokers fetch through
    /// (`--inter-broker-listener-name`).
    pub inter_broker: usize,
}

impl ServeArgs {
    pub(super) fn listeners(&self, cluster: bool) -> Result<Listeners, ConfigError> {
        let short_form = self.listen.is_some() || self.advertised_listener.is_some();
        let long_form = self.listeners.is_some() || self.advertised_listeners.is_some();
        if short_form && long_form {
            return Err(invalid(
                "listeners",
                self.listeners.as_deref().unwrap_or("-"),
                "give either listen/advertised-listener or listeners/advertised-listeners",
            ));
        }
        let mut all = match &self.listeners {
            Some(text) => self.parse_listeners(text)?,
            None => vec![self.short_form_listener()?],
        };
        if let Some(text) = &self.advertised_listeners {
            for (name, host, port) in parse_list("advertised-listeners", text)? {
                let listener = all.iter_mut().find(|l| l.name == name).ok_or_else(|| {
                    invalid("advertised-listeners", text, format!("no listener {name}"))
                })?;
                if host.is_empty() {
                    return Err(invalid("advertised-listeners", text, "a host is needed"));
                }
                listener.advertised = (host, port);
            }
        }
        let inter_broker = match &self.inter_broker_listener_name {
            None => 0,
            Some(name) => all.iter().position(|l| &l.name == name).ok_or_else(|| {
                invalid(
                    "inter-broker-listener-name",
                    name,
                    "no listener has this name",
                )
            })?,
        };
        if cluster && all[inter_broker].protocol.sasl() {
            return Err(invalid(
                "inter-broker-listener-name",
                &all[inter_broker].name,
                "replica fetches between brokers run on PLAINTEXT or SSL (mTLS) for now; name \
                 such a listener",
            ));
        }
        if cluster && all[inter_broker].protocol.tls() {
            // The follower's side of an SSL inter-broker listener (`resolve`) needs it.
            self.node_tls_files("inter-broker-listener-name")?;
        }
        self.secure(&mut all)?;
        Ok(Listeners { all, inter_broker })
    }

    fn short_form_listener(&self) -> Result<ListenerConfig, ConfigError> {
        let listen_text = self
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let bind: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                &listen_text,
                "expected ip:port, e.g. 127.0.0.1:9092",
            )
        })?;
        let advertised = match &self.advertised_listener {
            Some(text) => parse_host_port(text)
                .ok_or_else(|| invalid("advertised-listener", text, "expected host:port"))?,
            None => (bind.ip().to_string(), bind.port()),
        };
        Ok(ListenerConfig {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            bind,
            advertised,
            tls: None,
        })
    }

    fn parse_listeners(&self, text: &str) -> Result<Vec<ListenerConfig>, ConfigError> {
        let map = match &self.listener_security_protocol_map {
            Some(map) => parse_protocol_map(map)?,
            None => Vec::new(),
        };
        let mut all: Vec<ListenerConfig> = Vec::new();
        for (name, host, port) in parse_list("listeners", text)? {
            let protocol_name = map
                .iter()
                .find(|(listener, _)| *listener == name)
                .map_or(name.as_str(), |(_, protocol)| protocol.as_str());
            let protocol = SecurityProtocol::parse(protocol_name)
                .map_err(|reason| invalid("listeners", text, reason))?;
            let bind =
                bind_address(&host, port).map_err(|reason| invalid("listeners", text, reason))?;
            if all.iter().any(|l| l.name == name) {
                return Err(invalid("listeners", text, format!("{name} is given twice")));
            }
            if port != 0 && all.iter().any(|l| l.bind.port() == port) {
                return Err(invalid(
                    "listeners",
                    text,
                    format!("port {port} is given twice"),
                ));
            }
            all.push(ListenerConfig {
                name,
                protocol,
                bind,
                advertised: (bind.ip().to_string(), bind.port()),
                tls: None,
            });
        }
        if all.is_empty() {
            return Err(invalid(
                "listeners",
                text,
                "at least one listener is needed",
            ));
        }
        Ok(all)
    }

    /// Whether quorum links run mTLS (`--controller-security-protocol SSL`).
    pub(super) fn controller_ssl(&self) -> Result<bool, ConfigError> {
        match self.controller_security_protocol.as_deref() {
            None | Some("PLAINTEXT") => Ok(false),
            Some("SSL") => Ok(true),
            Some(other) => Err(invalid(
                "controller-security-protocol",
                other,
                "expected PLAINTEXT or SSL",
            )),
        }
    }

    /// The files a node's own links use (quorum links, replica fetches over SSL): its
    /// certificate and key, and the cluster's CAs, which must be given.
    pub(super) fn node_tls_files(&self, setting: &'static str) -> Result<TlsFiles, ConfigError> {
        let needed = |name: &'static str, value: &Option<PathBuf>| {
            value.clone().ok_or_else(|| {
                invalid(
                    setting,
                    "SSL",
                    format!("links between nodes over TLS need --{name} (a PEM file)"),
                )
            })
        };
        Ok(TlsFiles {
            certificate: needed("ssl-certificate-location", &self.ssl_certificate_location)?,
            key: needed("ssl-key-location", &self.ssl_key_location)?,
            truststore: Some(needed(
                "ssl-truststore-location",
                &self.ssl_truststore_location,
            )?),
            client_auth: ClientAuth::Required,
        })
    }

    /// Builds the TLS configuration SSL listeners share, from the ssl-* settings.
    fn secure(&self, all: &mut [ListenerConfig]) -> Result<(), ConfigError> {
        let tls_listener = all.iter().any(|l| l.protocol.tls());
        let wanted = tls_listener || self.controller_ssl()?;
        let given = self.ssl_certificate_location.is_some()
            || self.ssl_key_location.is_some()
            || self.ssl_truststore_location.is_some()
            || self.ssl_client_auth.is_some();
        if !wanted {
            if given {
                return Err(invalid(
                    "ssl-certificate-location",
                    "-",
                    "ssl-* settings are given but no listener (nor the controller links) is SSL",
                ));
            }
            return Ok(());
        }
        if !tls_listener {
            return Ok(()); // only the quorum links: `resolve::quorum_security` builds theirs
        }
        let required = |name: &'static str, value: &Option<PathBuf>| {
            value
                .clone()
                .ok_or_else(|| invalid(name, "-", "a TLS listener needs it (a PEM file)"))
        };
        let client_auth = match &self.ssl_client_auth {
            None => ClientAuth::None,
            Some(text) => text
                .parse()
                .map_err(|reason: String| invalid("ssl-client-auth", text, reason))?,
        };
        let files = TlsFiles {
            certificate: required("ssl-certificate-location", &self.ssl_certificate_location)?,
            key: required("ssl-key-location", &self.ssl_key_location)?,
            truststore: self.ssl_truststore_location.clone(),
            client_auth,
        };
        let config = tls::server_config(&files).map_err(|error| {
            invalid(
                "ssl-certificate-location",
                files.certificate.display(),
                error.to_string(),
            )
        })?;
        for listener in all.iter_mut().filter(|l| l.protocol.tls()) {
            listener.tls = Some(config.clone());
        }
        Ok(())
    }
}

/// `NAME://host:port,...` as (name, host, port); an empty host is kept empty.
fn parse_list(
    setting: &'static str,
    text: &str,
) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |reason: &str| invalid(setting, entry, reason.to_string());
        let (name, address) = entry
            .split_once("://")
            .ok_or_else(|| bad("expected NAME://host:port, e.g. PLAINTEXT://127.0.0.1:9092"))?;
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(bad("a listener name is letters, digits, _ and -"));
        }
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("expected NAME://host:port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        entries.push((name.to_uppercase(), host.to_string(), port));
    }
    Ok(entries)
}

/// `NAME:PROTOCOL,...`.
fn parse_protocol_map(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                invalid(
                    "listener-security-protocol-map",
                    entry,
                    "expected NAME:PROTOCOL, e.g. CLIENT:SSL",
                )
            })?;
            Ok((name.trim().to_uppercase(), protocol.trim().to_uppercase()))
        })
        .collect()
}

/// An empty host binds every address; a name is resolved now, once, at start (on the main
/// thread, before any shard runs).
fn bind_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("{host}: {error}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// `host:port` (an IPv6 host may be in brackets).
fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}
