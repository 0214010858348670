//! A cluster node's quorum settings (`--controller-quorum-voters` and friends), checked
//! against this node's id.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::{invalid, ConfigError};
use crate::cluster::quorum::voters::{parse_voters, QuorumConfig};

/// The quorum settings, checked against this node's id.
pub(super) fn resolve_quorum(
    voters: &Option<String>,
    listen: &Option<String>,
    node_id: i32,
    heartbeat_interval_ms: Option<u64>,
    session_timeout_ms: Option<u64>,
) -> Result<Option<QuorumConfig>, ConfigError> {
    let Some(text) = voters else {
        if let Some(listen) = listen {
            return Err(invalid(
                "controller-listen",
                listen,
                "needs --controller-quorum-voters",
            ));
        }
        return Ok(None);
    };
    let voters =
        parse_voters(text).map_err(|reason| invalid("controller-quorum-voters", text, reason))?;
    let heartbeat_interval = heartbeat_interval_ms.unwrap_or(2_000);
    let session_timeout = session_timeout_ms.unwrap_or(9_000);
    if heartbeat_interval == 0 || session_timeout <= heartbeat_interval {
        return Err(invalid(
            "broker-session-timeout-ms",
            session_timeout,
            format!("must be larger than broker-heartbeat-interval-ms ({heartbeat_interval}), which must be positive"),
        ));
    }
    let own = u64::try_from(node_id)
        .ok()
        .and_then(|id| voters.get(&id).copied());
    let Some(own) = own else {
        // A broker only (KRaft's `process.roles=broker`): it follows the voters' catalogue
        // and has no quorum listener.
        if let Some(listen) = listen {
            return Err(invalid(
                "controller-listen",
                listen,
                format!(
                    "only voters listen for the quorum, and --controller-quorum-voters does not \
                     name this node (--node-id {node_id}): it joins as a broker only"
                ),
            ));
        }
        return Ok(Some(QuorumConfig {
            voters,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            heartbeat_interval: Duration::from_millis(heartbeat_interval),
            session_timeout: Duration::from_millis(session_timeout),
        }));
    };
    let listen = match listen {
        Some(text) => {
            let address: SocketAddr = text
                .parse()
                .map_err(|_| invalid("controller-listen", text, "expected ip:port"))?;
            if address.port() != own.port() {
                return Err(invalid(
                    "controller-listen",
                    text,
                    format!("its port must be this node's port in the voters ({own})"),
                ));
            }
            address
        }
        None => own,
    };
    Ok(Some(QuorumConfig {
        voters,
        listen,
        heartbeat_interval: Duration::from_millis(heartbeat_interval),
        session_timeout: Duration::from_millis(session_timeout),
    }))
}
