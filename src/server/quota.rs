//! Client quotas on this shard (KIP-13, KIP-124, KIP-219): each shard measures the byte
//! rates of the connections it serves, and the time their requests' handlers run on it,
//! against the catalogue's quotas (`security::quota`), with no shared state and no
//! cross-shard traffic. A client over its quota gets
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
use crate::security::quota::{self, Counted, Rate, REQUEST_PERCENTAGE};
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
    match applicable(shard, request, key) {
        Some((counted, limit)) => measure(key, counted, limit, bytes),
        None => Duration::ZERO,
    }
}

/// The `key` quota of the request's user and client id, if the catalogue has one.
fn applicable(shard: &Shard, request: &Request, key: &'static str) -> Option<(Counted, f64)> {
    let metadata = shard.metadata();
    if metadata.client_quotas.is_empty() {
        return None;
    }
    let user = request
        .principal
        .strip_prefix("User:")
        .unwrap_or(&request.principal);
    let client_id = request.client_id.as_deref().unwrap_or("");
    quota::applicable(&metadata.client_quotas, key, user, client_id)
}

/// Records `value` in the `key` rate of `counted`; returns its throttle against `limit`.
fn measure(key: &'static str, counted: Counted, limit: f64, value: f64) -> Duration {
    RATES.with(|rates| {
        let mut rates = rates.borrow_mut();
        let now_ms = rates.now_ms();
        let Some(rate) = rates.rate((key, counted), now_ms) else {
            return Duration::ZERO;
        };
        rate.record(now_ms, value);
        if value < 0.0 {
            return Duration::ZERO;
        }
        Duration::from_millis(quota::throttle_ms(rate.rate(now_ms), limit))
    })
}

/// A request's client under a request-time quota (KIP-124).
pub struct RequestTime {
    counted: Counted,
    limit: f64,
    mute: Mute,
}

impl RequestTime {
    /// The request-time quota of `request`'s client, if one applies; the request's answer
    /// reports the throttle the client's earlier requests earned (`Request::throttle`),
    /// and its connection is muted for it.
    pub fn of(shard: &Shard, request: &Request) -> Option<RequestTime> {
        let (counted, limit) = applicable(shard, request, REQUEST_PERCENTAGE)?;
        let quota = RequestTime {
            counted,
            limit,
            mute: request.mute.clone(),
        };
        let throttle = quota.record(Duration::ZERO);
        request.throttle.set(throttle);
        mute_until(&quota.mute, throttle);
        Some(quota)
    }

    /// Counts `busy`, the time the request's handler ran on this shard, and mutes the
    /// connection for the throttle it earns.
    pub fn charge(&self, busy: Duration) {
        let throttle = self.record(busy);
        mute_until(&self.mute, throttle);
    }

    /// Kafka's unit: percent of one thread's time, so a second of work per second is 100.
    fn record(&self, busy: Duration) -> Duration {
        let percent_seconds = busy.as_secs_f64() * 100.0;
        measure(
            REQUEST_PERCENTAGE,
            self.counted.clone(),
            self.limit,
            percent_seconds,
        )
    }
}

/// Mutes the request's connection for `throttle` (KIP-219: the answer goes out at once
/// with `throttle_time_ms`; the connection reads nothing more until then).
pub fn mute(request: &Request, throttle: Duration) {
    mute_until(&request.mute, throttle);
}

fn mute_until(mute: &Mute, throttle: Duration) {
    if throttle.is_zero() {
        return;
    }
    let until = time::now() + throttle;
    let later = mute.get().is_none_or(|current| current < until);
    if later {
        mute.set(Some(until));
    }
}

/// A throttle as Kafka's `throttle_time_ms`.
pub fn throttle_ms(throttle: Duration) -> i32 {
    i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
}
