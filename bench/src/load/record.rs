//! What a load record looks like on the wire.
//!
//! Value layout (little-endian):
//! - bytes 0..8: intended send time, ns since the process-wide epoch (`clock::now_ns`);
//! - bytes 8..16: this run's id, so a consumer reading a reused topic from `earliest` can tell
//!   records of an earlier run (whose times belong to another epoch) from its own;
//! - bytes 16..: filler up to `--record-bytes`: random capital letters, like Kafka's own
//!   `kafka-producer-perf-test`, so compression sees text-like data rather than zeros.
//!
//! Keys (`--key-distribution`): none; `random` = one of `KEY_SPACE` u64 keys; `round-robin` =
//! the record's sequence number modulo `KEY_SPACE`. Keys are 8 bytes, little-endian.

use clap::ValueEnum;
use serde::Serialize;

/// Header bytes before the filler: intended time and run id.
pub const HEADER_BYTES: usize = 16;
/// Distinct keys in `random` and `round-robin` key distributions.
pub const KEY_SPACE: u64 = 10_000;
/// Filler is taken from a window sliding over this much random text, so consecutive records
/// differ and a compressor cannot just reference the previous record.
const FILLER_SOURCE_BYTES: usize = 64 * 1024;
/// Step between consecutive records' filler windows; a prime so windows rarely repeat.
const FILLER_STEP_BYTES: usize = 4_099;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    None,
    Random,
    RoundRobin,
}

/// A small, fast, seedable generator (xorshift64*): the filler and random keys need no
/// statistical quality, only speed and no extra dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // xorshift has a fixed point at zero.
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Builds the values and keys of one producer; reuses one buffer (librdkafka copies payloads).
pub struct RecordFactory {
    value: Vec<u8>,
    filler_source: Vec<u8>,
    run_id: u64,
    keys: KeyDistribution,
    random: XorShift,
}

impl RecordFactory {
    pub fn new(record_bytes: usize, run_id: u64, keys: KeyDistribution, seed: u64) -> Self {
        assert!(record_bytes >= HEADER_BYTES, "records must hold the header");
        let mut random = XorShift::new(seed);
        let filler_source = (0..FILLER_SOURCE_BYTES + record_bytes)
            .map(|_| b'A' + (random.next_u64() % 26) as u8)
            .collect();
        Self {
            value: vec![0; record_bytes],
            filler_source,
            run_id,
            keys,
            random,
        }
    }

    /// The value of the record with this producer-local `sequence`, stamped `intended_ns`.
    pub fn value(&mut self, sequence: u64, intended_ns: u64) -> &[u8] {
        let filler_len = self.value.len() - HEADER_BYTES;
        let start = (sequence as usize).wrapping_mul(FILLER_STEP_BYTES) % FILLER_SOURCE_BYTES;
        self.value[HEADER_BYTES..].copy_from_slice(&self.filler_source[start..start + filler_len]);
        encode_header(&mut self.value, intended_ns, self.run_id);
        &self.value
    }

    /// The key of the record with this global `sequence`, if the distribution has keys.
    pub fn key(&mut self, sequence: u64) -> Option<[u8; 8]> {
        match self.keys {
            KeyDistribution::None => None,
            KeyDistribution::Random => Some((self.random.next_u64() % KEY_SPACE).to_le_bytes()),
            KeyDistribution::RoundRobin => Some((sequence % KEY_SPACE).to_le_bytes()),
        }
    }
}

fn encode_header(value: &mut [u8], intended_ns: u64, run_id: u64) {
    value[0..8].copy_from_slice(&intended_ns.to_le_bytes());
    value[8..16].copy_from_slice(&run_id.to_le_bytes());
}

/// The intended send time of a record of run `run_id`, or None if the value is too short or
/// belongs to another run (values come off the network: never trust their length).
pub fn decode_intended_ns(value: &[u8], run_id: u64) -> Option<u64> {
    let intended = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
    let writer_run = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    (writer_run == run_id).then_some(intended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_its_intended_time() {
        let mut factory = RecordFactory::new(100, 42, KeyDistribution::None, 7);
        let value = factory.value(3, 123_456_789_012).to_vec();
        assert_eq!(value.len(), 100);
        assert_eq!(&value[0..8], &123_456_789_012u64.to_le_bytes());
        assert_eq!(decode_intended_ns(&value, 42), Some(123_456_789_012));
    }

    #[test]
    fn values_of_other_runs_and_short_values_are_rejected() {
        let mut factory = RecordFactory::new(16, 42, KeyDistribution::None, 7);
        let value = factory.value(0, 5).to_vec();
        assert_eq!(decode_intended_ns(&value, 43), None);
        assert_eq!(decode_intended_ns(&value[..15], 42), None);
        assert_eq!(decode_intended_ns(&[], 42), None);
    }

    #[test]
    fn filler_is_letters_and_differs_between_records() {
        let mut factory = RecordFactory::new(1024, 1, KeyDistribution::None, 7);
        let first = factory.value(0, 0)[HEADER_BYTES..].to_vec();
        let second = factory.value(1, 0)[HEADER_BYTES..].to_vec();
        assert!(first.iter().all(u8::is_ascii_uppercase));
        assert_ne!(first, second);
    }

    #[test]
    fn keys_follow_the_distribution() {
        let mut none = RecordFactory::new(16, 1, KeyDistribution::None, 7);
        assert_eq!(none.key(5), None);
        let mut round_robin = RecordFactory::new(16, 1, KeyDistribution::RoundRobin, 7);
        assert_eq!(round_robin.key(10_003), Some(3u64.to_le_bytes()));
        let mut random = RecordFactory::new(16, 1, KeyDistribution::Random, 7);
        for _ in 0..1000 {
            let key = random.key(0).map(u64::from_le_bytes);
            assert!(key.is_some_and(|k| k < KEY_SPACE));
        }
    }
}
