//! Many seeds at once: threads take seeds in turn until all are run or one fails (a broken
//! invariant, or a panic in the code under test); the summary adds up what every run did.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::world::{run, Failure, Options, Report};

/// What a sweep of seeds did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub seeds: u64,
    pub steps: u64,
    pub simulated: Duration,
    pub checks: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub disk_stalls: u64,
    pub admin_operations: u64,
    pub messages: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub committed: u64,
    pub terms_led: u64,
    pub isr_changes_asked: u64,
    pub slowest_recovery: Duration,
}

impl Summary {
    fn add(&mut self, report: &Report) {
        self.seeds += 1;
        self.steps += report.steps;
        self.simulated += report.simulated;
        self.checks += report.checks;
        self.crashes += report.faults.crashes;
        self.pauses += report.faults.pauses;
        self.partitions += report.faults.partitions;
        self.disk_stalls += report.faults.disk_stalls;
        self.admin_operations += report.faults.admin_operations;
        self.messages += report.network.sent;
        self.dropped += report.network.dropped;
        self.duplicated += report.network.duplicated;
        self.committed += report.committed;
        self.terms_led += report.terms_led as u64;
        self.isr_changes_asked += report.isr_changes_asked;
        self.slowest_recovery = self.slowest_recovery.max(report.recovered_after);
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} seeds, {} steps, {:.0?} simulated, {} invariant checks; faults: {} crashes, {} \
             pauses, {} partitions, {} disk stalls, {} messages dropped and {} duplicated of \
             {}; {} admin \
             operations, {} ISR changes asked, {} entries committed, {} Raft terms led; \
             slowest recovery {:?}",
            self.seeds,
            self.steps,
            self.simulated,
            self.checks,
            self.crashes,
            self.pauses,
            self.partitions,
            self.disk_stalls,
            self.dropped,
            self.duplicated,
            self.messages,
            self.admin_operations,
            self.isr_changes_asked,
            self.committed,
            self.terms_led,
            self.slowest_recovery,
        )
    }
}

/// Runs `seeds` on `threads` threads; the first failure (lowest seed among those that
/// failed before the others stopped) ends the sweep.
pub fn sweep(seeds: Range<u64>, threads: usize, options: &Options) -> Result<Summary, Failure> {
    let next = AtomicU64::new(seeds.start);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        return;
                    }
                    // A panic (raft-rs asserts its invariants so) fails its seed like a
                    // broken invariant does, and names it.
                    let outcome = catch_unwind(AssertUnwindSafe(|| run(seed, options)))
                        .unwrap_or_else(|panic| Err(Failure::panicked(seed, panic.as_ref())));
                    match outcome {
                        Ok(report) => summary.lock().expect("summary").add(&report),
                        Err(failure) => {
                            failures.lock().expect("failures").push(failure);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("failures");
    failures.sort_by_key(|failure| failure.seed);
    match failures.into_iter().next() {
        Some(failure) => Err(failure),
        None => Ok(summary.into_inner().expect("summary")),
    }
}
