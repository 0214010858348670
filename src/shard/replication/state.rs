//! A partition's replication state on this broker, without I/O: whether it leads or
//! follows, the ISR, the followers' progress (leader), the high watermark, and the ISR
//! change it may ask for. Only methods change it, and each keeps these invariants
//! (asserted in debug builds after every change):
//!
//! - **The leader epoch only grows**: a catalogue that names an older epoch is stale.
//! - **The leader is in the ISR**, and **the ISR is a subset of the replicas**.
//! - **A leader's high watermark never moves back** while it leads, and never passes
//!   what its own log has written. It is the smallest log end among itself (what its log
//!   has written to the device) and the in-sync followers (what each has fetched past,
//!   having written everything before it: a follower fetches again only once its appends
//!   are written). A follower's is the leader's, one fetch behind, capped at its own
//!   written log end (it moves back if the follower truncates).
//! - **A follower rejoins the ISR only with everything acknowledged** (KIP-841): its log
//!   end has reached both the high watermark and the start of the leader's current epoch
//!   (where the leader's log ended when it became leader: a new leader's high watermark
//!   can trail its log, and everything below that point may have been acknowledged under
//!   the previous leader).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::metadata::PartitionState;

/// A follower that has not caught up with the leader's log end for this long leaves the
/// ISR (Kafka's `replica.lag.time.max.ms`, 30 s by default; shorter here because the
/// failure of a whole broker is detected by its session, and this covers a follower that
/// heartbeats but does not fetch).
pub const REPLICA_LAG_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Follower {
    /// The offset it fetches from: it holds everything below.
    log_end: i64,
    /// When it last fetched from at or past the leader's log end.
    caught_up_at: Instant,
}

/// An ISR change the leader asks of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// What a follower's fetch did on the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The high watermark moved (acks=all waiters and consumers may look again).
    pub high_watermark_moved: bool,
    /// An ISR change to ask for: the follower rejoins.
    pub change: Option<IsrChange>,
}

#[derive(Debug)]
pub struct ReplicaState {
    /// This broker.
    node: i32,
    leader: i32,
    leader_epoch: i32,
    isr: Vec<i32>,
    replicas: Vec<i32>,
    /// Leader only: each follower's progress since this broker became leader.
    followers: BTreeMap<i32, Follower>,
    high_watermark: i64,
    /// Leader only: the log end when this leadership began (KIP-841).
    epoch_start_offset: i64,
    /// Leader only: an ISR change is sent to the controller and not answered yet. Only the
    /// answer clears it (`isr_change_answered`), not a catalogue update: other changes
    /// update the catalogue too, and clearing on them let a slow controller collect an
    /// unbounded pile of one partition's calls.
    isr_change_in_flight: bool,
}

impl ReplicaState {
    /// The state of a log just opened on broker `node`, whose log ends at `log_end` and
    /// has written up to `written`, with the catalogue's `state` (`None`: a single
    /// broker's partition, led here alone). Its high watermark is what this broker knows
    /// to be written: all of it when it leads alone, nothing yet otherwise (a leader's
    /// answer or its followers will raise it).
    pub fn open(
        node: i32,
        replicas: &[i32],
        state: Option<&PartitionState>,
        log_end: i64,
        written: i64,
    ) -> ReplicaState {
        let mut replica = ReplicaState {
            node,
            leader: node,
            leader_epoch: 0,
            isr: vec![node],
            replicas: vec![node],
            followers: BTreeMap::new(),
            high_watermark: 0,
            epoch_start_offset: log_end,
            isr_change_in_flight: false,
        };
        if let Some(state) = state {
            replica.leader = state.leader;
            replica.leader_epoch = state.leader_epoch;
            replica.isr = state.isr.clone();
            replica.replicas = replicas.to_vec();
        }
        if replica.isr.len() <= 1 && replica.is_leader() {
            replica.high_watermark = written;
        }
        replica.check();
        replica
    }

    pub fn node(&self) -> i32 {
        self.node
    }

    pub fn leader(&self) -> i32 {
        self.leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn is_leader(&self) -> bool {
        self.leader == self.node
    }

    pub fn is_replica(&self, broker: i32) -> bool {
        self.replicas.contains(&broker)
    }

    /// This broker copies the partition from a live leader.
    pub fn follows(&self) -> bool {
        self.leader >= 0 && !self.is_leader() && self.is_replica(self.node)
    }

    /// Where this leadership's log began (KIP-841).
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// Takes the catalogue's view of the partition; this broker's log ends at `log_end`.
    /// A change of leader or epoch forgets the followers' progress (a new leadership counts
    /// it afresh); becoming leader at a new epoch notes where this leadership's log begins.
    pub fn update(&mut self, replicas: &[i32], state: &PartitionState, log_end: i64) {
        debug_assert!(
            state.leader_epoch >= self.leader_epoch,
            "the leader epoch went back from {} to {} ({state:?})",
            self.leader_epoch,
            state.leader_epoch
        );
        let new_leadership = state.leader != self.leader || state.leader_epoch != self.leader_epoch;
        if new_leadership {
            self.followers.clear();
            if state.leader == self.node {
                self.epoch_start_offset = log_end;
            }
        }
        self.leader = state.leader;
        self.leader_epoch = state.leader_epoch;
        self.isr = state.isr.clone();
        self.replicas = replicas.to_vec();
        self.check();
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
            let before = self.high_watermark;
            self.high_watermark = before.max(candidate);
            debug_assert!(
                self.high_watermark >= before,
                "a leader's high watermark never moves back"
            );
            debug_assert!(
                self.high_watermark <= written.max(before),
                "the high watermark {} passed the written offset {written}",
                self.high_watermark
            );
        } else {
            self.high_watermark = self.high_watermark.min(written);
        }
        self.high_watermark
    }

    /// A follower's fetch from `log_end`, while the leader's log has written up to
    /// `written`. Returns whether the high watermark moved and the ISR change to ask for,
    /// if one is due (the follower rejoins: see the module's KIP-841 rule).
    pub fn follower_fetched(
        &mut self,
        follower: i32,
        log_end: i64,
        written: i64,
        now: Instant,
    ) -> FollowerProgress {
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
        let before = self.high_watermark;
        let high_watermark = self.high_watermark(written);
        let rejoins = !self.isr.contains(&follower)
            && self.replicas.contains(&follower)
            && log_end >= high_watermark
            && log_end >= self.epoch_start_offset;
        let mut change = None;
        if rejoins && !self.isr_change_in_flight {
            let mut isr = self.isr.clone();
            isr.push(follower);
            self.isr_change_in_flight = true;
            change = Some(IsrChange {
                leader_epoch: self.leader_epoch,
                isr,
            });
        }
        FollowerProgress {
            high_watermark_moved: high_watermark > before,
            change,
        }
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

    /// The invariants of the module, in debug builds.
    fn check(&self) {
        debug_assert!(
            self.leader < 0 || self.isr.contains(&self.leader),
            "leader {} is not in the ISR {:?}",
            self.leader,
            self.isr
        );
        debug_assert!(
            self.isr.iter().all(|id| self.replicas.contains(id)),
            "the ISR {:?} is not a subset of the replicas {:?}",
            self.isr,
            self.replicas
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(leader: i32, leader_epoch: i32, isr: Vec<i32>) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch,
            isr,
            ..PartitionState::default()
        }
    }

    fn leading(isr: Vec<i32>) -> ReplicaState {
        ReplicaState::open(1, &[1, 2, 3], Some(&catalogue(1, 4, isr)), 0, 0)
    }

    #[test]
    fn the_high_watermark_is_the_slowest_in_sync_replica_and_never_moves_back() {
        let now = Instant::now();
        let mut state = leading(vec![1, 2, 3]);
        assert_eq!(state.high_watermark(100), 0, "followers not heard from yet");
        state.follower_fetched(2, 80, 100, now);
        assert_eq!(state.high_watermark(100), 0);
        let progress = state.follower_fetched(3, 60, 100, now);
        assert!(progress.high_watermark_moved);
        assert_eq!(state.high_watermark(100), 60);
        state.follower_fetched(3, 100, 100, now);
        assert_eq!(state.high_watermark(100), 80);
        // A follower leaving the ISR no longer holds it back; nothing moves it back.
        state.update(&[1, 2, 3], &catalogue(1, 4, vec![1, 3]), 100);
        assert_eq!(state.high_watermark(100), 100);
        state.update(&[1, 2, 3], &catalogue(1, 4, vec![1, 2, 3]), 100);
        assert_eq!(state.high_watermark(100), 100);
    }

    #[test]
    fn followers_rejoin_when_caught_up_and_leave_when_lagging() {
        let now = Instant::now();
        let mut state = leading(vec![1, 3]);
        state.follower_fetched(3, 50, 50, now);
        assert_eq!(
            state.follower_fetched(2, 10, 50, now).change,
            None,
            "behind"
        );
        let change = state
            .follower_fetched(2, 50, 50, now)
            .change
            .expect("rejoins");
        assert_eq!(change.isr, vec![1, 3, 2]);
        assert_eq!(
            state.follower_fetched(2, 50, 50, now).change,
            None,
            "one change at a time"
        );
        state.update(&[1, 2, 3], &catalogue(1, 4, vec![1, 3, 2]), 50);
        assert_eq!(state.lagging_change(now), None);
        let later = now + REPLICA_LAG_MAX + Duration::from_secs(1);
        state.follower_fetched(3, 60, 60, later);
        assert_eq!(
            state.lagging_change(later),
            None,
            "a catalogue update is not the answer: still one change at a time"
        );
        state.isr_change_answered();
        let change = state.lagging_change(later).expect("2 lags");
        assert_eq!(change.isr, vec![1, 3]);
    }

    /// KIP-841: a new leader whose high watermark trails the start of its epoch does not
    /// take back a follower that lacks records between the two (they may have been
    /// acknowledged under the previous leader).
    #[test]
    fn a_follower_rejoins_only_past_the_start_of_the_leaders_epoch() {
        let now = Instant::now();
        // Broker 1 follows at epoch 4, knowing a high watermark of 80, its log at 100.
        let mut state =
            ReplicaState::open(1, &[1, 2, 3], Some(&catalogue(2, 4, vec![2, 1])), 100, 100);
        state.learn_high_watermark(80, 100);
        // Broker 2 dies; broker 1 leads at epoch 5 from its log end, 100.
        state.update(&[1, 2, 3], &catalogue(1, 5, vec![1]), 100);
        assert_eq!(state.epoch_start_offset(), 100);
        assert_eq!(state.high_watermark(100), 100, "alone in the ISR");
        // A follower at 90 has reached an older high watermark but not the epoch's start.
        let mut trailing =
            ReplicaState::open(1, &[1, 2, 3], Some(&catalogue(2, 4, vec![2, 1])), 100, 100);
        trailing.learn_high_watermark(80, 100);
        trailing.update(&[1, 2, 3], &catalogue(1, 5, vec![1, 2]), 100);
        assert_eq!(
            trailing.high_watermark(100),
            80,
            "2 not heard from in this leadership"
        );
        assert_eq!(trailing.follower_fetched(3, 90, 100, now).change, None);
        let change = trailing.follower_fetched(3, 100, 100, now).change;
        assert_eq!(change.map(|c| c.isr), Some(vec![1, 2, 3]));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "the leader epoch went back")]
    fn a_stale_catalogue_is_caught() {
        let mut state = leading(vec![1, 2]);
        state.update(&[1, 2, 3], &catalogue(1, 3, vec![1, 2]), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is not in the ISR")]
    fn a_leader_outside_the_isr_is_caught() {
        let mut state = leading(vec![1, 2]);
        state.update(&[1, 2, 3], &catalogue(1, 4, vec![2]), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is not a subset of the replicas")]
    fn an_isr_member_that_is_no_replica_is_caught() {
        let mut state = leading(vec![1, 2]);
        state.update(&[1, 2, 3], &catalogue(1, 4, vec![1, 4]), 0);
    }
}
