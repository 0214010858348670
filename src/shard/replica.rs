//! A partition's replication state on this broker: whether it leads or follows, the ISR,
//! the followers' progress (leader), and the high watermark.
//!
//! The leader's high watermark is the smallest log end among itself (what its log has
//! written to the device) and the in-sync followers (what each has fetched past, having
//! written everything before it: a follower fetches again only once its appends are
//! written). It never moves back. A follower learns it from the leader's fetch answers,
//! capped at its own log end. A single replica's high watermark is its written offset.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::metadata::PartitionState;

/// A follower that has not caught up with the leader's log end for this long leaves the
/// ISR (Kafka's `replica.lag.time.max.ms`, 30 s by default; shorter here because the
/// failure of a whole broker is detected by its session, and this covers a follower that
/// heartbeats but does not fetch).
pub const REPLICA_LAG_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Follower {
    /// The offset it fetches from: it holds everything below.
    pub log_end: i64,
    /// When it last fetched from at or past the leader's log end.
    pub caught_up_at: Instant,
}

#[derive(Debug)]
pub struct ReplicaState {
    pub node: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    /// Leader only: each follower's progress since this broker became leader.
    pub followers: HashMap<i32, Follower>,
    /// The high watermark: never moves back while this broker keeps the partition.
    pub high_watermark: i64,
    /// Leader only: an ISR change is sent to the controller and not answered yet. Only
    /// the answer clears it (`isr_change_answered`), not a catalogue update: other changes
    /// update the catalogue too, and clearing on them let a slow controller collect an
    /// unbounded pile of one partition's calls.
    isr_change_in_flight: bool,
}

/// An ISR change the leader asks of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

impl ReplicaState {
    /// A partition this broker leads alone (a single broker).
    pub fn single(node: i32) -> ReplicaState {
        ReplicaState {
            node,
            leader: node,
            leader_epoch: 0,
            isr: vec![node],
            replicas: vec![node],
            followers: HashMap::new(),
            high_watermark: 0,
            isr_change_in_flight: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader == self.node
    }

    /// Takes the catalogue's view of the partition. A change of leader or epoch forgets
    /// the followers' progress (a new leadership counts it afresh).
    pub fn update(&mut self, replicas: &[i32], state: &PartitionState) {
        if state.leader != self.leader || state.leader_epoch != self.leader_epoch {
            self.followers.clear();
        }
        self.leader = state.leader;
        self.leader_epoch = state.leader_epoch;
        self.isr = state.isr.clone();
        self.replicas = replicas.to_vec();
    }

    /// The controller answered (or refused, or did not answer in time) the ISR change in
    /// flight: the next one may go.
    pub fn isr_change_answered(&mut self) {
        self.isr_change_in_flight = false;
    }

    /// A follower takes the leader's high watermark, capped at its own written log end.
    pub fn learn_high_watermark(&mut self, leader: i64, written: i64) {
        if !self.is_leader() {
            self.high_watermark = leader.min(written).max(0);
        }
    }

    /// The high watermark given the log's written offset (raised if it can move).
    pub fn high_watermark(&mut self, written: i64) -> i64 {
        if self.is_leader() {
            let mut candidate = written;
            for id in self.isr.iter().filter(|&&id| id != self.node) {
                match self.followers.get(id) {
                    Some(follower) => candidate = candidate.min(follower.log_end),
                    // Not heard from in this leadership: no progress known.
                    None => candidate = candidate.min(self.high_watermark),
                }
            }
            self.high_watermark = self.high_watermark.max(candidate);
        } else {
            self.high_watermark = self.high_watermark.min(written);
        }
        self.high_watermark
    }

    /// A follower's fetch from `log_end`, while the leader's log has written up to
    /// `written`. Returns an ISR change to ask for, if one is due: the follower rejoins
    /// once it has caught up with the high watermark and the current epoch (KIP-841).
    pub fn follower_fetched(
        &mut self,
        follower: i32,
        log_end: i64,
        written: i64,
        epoch_start: i64,
        now: Instant,
    ) -> Option<IsrChange> {
        let previous = self.followers.get(&follower).copied();
        let caught_up_at = if log_end >= written {
            now
        } else {
            previous.map_or(now, |p| p.caught_up_at)
        };
        self.followers.insert(
            follower,
            Follower {
                log_end,
                caught_up_at,
            },
        );
        let high_watermark = self.high_watermark(written);
        let rejoins = !self.isr.contains(&follower)
            && self.replicas.contains(&follower)
            && log_end >= high_watermark
            && log_end >= epoch_start;
        if rejoins && !self.isr_change_in_flight {
            let mut isr = self.isr.clone();
            isr.push(follower);
            self.isr_change_in_flight = true;
            return Some(IsrChange {
                leader_epoch: self.leader_epoch,
                isr,
            });
        }
        None
    }

    /// Followers in the ISR that have not caught up within `REPLICA_LAG_MAX` leave it.
    pub fn lagging_change(&mut self, now: Instant) -> Option<IsrChange> {
        if !self.is_leader() || self.isr_change_in_flight {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| id != self.node)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_some_and(|f| now.duration_since(f.caught_up_at) > REPLICA_LAG_MAX)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        self.isr_change_in_flight = true;
        Some(IsrChange {
            leader_epoch: self.leader_epoch,
            isr: self
                .isr
                .iter()
                .copied()
                .filter(|id| !lagging.contains(id))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(isr: Vec<i32>) -> ReplicaState {
        let mut state = ReplicaState::single(1);
        state.update(
            &[1, 2, 3],
            &PartitionState {
                leader: 1,
                leader_epoch: 4,
                isr,
                ..PartitionState::default()
            },
        );
        state
    }

    #[test]
    fn the_high_watermark_is_the_slowest_in_sync_replica_and_never_moves_back() {
        let now = Instant::now();
        let mut state = leading(vec![1, 2, 3]);
        assert_eq!(state.high_watermark(100), 0, "followers not heard from yet");
        state.follower_fetched(2, 80, 100, 0, now);
        assert_eq!(state.high_watermark(100), 0);
        state.follower_fetched(3, 60, 100, 0, now);
        assert_eq!(state.high_watermark(100), 60);
        state.follower_fetched(3, 100, 100, 0, now);
        assert_eq!(state.high_watermark(100), 80);
        // A follower leaving the ISR no longer holds it back; nothing moves it back.
        state.update(
            &[1, 2, 3],
            &PartitionState {
                leader: 1,
                leader_epoch: 4,
                isr: vec![1, 3],
                ..PartitionState::default()
            },
        );
        assert_eq!(state.high_watermark(100), 100);
        state.update(
            &[1, 2, 3],
            &PartitionState {
                leader: 1,
                leader_epoch: 4,
                isr: vec![1, 2, 3],
                ..PartitionState::default()
            },
        );
        assert_eq!(state.high_watermark(100), 100);
    }

    #[test]
    fn followers_rejoin_when_caught_up_and_leave_when_lagging() {
        let now = Instant::now();
        let mut state = leading(vec![1, 3]);
        state.follower_fetched(3, 50, 50, 0, now);
        assert_eq!(state.follower_fetched(2, 10, 50, 0, now), None, "behind");
        let change = state.follower_fetched(2, 50, 50, 0, now).expect("rejoins");
        assert_eq!(change.isr, vec![1, 3, 2]);
        assert_eq!(
            state.follower_fetched(2, 50, 50, 0, now),
            None,
            "one change at a time"
        );
        state.update(
            &[1, 2, 3],
            &PartitionState {
                leader: 1,
                leader_epoch: 4,
                isr: vec![1, 3, 2],
                ..PartitionState::default()
            },
        );
        assert_eq!(state.lagging_change(now), None);
        let later = now + REPLICA_LAG_MAX + Duration::from_secs(1);
        state.follower_fetched(3, 60, 60, 0, later);
        assert_eq!(
            state.lagging_change(later),
            None,
            "a catalogue update is not the answer: still one change at a time"
        );
        state.isr_change_answered();
        let change = state.lagging_change(later).expect("2 lags");
        assert_eq!(change.isr, vec![1, 3]);
    }
}
