//! The per-partition checkpoint file: where the log starts and where recovery must begin.
//! Petrel's own format (not Kafka's): a fixed 32-byte record protected by CRC-32 (IEEE).
//!
//! ```text
//! magic "PTRLCKP1" | log_start_offset i64 BE | recovery_point i64 BE | crc32 u32 BE | 4 zero bytes
//! ```
//! `recovery_point` is the base offset of the first segment that must be scanned on open:
//! every segment below it was synced and had its index files written when it was sealed.

pub const FILE_NAME: &str = "partition.checkpoint";
const MAGIC: &[u8; 8] = b"PTRLCKP1";
pub const ENCODED_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub log_start_offset: i64,
    pub recovery_point: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is {0} bytes, expected {ENCODED_BYTES}")]
    Length(usize),
    #[error("checkpoint has a bad magic or checksum")]
    Damaged,
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; ENCODED_BYTES] {
        let mut out = [0u8; ENCODED_BYTES];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.log_start_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.recovery_point.to_be_bytes());
        let crc = crc32fast::hash(&out[..24]);
        out[24..28].copy_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let bytes: &[u8; ENCODED_BYTES] = bytes
            .try_into()
            .map_err(|_| CheckpointError::Length(bytes.len()))?;
        let crc = u32::from_be_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
        if &bytes[..8] != MAGIC || crc != crc32fast::hash(&bytes[..24]) {
            return Err(CheckpointError::Damaged);
        }
        let field = |at: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(raw)
        };
        Ok(Checkpoint {
            log_start_offset: field(8),
            recovery_point: field(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let checkpoint = Checkpoint {
            log_start_offset: 1_000,
            recovery_point: 5_000_000_000,
        };
        let encoded = checkpoint.encode();
        assert_eq!(Checkpoint::decode(&encoded), Ok(checkpoint));
        for byte in 0..28 {
            let mut damaged = encoded;
            damaged[byte] ^= 0x01;
            assert_eq!(
                Checkpoint::decode(&damaged),
                Err(CheckpointError::Damaged),
                "byte {byte}"
            );
        }
        assert_eq!(
            Checkpoint::decode(&encoded[..31]),
            Err(CheckpointError::Length(31))
        );
    }
}
