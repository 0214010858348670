//! The simulated network between nodes: every message is delivered after a delay drawn
//! per message (so messages on one link overtake each other), may be dropped or
//! delivered twice, and never crosses a cut link. What the quorum links carry: Raft
//! messages, and calls to the quorum's leader with their replies.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use raft::eraftpb::Message;

use super::rng::SimRng;
use crate::cluster::node::rpc::{NodeCall, NodeReply};

#[derive(Debug, Clone)]
pub enum Payload {
    Raft(Message),
    Call { id: u64, call: NodeCall },
    Reply { id: u64, reply: NodeReply },
}

#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: u64,
    pub to: u64,
    pub payload: Payload,
}

/// How links misbehave (a seed picks its own mix).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    pub drop: f64,
    pub duplicate: f64,
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Chance of a long delay (a stalled connection), up to `slow_max`.
    pub slow: f64,
    pub slow_max: Duration,
}

impl LinkFaults {
    /// A healthy network: small delays only.
    pub fn healthy() -> LinkFaults {
        LinkFaults {
            drop: 0.0,
            duplicate: 0.0,
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_millis(2),
            slow: 0.0,
            slow_max: Duration::ZERO,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetworkStats {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub cut: u64,
}

pub struct Network {
    faults: LinkFaults,
    /// Directed links that deliver nothing.
    cut: BTreeSet<(u64, u64)>,
    pub stats: NetworkStats,
}

impl Network {
    pub fn new(faults: LinkFaults) -> Network {
        Network {
            faults,
            cut: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    /// When (and how often) `envelope` arrives: never, once or twice.
    pub fn send(
        &mut self,
        envelope: Envelope,
        now: Instant,
        rng: &mut SimRng,
    ) -> Vec<(Instant, Envelope)> {
        self.stats.sent += 1;
        if !self.connected(envelope.from, envelope.to) {
            self.stats.cut += 1;
            return Vec::new();
        }
        if rng.chance(self.faults.drop) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        let copies = if rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = rng.duration(self.faults.delay_min, self.faults.delay_max);
                if rng.chance(self.faults.slow) {
                    delay += rng.duration(Duration::ZERO, self.faults.slow_max);
                }
                (now + delay, envelope.clone())
            })
            .collect()
    }

    pub fn connected(&self, from: u64, to: u64) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn partition(&mut self, side: &BTreeSet<u64>, nodes: &[u64]) {
        for &a in side {
            for &b in nodes.iter().filter(|b| !side.contains(b)) {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(from: u64, to: u64) -> Envelope {
        Envelope {
            from,
            to,
            payload: Payload::Call {
                id: 1,
                call: NodeCall::Catalogue { after: 0 },
            },
        }
    }

    #[test]
    fn cut_links_deliver_nothing_and_faults_drop_and_duplicate() {
        let mut rng = SimRng::new(1);
        let now = Instant::now();
        let mut network = Network::new(LinkFaults::healthy());
        let delivered = network.send(call(1, 2), now, &mut rng);
        assert_eq!(delivered.len(), 1);
        assert!(delivered[0].0 > now);
        network.partition(&BTreeSet::from([1]), &[1, 2, 3]);
        assert!(network.send(call(1, 2), now, &mut rng).is_empty());
        assert!(network.send(call(3, 1), now, &mut rng).is_empty());
        assert_eq!(network.send(call(2, 3), now, &mut rng).len(), 1);
        network.heal();
        network.set_faults(LinkFaults {
            drop: 0.5,
            duplicate: 0.5,
            ..LinkFaults::healthy()
        });
        let copies: usize = (0..1000)
            .map(|_| network.send(call(1, 2), now, &mut rng).len())
            .sum();
        assert!((500..1000).contains(&copies), "{copies}");
        assert!(network.stats.dropped > 0 && network.stats.duplicated > 0);
    }
}
