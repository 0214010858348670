//! The catalogue a node applies committed metadata records to: the metadata quorum's
//! state machine on a voter, a copy of a voter's on a broker-only node. Shared between the
//! quorum (which applies) and the node's tasks (which read it and wait for changes).

use std::cell::{Ref, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use event_listener::Event;

use crate::cluster::metadata::ClusterMetadata;
use crate::cluster::quorum::core::StateMachine;
use crate::cluster::records::{self, MetadataRecord};

#[derive(Clone)]
pub struct Catalogue {
    image: Rc<RefCell<ClusterMetadata>>,
    /// Fired after every change.
    changed: Rc<Event>,
}

impl Catalogue {
    /// An empty catalogue of cluster `cluster_id`.
    pub fn new(cluster_id: String) -> Catalogue {
        let mut empty = ClusterMetadata::new();
        empty.cluster_id = cluster_id;
        Catalogue {
            image: Rc::new(RefCell::new(empty)),
            changed: Rc::new(Event::new()),
        }
    }

    /// The catalogue as applied (never held across an await).
    pub fn image(&self) -> Ref<'_, ClusterMetadata> {
        self.image.borrow()
    }

    /// A copy of the catalogue as applied, to publish to the shards.
    pub fn copy(&self) -> Arc<ClusterMetadata> {
        Arc::new(self.image.borrow().clone())
    }

    pub fn changed(&self) -> &Event {
        &self.changed
    }

    /// Takes `catalogue` whole (a broker-only node's copy of a voter's), keeping this
    /// node's cluster id.
    pub fn replace(&self, mut catalogue: ClusterMetadata) {
        let mut image = self.image.borrow_mut();
        catalogue.cluster_id = image.cluster_id.clone();
        *image = catalogue;
        drop(image);
        self.changed.notify(usize::MAX);
    }
}

impl StateMachine for Catalogue {
    fn apply(&self, index: u64, data: &[u8]) {
        match records::decode_entry(data) {
            Ok(list) => {
                let mut image = self.image.borrow_mut();
                for record in list {
                    records::apply(&mut image, index, record);
                }
            }
            Err(error) => tracing::error!(index, %error, "undecodable metadata entry skipped"),
        }
        self.changed.notify(usize::MAX);
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.image.borrow().encode())
    }

    fn restore(&self, index: u64, data: &[u8]) {
        match ClusterMetadata::decode(data) {
            Ok(restored) => self.replace(restored),
            Err(error) => tracing::error!(index, %error, "undecodable metadata snapshot"),
        }
        self.changed.notify(usize::MAX);
    }
}

/// A broker-only node's stored copy of the last catalogue it applied (so a restart opens
/// the replicas it holds, as a voter's journal replay does): `<index>\n<catalogue JSON>`.
pub fn encode_stored(index: u64, catalogue: &ClusterMetadata) -> Vec<u8> {
    let mut bytes = format!("{index}\n").into_bytes();
    bytes.extend_from_slice(&catalogue.encode());
    bytes
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredCatalogueError {
    #[error("the stored catalogue has no index line")]
    NoIndex,
    #[error("the stored catalogue's index line is not a number")]
    BadIndex,
    #[error("the stored catalogue is damaged: {0}")]
    Damaged(String),
}

/// The index and catalogue of a stored copy (`encode_stored`).
pub fn decode_stored(bytes: &[u8]) -> Result<(u64, ClusterMetadata), StoredCatalogueError> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(StoredCatalogueError::NoIndex)?;
    let index = std::str::from_utf8(&bytes[..newline])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or(StoredCatalogueError::BadIndex)?;
    let catalogue = ClusterMetadata::decode(&bytes[newline + 1..])
        .map_err(|error| StoredCatalogueError::Damaged(error.to_string()))?;
    Ok((index, catalogue))
}

/// The records of one metadata entry, as the quorum replicates them.
pub fn encode_entry(list: &[MetadataRecord]) -> Bytes {
    Bytes::from(records::encode_entry(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_copy_reads_back_and_damage_is_named() {
        let mut catalogue = ClusterMetadata::new();
        catalogue.producer_id_block_end = 3000;
        let stored = encode_stored(42, &catalogue);
        assert_eq!(decode_stored(&stored), Ok((42, catalogue)));
        assert_eq!(decode_stored(b"42"), Err(StoredCatalogueError::NoIndex));
        assert_eq!(decode_stored(b"x\n{}"), Err(StoredCatalogueError::BadIndex));
        assert!(matches!(
            decode_stored(b"1\n{"),
            Err(StoredCatalogueError::Damaged(_))
        ));
    }

    #[test]
    fn applied_entries_change_the_image_and_a_restore_keeps_the_cluster_id() {
        let catalogue = Catalogue::new("mine".into());
        let entry = encode_entry(&[MetadataRecord::ProducerIdBlock { end: 1000 }]);
        catalogue.apply(3, &entry);
        assert_eq!(catalogue.image().producer_id_block_end, 1000);
        catalogue.apply(4, b"not json");
        assert_eq!(catalogue.image().producer_id_block_end, 1000, "skipped");
        let mut other = ClusterMetadata::new();
        other.cluster_id = "theirs".into();
        other.producer_id_block_end = 5000;
        catalogue.restore(9, &other.encode());
        assert_eq!(catalogue.image().cluster_id, "mine");
        assert_eq!(catalogue.image().producer_id_block_end, 5000);
    }
}
