//! The phases of a load run: topic, optional backlog, consumers (waited for until they hold
//! every partition), producers, warm-up, measurement, drain, result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;

use super::consumer::{self, ConsumerHandle};
use super::gaps::AckGaps;
use super::monitor::{format_ms, Monitor, Phase};
use super::output::{self, Latency, LoadResult, Rates, RunInfo, Totals};
use super::pacing::Schedule;
use super::producer::{self, Plan};
use super::stats::{LatencySummary, Recorder};
use super::{topic, LoadArgs};

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Longest wait for the consumer group to hold every partition before the clock starts.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest drain after the window: producers flush (bounded by their own timeout) and
/// consumers read what was produced in the window.
const DRAIN_SECONDS_MAX: u64 = 40;
const DRAIN_IDLE_SECONDS_MAX: u64 = 5;

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    args.validate()?;
    clock_start();
    let run_id = new_run_id();
    let started_unix_ms = unix_ms();
    eprintln!(
        "load: {} producers, {} consumers, {} B records, rate {}, {} s + {} s warm-up, against {}",
        args.producers,
        args.consumers,
        args.record_bytes,
        if args.rate == 0 {
            "max".to_string()
        } else {
            format!("{}/s", args.rate)
        },
        args.seconds,
        args.warmup_seconds,
        args.bootstrap
    );
    let partitions = topic::ensure(&args)?;
    // Latency is recorded only for records intended after the warm-up; not yet scheduled.
    let measured_from_ns = Arc::new(AtomicU64::new(u64::MAX));
    let new_recorder = || Arc::new(Recorder::new(Arc::clone(&measured_from_ns)));

    let mut backlog_recorders = Vec::new();
    let (backlog_records, backlog_bytes) = if args.catch_up {
        produce_backlog(&args, run_id, &mut backlog_recorders, &new_recorder)?
    } else {
        (0, 0)
    };
    if args.catch_up && args.drop_caches {
        drop_page_cache();
    }

    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("petrel-bench-{run_id:016x}"));
    let consumer_stop = Arc::new(AtomicBool::new(false));
    let consumer_recorders: Vec<_> = (0..args.consumers).map(|_| new_recorder()).collect();
    let mut consumers = Vec::new();
    for (index, recorder) in consumer_recorders.iter().enumerate() {
        let stop = Arc::clone(&consumer_stop);
        let recorder = Arc::clone(recorder);
        consumers.push(consumer::spawn(
            &args, index, &group, run_id, recorder, stop,
        )?);
    }
    wait_for_assignment(&consumers, partitions);

    let start_ns = super::clock::now_ns();
    measured_from_ns.store(
        start_ns + args.warmup_seconds * NANOS_PER_SECOND,
        Ordering::Relaxed,
    );
    let producer_stop = Arc::new(AtomicBool::new(false));
    let gaps = Arc::new(AckGaps::new(partitions, Arc::clone(&measured_from_ns)));
    let producer_recorders: Vec<_> = (0..args.producers).map(|_| new_recorder()).collect();
    let mut producers = Vec::new();
    for (index, recorder) in producer_recorders.iter().enumerate() {
        let plan = Plan {
            schedule: (args.rate > 0)
                .then(|| Schedule::new(start_ns, index, args.producers, args.rate)),
            records_max: None,
            stop: Arc::clone(&producer_stop),
            gaps: Some(Arc::clone(&gaps)),
        };
        let recorder = Arc::clone(recorder);
        producers.push(producer::spawn(&args, index, run_id, recorder, plan)?);
    }

    let mut monitor = Monitor::new(producer_recorders.clone(), consumer_recorders.clone());
    for second in 1..=args.warmup_seconds + args.seconds {
        super::clock::sleep_until_ns(start_ns + second * NANOS_PER_SECOND, Duration::MAX, || {
            false
        });
        monitor.tick(if second <= args.warmup_seconds {
            Phase::Warmup
        } else {
            Phase::Measure
        });
    }
    producer_stop.store(true, Ordering::Relaxed);
    drain(&args, &mut monitor, &producers);
    join_all(producers);
    consumer_stop.store(true, Ordering::Relaxed);
    join_all(consumers.into_iter().map(|c| c.thread));
    monitor.tick(Phase::Drain);

    let errors_of = |recorders: &[Arc<Recorder>]| -> (u64, Vec<String>) {
        let count = recorders.iter().map(|r| r.errors()).sum();
        let messages = recorders.iter().flat_map(|r| r.error_messages()).collect();
        (count, messages)
    };
    let (backlog_errors, mut error_messages) = errors_of(&backlog_recorders);
    let (producer_errors, producer_messages) = errors_of(&producer_recorders);
    let (consume_errors, consumer_messages) = errors_of(&consumer_recorders);
    error_messages.extend(producer_messages);
    error_messages.extend(consumer_messages);

    let measured = monitor.measured;
    let totals = Totals {
        measured_seconds: measured.seconds,
        produced_records: measured.produced.0,
        produced_bytes: measured.produced.1,
        consumed_records: measured.consumed.0,
        consumed_bytes: measured.consumed.1,
        run_produced_bytes: measured.run_produced_bytes + backlog_bytes,
        run_consumed_bytes: measured.run_consumed_bytes,
        backlog_records,
        backlog_bytes,
        delivery_errors: backlog_errors + producer_errors,
        consume_errors,
        longest_ack_gap_ms: gaps.longest_ms(),
    };
    let result = LoadResult {
        schema: output::SCHEMA.to_string(),
        label: args.label.clone(),
        workload: args.workload.clone(),
        bootstrap: args.bootstrap.clone(),
        config: serde_json::to_value(&args)?,
        run: RunInfo {
            started_unix_ms,
            run_id,
            topic_partitions: partitions,
            consumer_group: (args.consumers > 0).then_some(group),
        },
        rates: Rates::of(&totals),
        totals,
        latency: Latency {
            ack: LatencySummary::of(&measured.ack_us),
            e2e: LatencySummary::of(&measured.e2e_us),
        },
        series: measured.series,
        error_messages,
        broker: None,
    };
    print_summary(&result);
    if let Some(path) = &args.json {
        output::write(path, &result)?;
        eprintln!("wrote {}", path.display());
    }
    let errors = result.totals.delivery_errors + result.totals.consume_errors;
    if errors > 0 {
        eprintln!(
            "\n!!!!! RUN HAD ERRORS: {} delivery errors, {} consume errors !!!!!",
            result.totals.delivery_errors, result.totals.consume_errors
        );
        for message in &result.error_messages {
            eprintln!("!!!!! {message}");
        }
        bail!("{errors} errors during the run; the figures above are not trustworthy");
    }
    Ok(())
}

/// Produces `--backlog-bytes` as fast as possible before the consumers start.
fn produce_backlog(
    args: &LoadArgs,
    run_id: u64,
    recorders: &mut Vec<Arc<Recorder>>,
    new_recorder: &impl Fn() -> Arc<Recorder>,
) -> anyhow::Result<(u64, u64)> {
    let records_total = args.backlog_bytes.div_ceil(args.record_bytes as u64);
    eprintln!(
        "backlog: producing {records_total} records ({} bytes)",
        args.backlog_bytes
    );
    let producers_count = args.producers as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for index in 0..args.producers {
        let share = records_total / producers_count
            + u64::from((index as u64) < records_total % producers_count);
        let recorder = new_recorder();
        recorders.push(Arc::clone(&recorder));
        let plan = Plan {
            schedule: None,
            records_max: Some(share),
            stop: Arc::clone(&stop),
            gaps: None,
        };
        threads.push(producer::spawn(args, index, run_id, recorder, plan)?);
    }
    let mut monitor = Monitor::new(recorders.clone(), Vec::new());
    while !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_secs(1));
        monitor.tick(Phase::Backlog);
    }
    join_all(threads);
    monitor.tick(Phase::Backlog);
    let acked_bytes = monitor.measured.run_produced_bytes;
    let acked_records = acked_bytes / args.record_bytes as u64;
    eprintln!("backlog: {acked_records} records acked");
    Ok((acked_records, acked_bytes))
}

/// Writes dirty pages back and empties the page cache; a failure (not root) is reported and
/// the run goes on, since the figures stay valid, only warmer.
#[allow(unsafe_code)] // sync(2) through libc: the bench crate's one unsafe block
fn drop_page_cache() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => eprintln!("backlog: page cache dropped"),
        Err(e) => eprintln!("WARNING: could not drop the page cache: {e}"),
    }
}

/// Waits (bounded) until the group holds every partition, so the first produced records
/// are not missed by a consumer still joining (with `latest`) or read late (with `earliest`).
fn wait_for_assignment(consumers: &[ConsumerHandle], partitions: usize) {
    if consumers.is_empty() {
        return;
    }
    let deadline = std::time::Instant::now() + ASSIGNMENT_TIMEOUT;
    loop {
        let assigned: usize = consumers
            .iter()
            .map(|c| c.assigned_partitions.load(Ordering::Relaxed))
            .sum();
        if assigned >= partitions {
            eprintln!("consumers hold all {partitions} partitions");
            return;
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "WARNING: consumers hold {assigned} of {partitions} partitions after \
                 {ASSIGNMENT_TIMEOUT:?}; starting anyway"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After the window: keep ticking until producers have flushed and consumers have read what
/// was produced in the window (not waited for in catch-up, whose consumers are behind by
/// design), at most `DRAIN_SECONDS_MAX`, and no longer than `DRAIN_IDLE_SECONDS_MAX` seconds
/// of consumers reading nothing once the producers are done.
fn drain(args: &LoadArgs, monitor: &mut Monitor, producers: &[JoinHandle<()>]) {
    let mut idle_seconds = 0;
    for _ in 0..DRAIN_SECONDS_MAX {
        let producers_done = producers.iter().all(|p| p.is_finished());
        let measured = &monitor.measured;
        let consumers_done = args.consumers == 0
            || args.catch_up
            || measured.e2e_us.len() >= measured.ack_us.len()
            || idle_seconds >= DRAIN_IDLE_SECONDS_MAX;
        if producers_done && consumers_done {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
        monitor.tick(Phase::Drain);
        if producers_done && monitor.consumed_records_last == 0 {
            idle_seconds += 1;
        } else {
            idle_seconds = 0;
        }
    }
    eprintln!("drain: stopped after {DRAIN_SECONDS_MAX} s");
}

fn join_all(threads: impl IntoIterator<Item = JoinHandle<()>>) {
    for thread in threads {
        if thread.join().is_err() {
            eprintln!("a client thread panicked");
        }
    }
}

fn print_summary(result: &LoadResult) {
    let rates = &result.rates;
    println!(
        "produce: {:.0} rec/s, {:.2} MB/s ({} records in {:.1} s)",
        rates.produce_records_per_second,
        rates.produce_mb_per_second,
        result.totals.produced_records,
        result.totals.measured_seconds
    );
    println!(
        "consume: {:.0} rec/s, {:.2} MB/s ({} records)",
        rates.consume_records_per_second,
        rates.consume_mb_per_second,
        result.totals.consumed_records
    );
    println!(
        "longest time a partition went without an ack: {:.0} ms",
        result.totals.longest_ack_gap_ms
    );
    for (name, summary) in [("ack", &result.latency.ack), ("e2e", &result.latency.e2e)] {
        match summary {
            Some(s) => println!(
                "{name} latency: p50 {} p99 {} p99.9 {} p99.99 {} max {} mean {:.2} ms ({} records)",
                format_ms(Some(s.p50_us)),
                format_ms(Some(s.p99_us)),
                format_ms(Some(s.p999_us)),
                format_ms(Some(s.p9999_us)),
                format_ms(Some(s.max_us)),
                s.mean_us / 1_000.0,
                s.count
            ),
            None => println!("{name} latency: none measured"),
        }
    }
}

fn clock_start() {
    super::clock::now_ns();
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Distinguishes this run's records from earlier runs' on a reused topic; needs only to
/// differ between runs, not to be unpredictable.
fn new_run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    super::record::XorShift::new(nanos ^ u64::from(std::process::id()) << 32).next_u64()
}
