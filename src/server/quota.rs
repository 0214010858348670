//! Client quotas on this shard (KIP-13, KIP-219): each shard measures the byte rates of
//! the connections it serves against the catalogue's quotas (`security::quota`), with no
//! shared state and no cross-shard traffic. A client over its quota gets
//! `throttle_time_ms` in its answer and its connection is muted (nothing more is read from
//! it) for as long, so a flood slows down at its source and costs the shard nothing
//! meanwhile; other connections are not affected. As with Kafka's brokers, the quota holds
//! per shard: a client's connections on two shards each get it.
//!
//! Without any quota in the catalogue, a request pays one emptiness check.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::protocol::frame::Request;
use crate::runtime::time;
use crate::security::quota::{self, Counted, Rate};
use crate::shard::Shard;

/// Rates one shard keeps at most; past it, idle ones are dropped first, then the new one
/// is not measured (a bound on memory an id-cycling client could make the shard hold).
const RATES_MAX: usize = 10_000;

/// A connection's mute: until when its reader waits before reading the next request.
pub type Mute = Rc<Cell<Option<Instant>>>;

thread_local! {
    static RATES: RefCell<Rates> = RefCell::new(Rates::default());
}

#[derive(Default)]
struct Rates {
    by_client: HashMap<(&'static str, Counted), Rate>,
    /// Where this shard's millisecond clock starts.
    origin: Option<Instant>,
}

impl Rates {
    fn now_ms(&mut self) -> u64 {
        let now = time::now();
        let origin = *self.origin.get_or_insert(now);
        u64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn rate(&mut self, key: (&'static str, Counted), now_ms: u64) -> Option<&mut Rate> {
        if !self.by_client.contains_key(&key) && self.by_client.len() >= RATES_MAX {
            self.by_client.retain(|_, rate| !rate.idle(now_ms));
            if self.by_client.len() >= RATES_MAX {
                return None;
            }
        }
        Some(self.by_client.entry(key).or_default())
    }
}

/// Records `bytes` against the `key` quota (a `security::quota` key) of the request's
/// user and client id; returns how long the client is throttled (zero: within its quota,
/// or no quota applies).
pub fn record(shard: &Shard, request: &Request, key: &'static str, bytes: usize) -> Duration {
    adjust(shard, request, key, bytes as f64)
}

/// Takes back bytes recorded for an answer that was not sent (a throttled fetch answers
/// without its data, as Kafka's does).
pub fn unrecord(shard: &Shard, request: &Request, key: &'static str, bytes: usize) {
    adjust(shard, request, key, -(bytes as f64));
}

fn adjust(shard: &Shard, request: &Request, key: &'static str, bytes: f64) -> Duration {
    let metadata = shard.metadata();
    if metadata.client_quotas.is_empty() {
        return Duration::ZERO;
    }
    let user = request
        .principal
        .strip_prefix("User:")
        .unwrap_or(&request.principal);
    let client_id = request.client_id.as_deref().unwrap_or("");
    let Some((counted, limit)) = quota::applicable(&metadata.client_quotas, key, user, client_id)
    else {
        return Duration::ZERO;
    };
    RATES.with(|rates| {
        let mut rates = rates.borrow_mut();
        let now_ms = rates.now_ms();
        let Some(rate) = rates.rate((key, counted), now_ms) else {
            return Duration::ZERO;
        };
        rate.record(now_ms, bytes);
        if bytes < 0.0 {
            return Duration::ZERO;
        }
        Duration::from_millis(quota::throttle_ms(rate.rate(now_ms), limit))
    })
}

/// Mutes the request's connection for `throttle` (KIP-219: the answer goes out at once
/// with `throttle_time_ms`; the connection reads nothing more until then).
pub fn mute(request: &Request, throttle: Duration) {
    if throttle.is_zero() {
        return;
    }
    let until = time::now() + throttle;
    let later = request.mute.get().is_none_or(|current| current < until);
    if later {
        request.mute.set(Some(until));
    }
}

/// A throttle as Kafka's `throttle_time_ms`.
pub fn throttle_ms(throttle: Duration) -> i32 {
    i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
}
