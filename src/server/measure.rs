//! What the server counts per Kafka API, through the metrics seam (`runtime::metrics`):
//! requests handled and how long each took (from dispatch to the handler's answer, so a
//! produce's durability wait is in it). The handles are looked up once per API and shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use crate::runtime::metrics::{self, Counter, Histogram};

/// Requests dispatched to a handler, by API.
pub const REQUESTS: &str = "petrel_requests_total";
/// Request handling time by API, recorded in microseconds.
pub const REQUEST_DURATION: &str = "petrel_request_duration_seconds";

/// One API's series on this shard.
#[derive(Clone)]
pub struct ApiMeasures {
    pub requests: Counter,
    pub duration: Histogram,
}

impl ApiMeasures {
    pub fn record_duration(&self, took: Duration) {
        self.duration
            .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }
}

thread_local! {
    /// This shard's handles, by API key (a few dozen at most: the API table's rows).
    static BY_API: RefCell<HashMap<i16, ApiMeasures>> = RefCell::new(HashMap::new());
}

/// The series of API `key` on this shard.
pub fn of(key: ApiKey) -> ApiMeasures {
    BY_API.with(|by_api| {
        by_api
            .borrow_mut()
            .entry(key as i16)
            .or_insert_with(|| {
                let labels = || vec![("api", format!("{key:?}"))];
                ApiMeasures {
                    requests: metrics::counter(REQUESTS, labels()),
                    duration: metrics::histogram(REQUEST_DURATION, labels()),
                }
            })
            .clone()
    })
}

/// A future with the time its polls took: what it cost the shard, without its waits (the
/// time a request-time quota charges, `server::quota::RequestTime`).
pub struct Busy<F> {
    inner: F,
    busy: Duration,
}

impl<F> Busy<F> {
    pub fn new(inner: F) -> Busy<F> {
        Busy {
            inner,
            busy: Duration::ZERO,
        }
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Busy<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = crate::runtime::time::now();
        let poll = std::pin::Pin::new(&mut self.inner).poll(context);
        let took = crate::runtime::time::now().saturating_duration_since(started);
        self.busy += took;
        let busy = self.busy;
        poll.map(|output| (output, busy))
    }
}
