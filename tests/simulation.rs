//! The control-plane simulation (`petrel::simulation`) over a few thousand seeds: every
//! seed must keep every invariant after every step, and recover once its faults end. A
//! failing seed names itself and the command that replays it. Millions of seeds are a
//! command: `cargo run --release -- simulate --seeds 1000000`.

use petrel::simulation::{sweep, Options};

/// Seeds per CI run (each a minute of simulated cluster life); `PETREL_SIMULATION_SEEDS`
/// sets another count.
const SEEDS: u64 = 3000;

#[test]
fn every_seed_keeps_the_invariants_and_recovers() {
    let seeds = std::env::var("PETREL_SIMULATION_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(SEEDS);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = std::time::Instant::now();
    match sweep(0..seeds, threads, &Options::default()) {
        Ok(summary) => {
            assert_eq!(summary.seeds, seeds);
            assert!(summary.crashes > 0 && summary.partitions > 0 && summary.dropped > 0);
            assert!(summary.disk_stalls > 0 && summary.admin_operations > 0);
            println!("simulation: {summary}, in {:.1?}", started.elapsed());
        }
        Err(failure) => panic!("{failure}"),
    }
}
