//! Idempotent-producer state of one partition: per producer id, its epoch and the sequence
//! ranges and offsets of its last five batches (a producer has at most five requests in
//! flight). Sans-I/O. The log consults it under its append lock, so the check and the
//! append are atomic.
//!
//! Rules (Kafka's `ProducerStateManager`, with KIP-360):
//! - an unknown producer's first batch is accepted whatever its sequence;
//! - an older epoch is fenced;
//! - a newer epoch must start at sequence 0;
//! - a batch equal to one of the last five is a duplicate: answered with its original
//!   offsets, never written twice;
//! - otherwise the batch must continue the last sequence (wrapping after `i32::MAX`).

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer: Kafka's `max.in.flight.requests.per.connection` bound
/// for idempotence.
pub const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRange {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer epoch {got} is older than the current epoch {current}")]
    Fenced { current: i16, got: i16 },
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrder { expected: i32, got: i32 },
    #[error("sequence {0} is not valid for an idempotent batch")]
    Invalid(i32),
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Already in the log at these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

/// The sequence after `sequence`, wrapping as Kafka does.
pub fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The last sequence of a batch of `records_delta + 1` records starting at `first`.
pub fn last_sequence(first: i32, records_delta: i32) -> i32 {
    let last = i64::from(first) + i64::from(records_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
    /// Producers remembered at most; beyond it the one that wrote longest ago is forgotten
    /// (its next batch is then accepted as an unknown producer's first).
    producers_max: usize,
}

impl ProducerStates {
    pub fn new(producers_max: usize) -> ProducerStates {
        ProducerStates {
            producers: HashMap::new(),
            producers_max,
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    ) -> Result<Verdict, SequenceError> {
        if first_sequence < 0 {
            return Err(SequenceError::Invalid(first_sequence));
        }
        let Some(producer) = self.producers.get(&producer_id) else {
            return Ok(Verdict::Append);
        };
        if epoch < producer.epoch {
            return Err(SequenceError::Fenced {
                current: producer.epoch,
                got: epoch,
            });
        }
        if epoch > producer.epoch {
            return if first_sequence == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    expected: 0,
                    got: first_sequence,
                })
            };
        }
        if let Some(duplicate) = producer
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return Ok(Verdict::Duplicate {
                base_offset: duplicate.base_offset,
                last_offset: duplicate.last_offset,
            });
        }
        let expected = producer
            .batches
            .back()
            .map_or(first_sequence, |b| next_sequence(b.last_sequence));
        if first_sequence == expected {
            Ok(Verdict::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                expected,
                got: first_sequence,
            })
        }
    }

    /// Remembers an appended batch (also used to rebuild the state from the log).
    pub fn record(&mut self, producer_id: i64, epoch: i16, range: BatchRange) {
        let producer = self.producers.entry(producer_id).or_insert(Producer {
            epoch,
            batches: VecDeque::new(),
        });
        if epoch != producer.epoch {
            producer.epoch = epoch;
            producer.batches.clear();
        }
        if producer.batches.len() == BATCHES_PER_PRODUCER {
            producer.batches.pop_front();
        }
        producer.batches.push_back(range);
        if self.producers.len() > self.producers_max {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, p)| p.batches.back().map_or(i64::MIN, |b| b.last_offset))
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
    }

    pub fn clear(&mut self) {
        self.producers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: i32, count: i32, base_offset: i64) -> BatchRange {
        BatchRange {
            first_sequence: first,
            last_sequence: last_sequence(first, count - 1),
            base_offset,
            last_offset: base_offset + i64::from(count) - 1,
        }
    }

    fn append(
        states: &mut ProducerStates,
        pid: i64,
        epoch: i16,
        first: i32,
        count: i32,
        base: i64,
    ) -> Result<Verdict, SequenceError> {
        let r = range(first, count, base);
        let verdict = states.check(pid, epoch, r.first_sequence, r.last_sequence)?;
        if verdict == Verdict::Append {
            states.record(pid, epoch, r);
        }
        Ok(verdict)
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut states = ProducerStates::new(100);
        assert_eq!(append(&mut states, 7, 0, 0, 3, 0), Ok(Verdict::Append));
        assert_eq!(append(&mut states, 7, 0, 3, 2, 3), Ok(Verdict::Append));
        assert_eq!(
            append(&mut states, 7, 0, 0, 3, 99),
            Ok(Verdict::Duplicate {
                base_offset: 0,
                last_offset: 2
            })
        );
        assert_eq!(
            append(&mut states, 7, 0, 3, 2, 99),
            Ok(Verdict::Duplicate {
                base_offset: 3,
                last_offset: 4
            })
        );
        assert_eq!(append(&mut states, 7, 0, 5, 1, 5), Ok(Verdict::Append));
    }

    #[test]
    fn gaps_old_epochs_and_bad_restarts_are_refused() {
        let mut states = ProducerStates::new(100);
        append(&mut states, 7, 1, 0, 3, 0).unwrap();
        assert_eq!(
            append(&mut states, 7, 1, 4, 1, 3),
            Err(SequenceError::OutOfOrder {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(
            append(&mut states, 7, 0, 3, 1, 3),
            Err(SequenceError::Fenced { current: 1, got: 0 })
        );
        assert_eq!(
            append(&mut states, 7, 2, 5, 1, 3),
            Err(SequenceError::OutOfOrder {
                expected: 0,
                got: 5
            })
        );
        // A bumped epoch starting at 0 resets the producer.
        assert_eq!(append(&mut states, 7, 2, 0, 1, 3), Ok(Verdict::Append));
        assert_eq!(
            append(&mut states, 7, 1, 3, 1, 4),
            Err(SequenceError::Fenced { current: 2, got: 1 })
        );
        assert_eq!(
            append(&mut states, 7, 2, -1, 1, 4),
            Err(SequenceError::Invalid(-1))
        );
    }

    /// A retry is recognised only within its epoch (Kafka's `ProducerStateManager`): a
    /// batch of a newer epoch with the sequences of an earlier one is new data, and the
    /// older epoch is fenced rather than matched against the newer epoch's batches.
    #[test]
    fn duplicates_are_recognised_only_within_the_same_epoch() {
        let mut states = ProducerStates::new(100);
        assert_eq!(append(&mut states, 7, 0, 0, 1, 0), Ok(Verdict::Append));
        assert_eq!(append(&mut states, 7, 1, 0, 1, 1), Ok(Verdict::Append));
        assert_eq!(
            append(&mut states, 7, 1, 0, 1, 9),
            Ok(Verdict::Duplicate {
                base_offset: 1,
                last_offset: 1
            })
        );
        assert_eq!(
            append(&mut states, 7, 0, 0, 1, 9),
            Err(SequenceError::Fenced { current: 1, got: 0 })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut states = ProducerStates::new(100);
        for n in 0..7 {
            append(&mut states, 1, 0, n, 1, i64::from(n)).unwrap();
        }
        assert_eq!(
            append(&mut states, 1, 0, 2, 1, 9),
            Ok(Verdict::Duplicate {
                base_offset: 2,
                last_offset: 2
            })
        );
        assert!(
            append(&mut states, 1, 0, 1, 1, 9).is_err(),
            "older than the last five: not a known duplicate"
        );
        let mut wrapping = ProducerStates::new(100);
        append(&mut wrapping, 2, 0, i32::MAX - 1, 2, 0).unwrap();
        assert_eq!(next_sequence(i32::MAX), 0);
        assert_eq!(append(&mut wrapping, 2, 0, 0, 1, 2), Ok(Verdict::Append));
        assert_eq!(last_sequence(i32::MAX, 2), 1);
    }

    #[test]
    fn the_producer_limit_forgets_the_least_recent_writer() {
        let mut states = ProducerStates::new(2);
        append(&mut states, 1, 0, 0, 1, 0).unwrap();
        append(&mut states, 2, 0, 0, 1, 1).unwrap();
        append(&mut states, 3, 0, 0, 1, 2).unwrap();
        assert_eq!(states.len(), 2);
        // Producer 1 is forgotten: any sequence is accepted as a first batch again.
        assert_eq!(append(&mut states, 1, 0, 40, 1, 3), Ok(Verdict::Append));
    }
}
