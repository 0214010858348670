//! Client quotas (KIP-13, KIP-55, KIP-124): byte rates and request time per user, per
//! client id, or per both, each
//! named or the default, set with `kafka-configs --alter --entity-type users|clients`
//! (AlterClientQuotas) and kept in the catalogue. Pure: which quota applies to a
//! connection (Kafka's precedence), and the rate windows that decide how long it is
//! throttled. Each shard keeps its own windows (`server::quota`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Bytes per second a producer may send (Produce request bytes).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a consumer may receive (Fetch response bytes).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Time the broker may spend on a client's requests, in percent of one thread (KIP-124):
/// 100 is one shard's whole time, 10 a tenth of it.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// The quota keys Petrel enforces.
pub const KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// Kafka's quota windows: 11 samples of one second (`quota.window.num`,
/// `quota.window.size.seconds`).
pub const SAMPLES: usize = 11;
pub const SAMPLE_MS: u64 = 1000;
/// The longest throttle: the whole window (a client that sent far over its quota waits at
/// most this long per request, as its rate decays).
pub const THROTTLE_MS_MAX: u64 = SAMPLES as u64 * SAMPLE_MS;

/// One side of an entity: a named user or client id, or the default for any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

/// What a quota applies to: a user, a client id, or a user's client id (KIP-55).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

/// A quota's value, Kafka's double, kept by its bits so catalogues compare exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuotaValue(u64);

impl QuotaValue {
    pub fn new(value: f64) -> QuotaValue {
        QuotaValue(value.to_bits())
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// Every entity's quotas: entity -> key -> value.
pub type ClientQuotas = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

/// `ClientQuotas` as a list of (entity, values) in JSON, whose map keys must be strings
/// (`#[serde(with = "quota::as_list")]`).
pub mod as_list {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        quotas: &ClientQuotas,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(quotas.iter())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ClientQuotas, D::Error> {
        let list: Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)> =
            Deserialize::deserialize(deserializer)?;
        Ok(list.into_iter().collect())
    }
}

/// Whose usage a quota counts: the user and client id as far as the entity names them
/// (a user's quota is shared by all its client ids; a default applies to each separately).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counted {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

/// The `key` quota that applies to a connection of `user` with `client_id`, by Kafka's
/// precedence: user and client id, user and default client, user, default user and
/// client id, default user and default client, default user, client id, default client.
pub fn applicable(
    quotas: &ClientQuotas,
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(Counted, f64)> {
    use EntityName::{Default, Named};
    let named_user = || Some(Named(user.to_string()));
    let named_client = || Some(Named(client_id.to_string()));
    let candidates = [
        (named_user(), named_client()),
        (named_user(), Some(Default)),
        (named_user(), None),
        (Some(Default), named_client()),
        (Some(Default), Some(Default)),
        (Some(Default), None),
        (None, named_client()),
        (None, Some(Default)),
    ];
    candidates.into_iter().find_map(|(user_part, client_part)| {
        let counted = Counted {
            user: user_part.as_ref().map(|_| user.to_string()),
            client_id: client_part.as_ref().map(|_| client_id.to_string()),
        };
        let entity = QuotaEntity {
            user: user_part,
            client_id: client_part,
        };
        let value = quotas.get(&entity)?.get(key)?.get();
        Some((counted, value))
    })
}

/// A rate over Kafka's window of samples: what was recorded in the last `SAMPLES` seconds
/// over the time they cover (at least `SAMPLES - 1` seconds, so one burst at the start
/// of a window does not read as an enormous rate).
#[derive(Debug, Default, Clone)]
pub struct Rate {
    /// (start of the sample, ms; total recorded in it), oldest first.
    samples: VecDeque<(u64, f64)>,
}

impl Rate {
    pub fn record(&mut self, now_ms: u64, value: f64) {
        self.expire(now_ms);
        match self.samples.back_mut() {
            Some((start, total)) if now_ms < *start + SAMPLE_MS => *total += value,
            _ => {
                if self.samples.len() == SAMPLES {
                    self.samples.pop_front();
                }
                self.samples.push_back((now_ms, value));
            }
        }
    }

    /// Per second, at `now_ms`.
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        self.expire(now_ms);
        let Some(&(oldest, _)) = self.samples.front() else {
            return 0.0;
        };
        let total: f64 = self.samples.iter().map(|(_, value)| value).sum();
        let covered = now_ms
            .saturating_sub(oldest)
            .max((SAMPLES as u64 - 1) * SAMPLE_MS);
        total * 1000.0 / covered as f64
    }

    /// Whether nothing was recorded within the window (the rate may be dropped).
    pub fn idle(&self, now_ms: u64) -> bool {
        self.samples
            .back()
            .is_none_or(|&(start, _)| start + THROTTLE_MS_MAX <= now_ms)
    }

    fn expire(&mut self, now_ms: u64) {
        while self
            .samples
            .front()
            .is_some_and(|&(start, _)| start + THROTTLE_MS_MAX <= now_ms)
        {
            self.samples.pop_front();
        }
    }
}

/// How long a client whose rate is `rate` against `quota` waits (Kafka's
/// `(rate - quota) / quota * window`), at most `THROTTLE_MS_MAX`.
pub fn throttle_ms(rate: f64, quota: f64) -> u64 {
    if quota <= 0.0 {
        return THROTTLE_MS_MAX;
    }
    if rate <= quota {
        return 0;
    }
    let wait = (rate - quota) / quota * THROTTLE_MS_MAX as f64;
    (wait as u64).min(THROTTLE_MS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<&str>, client: Option<&str>) -> QuotaEntity {
        let part = |name: Option<&str>| {
            name.map(|n| match n {
                "<default>" => EntityName::Default,
                named => EntityName::Named(named.into()),
            })
        };
        QuotaEntity {
            user: part(user),
            client_id: part(client),
        }
    }

    #[test]
    fn the_most_specific_entity_applies_as_in_kafka() {
        let mut quotas = ClientQuotas::new();
        let mut set = |user, client, value: f64| {
            quotas
                .entry(entity(user, client))
                .or_default()
                .insert(PRODUCER_BYTE_RATE.into(), QuotaValue::new(value));
        };
        set(None, Some("<default>"), 8.0);
        set(None, Some("app"), 7.0);
        set(Some("<default>"), None, 6.0);
        set(Some("<default>"), Some("<default>"), 5.0);
        set(Some("<default>"), Some("app"), 4.0);
        set(Some("alice"), None, 3.0);
        set(Some("alice"), Some("<default>"), 2.0);
        set(Some("alice"), Some("app"), 1.0);
        let value = |quotas: &ClientQuotas, user, client| {
            applicable(quotas, PRODUCER_BYTE_RATE, user, client).map(|(_, v)| v)
        };
        assert_eq!(value(&quotas, "alice", "app"), Some(1.0));
        assert_eq!(value(&quotas, "alice", "other"), Some(2.0));
        assert_eq!(value(&quotas, "bob", "app"), Some(4.0));
        assert_eq!(value(&quotas, "bob", "other"), Some(5.0));
        assert_eq!(
            applicable(&quotas, CONSUMER_BYTE_RATE, "alice", "app"),
            None,
            "another key"
        );
        // Without user entities, client ids decide; a user's quota is shared by its
        // clients, a client's default counted per client.
        let mut clients = ClientQuotas::new();
        clients
            .entry(entity(None, Some("<default>")))
            .or_default()
            .insert(PRODUCER_BYTE_RATE.into(), QuotaValue::new(8.0));
        let (counted, value) = applicable(&clients, PRODUCER_BYTE_RATE, "bob", "x").unwrap();
        assert_eq!(value, 8.0);
        assert_eq!(
            counted,
            Counted {
                user: None,
                client_id: Some("x".into())
            }
        );
        let mut users = ClientQuotas::new();
        users
            .entry(entity(Some("bob"), None))
            .or_default()
            .insert(PRODUCER_BYTE_RATE.into(), QuotaValue::new(9.0));
        let (counted, _) = applicable(&users, PRODUCER_BYTE_RATE, "bob", "x").unwrap();
        assert_eq!(counted.client_id, None, "shared by bob's client ids");
    }

    #[test]
    fn a_rate_covers_its_window_and_forgets_what_left_it() {
        let mut rate = Rate::default();
        // 10,000 bytes at once: over at least 10 s, 1,000 per second.
        rate.record(0, 10_000.0);
        assert_eq!(rate.rate(0), 1000.0);
        // 2,000 per second for 11 s.
        let mut rate = Rate::default();
        for second in 0..11 {
            rate.record(second * 1000, 2000.0);
        }
        let observed = rate.rate(11_000);
        assert!((observed - 2000.0).abs() < 1.0, "{observed}");
        // Nothing for a whole window: forgotten.
        assert!(rate.idle(22_000));
        assert_eq!(rate.rate(22_000), 0.0);
    }

    #[test]
    fn throttles_grow_with_the_excess_and_stay_bounded() {
        assert_eq!(throttle_ms(900.0, 1000.0), 0);
        assert_eq!(throttle_ms(1100.0, 1000.0), 1100);
        assert_eq!(throttle_ms(2000.0, 1000.0), THROTTLE_MS_MAX);
        assert_eq!(throttle_ms(1e12, 1000.0), THROTTLE_MS_MAX);
        assert_eq!(throttle_ms(1.0, 0.0), THROTTLE_MS_MAX);
    }
}
