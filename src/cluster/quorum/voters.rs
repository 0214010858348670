//! The quorum's settings: `--controller-quorum-voters` (Kafka's `id@host:port,...`),
//! `--controller-listen`, and the broker heartbeat timing.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Voters per quorum: Raft needs a majority, and every voter holds the whole metadata log.
pub const VOTERS_MAX: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// Every voter's id and quorum address.
    pub voters: BTreeMap<u64, SocketAddr>,
    /// Where this node's quorum listener binds (unused on a broker-only node).
    pub listen: SocketAddr,
    /// How often a broker heartbeats to the quorum's leader (`broker.heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// A broker not heard from for this long is fenced (`broker.session.timeout.ms`).
    pub session_timeout: Duration,
}

/// Parses `1@host:port,2@host:port,...`; host names are resolved once, here.
pub fn parse_voters(text: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    let mut voters = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| format!("'{entry}' is not id@host:port"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| (1..=i32::MAX as u64).contains(id))
            .ok_or_else(|| format!("'{id}' in '{entry}' is not a node id in 1..={}", i32::MAX))?;
        let address = address
            .to_socket_addrs()
            .map_err(|error| format!("'{address}' in '{entry}': {error}"))?
            .next()
            .ok_or_else(|| format!("'{address}' in '{entry}' resolves to no address"))?;
        if voters.insert(id, address).is_some() {
            return Err(format!("node id {id} is named twice"));
        }
    }
    if voters.is_empty() {
        return Err("names no voter".into());
    }
    if voters.len() > VOTERS_MAX {
        return Err(format!(
            "names {} voters; at most {VOTERS_MAX}",
            voters.len()
        ));
    }
    let mut addresses: Vec<SocketAddr> = voters.values().copied().collect();
    addresses.sort_unstable();
    addresses.dedup();
    if addresses.len() != voters.len() {
        return Err("two voters share an address".into());
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_are_parsed_and_bad_specs_named() {
        let voters = parse_voters("1@127.0.0.1:9093, 2@127.0.0.2:9093,3@localhost:9095").unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&2], "127.0.0.2:9093".parse().unwrap());
        for (bad, says) in [
            ("", "no voter"),
            ("1@127.0.0.1:1,1@127.0.0.1:2", "named twice"),
            ("0@127.0.0.1:1", "not a node id"),
            ("x@127.0.0.1:1", "not a node id"),
            ("1:127.0.0.1:1", "not id@host:port"),
            ("1@127.0.0.1", "127.0.0.1"),
            ("1@127.0.0.1:1,2@127.0.0.1:1", "share an address"),
        ] {
            let error = parse_voters(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
