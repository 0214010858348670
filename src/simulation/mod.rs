//! A deterministic simulation of the control plane (FoundationDB's and TigerBeetle's
//! simulators are the model): the metadata quorum (raft-rs), the controller, broker
//! membership, elections, ISR changes and reassignment of N nodes, in one thread, under a
//! seeded clock, a simulated network that drops, delays, duplicates and reorders messages
//! and partitions nodes, and simulated disks that lose what was not synced when a node
//! crashes and now and then stall a sync for seconds. The code under test is the broker's
//! own: `cluster::quorum::core`, `cluster::node` and `cluster::controller`; only I/O and
//! time are simulated.
//!
//! Every choice comes from the seed, so a failing seed replays exactly:
//! `cargo run --release -- simulate --seed N --trace`. Invariants are checked after every
//! step (`checks`); recovery once the faults end (`world`).
//!
//! - `world`: the event loop, the faults, the admin client, recovery, the report;
//! - `node`: one node's driver, leader, broker and partition-leader sides;
//! - `checks`: the invariants; `network`, `journal`: the simulated links and disk;
//! - `rng`: the seeded randomness; `sweep`: many seeds on several threads.

pub mod checks;
pub mod journal;
pub mod network;
pub mod node;
pub mod rng;
pub mod sweep;
pub mod world;

pub use sweep::{sweep, Summary};
pub use world::{run, Failure, Options, Report};
