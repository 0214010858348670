//! Brokers' membership as the quorum's leader keeps it: when each broker was last heard
//! from, which registrations conflict, when a broker is unfenced, and which brokers to
//! fence because they fell silent. Pure: every decision takes the catalogue and `now`
//! (the leader's clock) and returns what to propose; the caller proposes and answers.
//!
//! - A broker registers (fenced), heartbeats every `heartbeat_interval`, and is unfenced
//!   once a heartbeat says it has applied its own registration (caught up that far).
//! - A broker silent for `session_timeout` is fenced. So is one whose connection to the
//!   leader closed and did not come back within `disconnected_fence_after`: its process is
//!   gone (its kernel closed the connection); a partition or a paused process keeps the
//!   connection and is fenced when its session ends.
//! - A node that just became leader gives every broker a full session (what it saw when
//!   it led before is stale), except those whose connection to it is closed.
//! - Fencing moves the broker's leaderships and ISR places in the same entry
//!   (`cluster::election`), so no catalogue ever names a fenced leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::cluster::election;
use crate::cluster::metadata::{BrokerInfo, ClusterMetadata};
use crate::cluster::quorum::voters::QuorumConfig;
use crate::cluster::records::{self, MetadataRecord};

/// A broker whose connection to the quorum's leader closed (its process died) is fenced
/// after this, rather than after its whole session.
pub const DISCONNECTED_FENCE_AFTER: Duration = Duration::from_secs(1);

/// The timings membership runs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Kafka's `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// Kafka's `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// A broker whose connection closed is fenced after this (its process died).
    pub disconnected_fence_after: Duration,
}

impl MembershipConfig {
    /// Kafka's default timings (the tests' membership).
    #[cfg(test)]
    pub fn kafka_defaults() -> MembershipConfig {
        MembershipConfig {
            session_timeout: Duration::from_secs(9),
            heartbeat_interval: Duration::from_secs(2),
            disconnected_fence_after: Duration::from_secs(1),
        }
    }

    /// The timings of a cluster's settings (`--broker-session-timeout-ms`,
    /// `--broker-heartbeat-interval-ms`).
    pub fn of(quorum: &QuorumConfig) -> MembershipConfig {
        MembershipConfig {
            session_timeout: quorum.session_timeout,
            heartbeat_interval: quorum.heartbeat_interval,
            disconnected_fence_after: DISCONNECTED_FENCE_AFTER,
        }
    }

    /// How long a registration may be refused before it is not a restart's leftover
    /// session but another live broker with the same id.
    pub fn registration_patience(&self) -> Duration {
        self.session_timeout + self.heartbeat_interval * 2
    }

    /// How often the leader looks for silent brokers.
    pub fn duty_interval(&self) -> Duration {
        self.heartbeat_interval.min(Duration::from_millis(500))
    }
}

/// Why a broker is fenced without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    MissedSession,
    ClosedConnection,
}

impl Silence {
    pub fn describe(self) -> &'static str {
        match self {
            Silence::MissedSession => "missed its session",
            Silence::ClosedConnection => "closed its connection",
        }
    }
}

/// A broker to fence: its id, the registration (epoch) that fell silent, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilentBroker {
    pub id: i32,
    pub epoch: u64,
    pub why: Silence,
}

/// What the quorum's leader knows of the brokers beyond the catalogue. Only the leader's
/// copy matters; it is rebuilt whenever a node becomes leader.
#[derive(Debug, Default)]
pub struct Members {
    /// When each broker was last heard from (a heartbeat, a registration).
    last_seen: BTreeMap<i32, Instant>,
    /// Brokers with an unfence in flight (their heartbeats meanwhile answer at once).
    unfencing: BTreeSet<i32>,
    /// Whether the last duty round found this node ready to lead.
    leading: bool,
}

impl Members {
    pub fn heard_from(&mut self, id: i32, now: Instant) {
        self.last_seen.insert(id, now);
    }

    /// A broker that left: its next registration is not held back by its old session.
    pub fn forget(&mut self, id: i32) {
        self.last_seen.remove(&id);
    }

    /// Marks an unfence of `id` as in flight; false if one already is.
    pub fn begin_unfence(&mut self, id: i32) -> bool {
        self.unfencing.insert(id)
    }

    pub fn end_unfence(&mut self, id: i32) {
        self.unfencing.remove(&id);
    }

    /// Why `info` may not register now: the id belongs to another live broker (another
    /// process: its incarnation differs, and its session has not ended).
    pub fn registration_conflict(
        &self,
        image: &ClusterMetadata,
        info: &BrokerInfo,
        now: Instant,
        config: &MembershipConfig,
    ) -> Option<String> {
        let current = image.brokers.get(&info.id)?;
        let seen = self.last_seen.get(&info.id).copied();
        let live = !current.fenced && seen.is_some_and(|at| now - at < config.session_timeout);
        (live && current.incarnation != info.incarnation).then(|| {
            format!(
                "node id {} is in use by a live broker at {}:{} (registered at epoch {}); \
                 give this broker another --node-id",
                info.id, current.host, current.port, current.epoch
            )
        })
    }

    /// One round of the leader's duties, every `duty_interval`: the brokers to fence.
    /// `disconnected(id)`: how long broker `id` has had no connection to this node, if it
    /// had one that its side closed.
    pub fn duties(
        &mut self,
        leader_ready: bool,
        image: &ClusterMetadata,
        now: Instant,
        me: i32,
        config: &MembershipConfig,
        disconnected: impl Fn(i32) -> Option<Duration>,
    ) -> Vec<SilentBroker> {
        if !leader_ready {
            self.leading = false;
            return Vec::new();
        }
        if !self.leading {
            self.leading = true;
            self.last_seen.clear();
            for &id in image.brokers.keys() {
                if disconnected(id).is_none() {
                    self.last_seen.insert(id, now);
                }
            }
            return Vec::new();
        }
        image
            .live_brokers()
            .filter(|broker| broker.id != me)
            .filter_map(|broker| {
                let heard = self.last_seen.get(&broker.id).copied();
                let why = if heard.is_none_or(|at| now - at >= config.session_timeout) {
                    Silence::MissedSession
                } else {
                    let gone = disconnected(broker.id).is_some_and(|for_how_long| {
                        for_how_long >= config.disconnected_fence_after
                            && heard.is_none_or(|at| now - at >= for_how_long)
                    });
                    if !gone {
                        return None;
                    }
                    Silence::ClosedConnection
                };
                Some(SilentBroker {
                    id: broker.id,
                    epoch: broker.epoch,
                    why,
                })
            })
            .collect()
    }
}

/// The records of registering `info`: a new registration starts fenced, and whatever the
/// old one led moves now.
pub fn register(image: &ClusterMetadata, info: &BrokerInfo) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::RegisterBroker(info.clone())];
    records.extend(election::on_fence(image, info.id));
    records
}

/// The records of fencing broker `id` at registration `epoch` (and moving what it led),
/// if that registration is current and unfenced; `None` otherwise (an older
/// registration's fence must not touch the newer one's partitions).
pub fn fence(image: &ClusterMetadata, id: i32, epoch: u64) -> Option<Vec<MetadataRecord>> {
    let current = image.brokers.get(&id)?;
    if current.epoch != epoch {
        return None;
    }
    let mut records = vec![MetadataRecord::FenceBroker { id, epoch }];
    records.extend(election::on_fence(image, id));
    (records.len() > 1 || !current.fenced).then_some(records)
}

/// What a heartbeat of broker `id` at registration `epoch`, having applied the catalogue
/// up to `applied`, calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heartbeat {
    /// `epoch` is not the broker's current registration: it must register again.
    Stale,
    /// Nothing to change; the broker is fenced or not.
    Status { fenced: bool },
    /// Unfence it (it has caught up to its registration), with these records.
    Unfence(Vec<MetadataRecord>),
}

pub fn heartbeat(image: &ClusterMetadata, id: i32, epoch: u64, applied: u64) -> Heartbeat {
    let Some(current) = image.brokers.get(&id).filter(|b| b.epoch == epoch) else {
        return Heartbeat::Stale;
    };
    if !current.fenced || applied < epoch {
        return Heartbeat::Status {
            fenced: current.fenced,
        };
    }
    let unfence = MetadataRecord::UnfenceBroker { id, epoch };
    let mut unfenced = image.clone();
    records::apply(&mut unfenced, 0, unfence.clone());
    let mut records = vec![unfence];
    records.extend(election::on_unfence(&unfenced, id));
    Heartbeat::Unfence(records)
}

/// Whether broker `id` is fenced (or unknown) in `image`.
pub fn is_fenced(image: &ClusterMetadata, id: i32) -> bool {
    image.brokers.get(&id).is_none_or(|broker| broker.fenced)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::cluster::metadata::fixture::{self, broker};
    use crate::cluster::metadata::PartitionState;

    /// Brokers 1-3 live; a topic of one partition led by 2, all in sync.
    fn image() -> ClusterMetadata {
        let mut image = ClusterMetadata::new();
        for id in 1..=3 {
            image.brokers.insert(id, broker(id, id as u64 * 10, false));
        }
        image.insert_topic(fixture::topic(
            vec![vec![2, 1, 3]],
            vec![PartitionState {
                leader: 2,
                leader_epoch: 4,
                isr: vec![2, 1, 3],
                ..PartitionState::default()
            }],
        ));
        image
    }

    #[test]
    fn silent_brokers_are_fenced_after_their_session_and_a_new_leader_gives_a_full_one() {
        let (image, config) = (image(), MembershipConfig::kafka_defaults());
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let connected = |_: i32| None;
        let mut members = Members::default();
        assert!(members
            .duties(false, &image, at(0), 1, &config, connected)
            .is_empty());
        // First round as leader: everyone gets a session from now.
        assert!(members
            .duties(true, &image, at(0), 1, &config, connected)
            .is_empty());
        members.heard_from(2, at(5));
        assert!(members
            .duties(true, &image, at(8), 1, &config, connected)
            .is_empty());
        let silent = members.duties(true, &image, at(9), 1, &config, connected);
        assert_eq!(
            silent,
            vec![SilentBroker {
                id: 3,
                epoch: 30,
                why: Silence::MissedSession
            }],
            "3 missed its session; 2 was heard at 5 s; 1 is the leader itself"
        );
        // Leadership lost and regained: a full session again.
        members.duties(false, &image, at(20), 1, &config, connected);
        assert!(members
            .duties(true, &image, at(20), 1, &config, connected)
            .is_empty());
        assert!(members
            .duties(true, &image, at(28), 1, &config, connected)
            .is_empty());
    }

    #[test]
    fn a_closed_connection_fences_after_a_second_unless_the_broker_was_heard_since() {
        let (image, config) = (image(), MembershipConfig::kafka_defaults());
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut members = Members::default();
        members.duties(true, &image, at(0), 1, &config, |_| None);
        members.heard_from(2, at(100));
        members.heard_from(3, at(100));
        let closed = |for_how_long: u64| {
            move |id: i32| (id == 3).then_some(Duration::from_millis(for_how_long))
        };
        assert!(members
            .duties(true, &image, at(600), 1, &config, closed(500))
            .is_empty());
        let silent = members.duties(true, &image, at(1200), 1, &config, closed(1100));
        assert_eq!(silent.len(), 1);
        assert_eq!(
            (silent[0].id, silent[0].why),
            (3, Silence::ClosedConnection)
        );
        // Heard from after its connection closed (it reconnected elsewhere): not gone.
        members.heard_from(3, at(1150));
        assert!(members
            .duties(true, &image, at(1200), 1, &config, closed(1100))
            .is_empty());
        // A node that becomes leader does not count a broker whose connection is closed.
        let mut fresh = Members::default();
        fresh.duties(true, &image, at(0), 1, &config, closed(10));
        let silent = fresh.duties(true, &image, at(1), 1, &config, |_| None);
        assert_eq!(
            silent.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![3],
            "never heard from"
        );
    }

    #[test]
    fn a_live_broker_keeps_its_id_and_a_restart_takes_it_back_after_the_session() {
        let (image, config) = (image(), MembershipConfig::kafka_defaults());
        let start = Instant::now();
        let mut members = Members::default();
        members.heard_from(2, start);
        let mut other = broker(2, 0, true);
        other.incarnation = Uuid::from_u128(99);
        let refused = members.registration_conflict(&image, &other, start, &config);
        assert!(refused.is_some_and(|reason| reason.contains("node id 2 is in use")));
        let same = broker(2, 0, true);
        assert_eq!(
            members.registration_conflict(&image, &same, start, &config),
            None
        );
        let later = start + config.session_timeout;
        assert_eq!(
            members.registration_conflict(&image, &other, later, &config),
            None
        );
        members.forget(2);
        assert_eq!(
            members.registration_conflict(&image, &other, start, &config),
            None
        );
        // Registering moves what the old registration led, in the same entry.
        let records = register(&image, &other);
        assert!(matches!(records[0], MetadataRecord::RegisterBroker(_)));
        assert!(
            matches!(&records[1], MetadataRecord::PartitionChange { state, .. } if state.leader == 1 && state.leader_epoch == 5)
        );
    }

    #[test]
    fn heartbeats_unfence_a_caught_up_registration_and_name_a_stale_one() {
        let mut image = image();
        image.brokers.insert(3, broker(3, 30, true));
        assert_eq!(heartbeat(&image, 3, 29, 40), Heartbeat::Stale);
        assert_eq!(
            heartbeat(&image, 3, 30, 29),
            Heartbeat::Status { fenced: true },
            "not caught up to its own registration"
        );
        let Heartbeat::Unfence(records) = heartbeat(&image, 3, 30, 30) else {
            panic!("unfences");
        };
        assert_eq!(
            records,
            vec![MetadataRecord::UnfenceBroker { id: 3, epoch: 30 }]
        );
        assert_eq!(
            heartbeat(&image, 2, 20, 0),
            Heartbeat::Status { fenced: false }
        );
        assert!(is_fenced(&image, 3) && !is_fenced(&image, 2) && is_fenced(&image, 9));
    }

    #[test]
    fn only_the_current_unfenced_registration_is_fenced() {
        let image = image();
        assert_eq!(fence(&image, 2, 19), None, "an older registration");
        assert_eq!(fence(&image, 9, 1), None, "unknown");
        let records = fence(&image, 2, 20).expect("fenced");
        assert_eq!(records[0], MetadataRecord::FenceBroker { id: 2, epoch: 20 });
        assert!(
            matches!(&records[1], MetadataRecord::PartitionChange { state, .. } if state.leader == 1),
            "its leadership moves in the same entry"
        );
        let mut fenced = image.clone();
        for record in records {
            records::apply(&mut fenced, 0, record);
        }
        assert_eq!(fence(&fenced, 2, 20), None, "already fenced, leads nothing");
    }
}
