//! One process-wide clock. Producers stamp each record with its intended send time and
//! consumers subtract it from their receive time, so every thread must read the same epoch;
//! all clients of a run live in this one process, which makes that possible.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide epoch (set by the first call).
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years; saturate rather than wrap.
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Sleeps until `deadline_ns`, waking at least every `slice` so a stop request is noticed.
/// Returns false if `should_stop` became true first.
pub fn sleep_until_ns(deadline_ns: u64, slice: Duration, should_stop: impl Fn() -> bool) -> bool {
    loop {
        if should_stop() {
            return false;
        }
        let now = now_ns();
        if now >= deadline_ns {
            return true;
        }
        std::thread::sleep(Duration::from_nanos(deadline_ns - now).min(slice));
    }
}
