//! A node's Raft state on disk: every entry, hard state and snapshot, as records of one
//! storage-engine log (`<data dir>/__internal/cluster-metadata/`), so the journal has the
//! log's torn-tail recovery, CRCs and group fsync.
//!
//! Records are appended only. A later entry at an index already present replaces that
//! entry and every one after it (Raft's truncation of a follower's uncommitted tail); a
//! snapshot replaces every entry it covers. Compaction appends a snapshot followed by the
//! entries after it and the hard state, then deletes the older segments whole.
//!
//! Durability: `append` returns once the records are fsynced (`Log::wait_durable`), and
//! the node tells raft-rs an entry is persisted, or sends a vote or an append
//! acknowledgement, only after that.

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;

use super::codec::{self, JournalRecord};
use super::core::JournalWrite;
use super::store::StoreCore;
use crate::storage::{Log, LogConfig, ShardStorage, StorageError};

/// Bytes of records per appended batch (a snapshot record may exceed it alone).
const BATCH_BYTES_TARGET: usize = 1 << 20;
/// The largest journal batch: a snapshot of a catalogue with ~100,000 partitions fits.
const BATCH_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("journal record at offset {offset} is damaged: {reason}")]
    Damaged { offset: i64, reason: String },
    #[error("journal record of {0} bytes exceeds the {BATCH_BYTES_MAX}-byte batch limit")]
    TooLarge(usize),
}

pub struct Journal {
    log: Rc<Log>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and replays it.
    pub async fn open(
        storage: Rc<ShardStorage>,
        dir: PathBuf,
    ) -> Result<(Journal, StoreCore), JournalError> {
        let config = LogConfig {
            segment_bytes_max: 64 << 20,
            retention_age_max: None,
            batch_bytes_max: BATCH_BYTES_MAX,
            ..LogConfig::default()
        };
        let log = Log::open(storage, dir, "cluster-metadata".into(), config).await?;
        let mut core = StoreCore::default();
        let limits = log.config().record_limits();
        let mut offset = log.log_start_offset();
        while offset < log.next_offset() {
            let read = log.read(offset, 1 << 20, i64::MAX, true).await?;
            if read.batches.is_empty() {
                break;
            }
            for batch in read.batches {
                let mut values = Vec::new();
                let damaged = |error: crate::record_batch::BatchError| JournalError::Damaged {
                    offset,
                    reason: error.to_string(),
                };
                let view = crate::record_batch::verify(&batch, batch.len()).map_err(damaged)?;
                crate::record_batch::for_each_record(&view, limits, |record| {
                    values.push(Bytes::copy_from_slice(record.value.unwrap_or_default()));
                    std::ops::ControlFlow::Continue(())
                })
                .map_err(damaged)?;
                for value in values {
                    let record =
                        codec::decode_record(value).map_err(|error| JournalError::Damaged {
                            offset,
                            reason: error.to_string(),
                        })?;
                    core.replay(record);
                }
            }
            offset = read.next_offset;
        }
        core.finish_replay();
        Ok((Journal { log }, core))
    }

    /// Makes `write` durable: returns once its records are fsynced. A compaction starts
    /// a new segment with the snapshot, and deletes every older segment once it is durable.
    pub async fn write(&self, write: JournalWrite) -> Result<(), JournalError> {
        match write {
            JournalWrite::Append(records) => self.write_records(records).await,
            JournalWrite::Compact(records) => {
                self.log.roll_segment().await?;
                let start = self.log.next_offset();
                self.write_records(records).await?;
                self.log.delete_before(start).await?;
                Ok(())
            }
        }
    }

    async fn write_records(&self, records: Vec<JournalRecord>) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let encoded: Vec<Bytes> = records.iter().map(codec::encode_record).collect();
        let mut last_end = self.log.next_offset();
        let mut start = 0;
        while start < encoded.len() {
            let mut end = start + 1;
            let mut bytes = encoded[start].len();
            while end < encoded.len() && bytes + encoded[end].len() <= BATCH_BYTES_TARGET {
                bytes += encoded[end].len();
                end += 1;
            }
            // Record overhead is small; leave room for it below the batch limit.
            if bytes + 64 * (end - start) + 128 > BATCH_BYTES_MAX {
                return Err(JournalError::TooLarge(bytes));
            }
            let refs: Vec<&[u8]> = encoded[start..end].iter().map(|b| &b[..]).collect();
            let batch = crate::record_batch::build_batch(&refs, crate::runtime::time::now_ms());
            let appended = self.log.append(Bytes::from(batch), 0).await?;
            last_end = appended.last_offset + 1;
            start = end;
        }
        self.log.wait_durable(last_end).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Err(error) = self.log.close().await {
            tracing::warn!(%error, "closing the metadata journal failed");
        }
    }
}
