//! A cluster node's control-plane logic, without I/O (Redpanda's `members_manager` and
//! `topics_frontend` in spirit): what nodes say to each other (`rpc`), the catalogue they
//! apply (`catalogue`), and what the metadata quorum's leader decides about brokers'
//! membership (`members`), ISR changes (`isr`) and each call (`leader`). Every decision
//! takes the catalogue, the request and `now`, and returns records to propose; the shard
//! layer (`shard::cluster`) runs them with the quorum, the links and the clock, and the
//! control-plane simulation (`crate::simulation`) runs the same functions under a
//! simulated clock and network.

pub mod catalogue;
pub mod isr;
pub mod leader;
pub mod members;
pub mod rpc;
