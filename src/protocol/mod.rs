//! The Kafka wire protocol at Petrel's edge. Sans-I/O: bytes in, typed values out.
//!
//! - `consumer`: the consumer protocol's subscription, as a group member's metadata holds it.
//! - `frame`: the 4-byte size prefix (capped before anything is allocated) and the request
//!   header.
//! - `response`: encoding a response with its header and size prefix.
//! - `records`: record-level lookups inside a stored batch (ListOffsets by timestamp).
//! - `replica_fetch`: the Fetch a follower sends its leader, and the answer it reads.
//!
//! Message bodies use the `kafka-protocol` crate (patched copy in `vendor/`).

pub mod consumer;
pub mod frame;
pub mod records;
pub mod replica_fetch;
pub mod response;
