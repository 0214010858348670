//! Which cluster a data directory belongs to, and as which node: `<data dir>/meta.properties`
//! (Kafka's name and format), written by `petrel format` before a node's first start.
//! Main thread only (`std::fs`, before any shard exists).

use std::path::Path;

use super::error::StartError;
use crate::cluster::metadata;
use crate::config::BrokerConfig;

pub use super::files::META_FILE;
/// Cluster ids are short printable tokens (Kafka's are 22-character base64 UUIDs).
const CLUSTER_ID_BYTES_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub cluster_id: String,
    pub node_id: i32,
}

fn encode(identity: &NodeIdentity) -> String {
    format!(
        "# Written by petrel format: this data directory belongs to this cluster and node.\n\
         version=1\ncluster.id={}\nnode.id={}\n",
        identity.cluster_id, identity.node_id
    )
}

fn decode(text: &str) -> Result<NodeIdentity, String> {
    let mut cluster_id = None;
    let mut node_id = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some(("cluster.id", value)) => cluster_id = Some(value.to_string()),
            Some(("node.id", value)) => {
                node_id = Some(
                    value
                        .parse::<i32>()
                        .map_err(|_| format!("node.id={value}"))?,
                )
            }
            Some(("version", "1")) => {}
            _ => return Err(format!("unexpected line '{line}'")),
        }
    }
    match (cluster_id, node_id) {
        (Some(cluster_id), Some(node_id)) => Ok(NodeIdentity {
            cluster_id,
            node_id,
        }),
        _ => Err("cluster.id or node.id missing".into()),
    }
}

pub fn validate_cluster_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= CLUSTER_ID_BYTES_MAX
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "cluster id '{id}' must be 1 to {CLUSTER_ID_BYTES_MAX} of [A-Za-z0-9_-]"
        ))
    }
}

fn read(dir: &Path) -> Result<Option<NodeIdentity>, StartError> {
    let path = dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text).map(Some).map_err(|reason| {
            StartError::Identity(format!("{} is damaged: {reason}", path.display()))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::DataDir { path, source }),
    }
}

/// `petrel format`: makes `dir` a data directory of node `node_id` of cluster `cluster_id`.
/// Formatting again with the same values changes nothing; other values are refused.
pub fn format(dir: &Path, cluster_id: &str, node_id: i32) -> Result<bool, StartError> {
    validate_cluster_id(cluster_id).map_err(StartError::Identity)?;
    if node_id < 1 {
        return Err(StartError::Identity(format!(
            "node id {node_id}: a cluster's node ids start at 1"
        )));
    }
    let wanted = NodeIdentity {
        cluster_id: cluster_id.to_string(),
        node_id,
    };
    super::files::create_data_dir(dir)?;
    match read(dir)? {
        Some(found) if found == wanted => return Ok(false),
        Some(found) => {
            return Err(StartError::Identity(format!(
                "{} is already formatted as node {} of cluster {}",
                dir.display(),
                found.node_id,
                found.cluster_id
            )))
        }
        None => {}
    }
    if dir.join(metadata::FILE_NAME).exists() {
        return Err(StartError::Identity(format!(
            "{} holds a single broker's data ({}); a cluster node needs a directory of its own",
            dir.display(),
            metadata::FILE_NAME
        )));
    }
    let path = dir.join(META_FILE);
    super::files::write_file_blocking(&path, encode(&wanted).as_bytes())
        .map_err(|source| StartError::DataDir { path, source })?;
    Ok(true)
}

/// At start: a cluster node's data directory must be formatted for it; a single broker's
/// must not belong to a cluster.
pub fn check(config: &BrokerConfig) -> Result<Option<NodeIdentity>, StartError> {
    let found = read(&config.data_dir)?;
    let dir = config.data_dir.display();
    match (&config.quorum, found) {
        (Some(_), None) => Err(StartError::Identity(format!(
            "{dir} is not formatted for a cluster: run `petrel format --data-dir {dir} \
             --cluster-id <id> --node-id {}` first (the same cluster id on every node)",
            config.node_id
        ))),
        (Some(_), Some(identity)) if identity.node_id != config.node_id => {
            Err(StartError::Identity(format!(
                "{dir} belongs to node {} of cluster {}, not to --node-id {}",
                identity.node_id, identity.cluster_id, config.node_id
            )))
        }
        (Some(_), Some(identity)) => Ok(Some(identity)),
        (None, Some(identity)) => Err(StartError::Identity(format!(
            "{dir} belongs to node {} of cluster {}: start it with --node-id {} and that \
             cluster's --controller-quorum-voters",
            identity.node_id, identity.cluster_id, identity.node_id
        ))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_damage_is_named() {
        let identity = NodeIdentity {
            cluster_id: "abc-1".into(),
            node_id: 3,
        };
        assert_eq!(decode(&encode(&identity)), Ok(identity));
        assert!(decode("cluster.id=x\n").is_err());
        assert!(decode("cluster.id=x\nnode.id=one\n").is_err());
        assert!(decode("what=ever\n").is_err());
        assert!(validate_cluster_id("").is_err());
        assert!(validate_cluster_id("a b").is_err());
        assert!(validate_cluster_id(&"x".repeat(65)).is_err());
    }
}
