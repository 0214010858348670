//! The Kafka server edge of a shard: accepting connections, reading pipelined requests,
//! dispatching them through the API table, and writing responses in order. The only layer
//! that speaks Kafka error codes.
//!
//! - `listener`: the accept loop (per-shard share of `connections_max`).
//! - `connection`: one client connection (framing, limits, timeouts, in-order replies).
//! - `registry`: the one table of supported APIs (key, versions, ordering, handler), from
//!   which ApiVersions, dispatch and the decoder test are derived.
//! - `exchange`: decoding a request body and encoding a response; what handlers return.
//! - `fanout`: splitting a per-partition request over the owning shards and putting the
//!   answers back in request order.
//! - `handlers/<api>.rs`: one file per Kafka API.
//! - `measure`: requests and their duration per API (the metrics seam).
//! - `errors`: domain errors mapped to Kafka error codes (only here, at the edge).
//! - `turn`: keeps each connection's requests in arrival order where order matters.

pub mod authentication;
pub mod connection;
pub mod errors;
pub mod exchange;
pub mod fanout;
pub mod handlers;
pub mod listener;
pub mod measure;
pub mod quota;
pub mod registry;
pub mod turn;

pub use listener::accept_loop;
