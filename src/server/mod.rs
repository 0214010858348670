//! The Kafka server edge of a shard: accepting connections, reading pipelined requests,
//! dispatching them through the API registry, and writing responses in order.
//!
//! - `connection`: one client connection (framing, limits, timeouts, in-order replies).
//! - `registry`: the single table of supported APIs, their version ranges, and dispatch.
//! - `handlers/<api>.rs`: one file per Kafka API.
//! - `errors`: storage and shard errors mapped to Kafka error codes (only here, at the edge).
//! - `turn`: keeps each connection's requests in arrival order where order matters.

pub mod connection;
pub mod errors;
pub mod handlers;
pub mod registry;
pub mod turn;

use std::rc::Rc;

use crate::shard::Shard;

/// Wall-clock milliseconds since the Unix epoch (Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Accepts connections until the shard shuts down. Errors such as EMFILE end one accept,
/// never the loop. Connections beyond this shard's share of `connections_max` are closed
/// at once.
pub async fn accept_loop(shard: Rc<Shard>, listener: glommio::net::TcpListener) {
    let share = shard.config.connections_max.div_ceil(shard.count);
    let mut refused = 0u64;
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let stop = shard.shutdown_started.listen();
        if shard.shutting_down.get() {
            return;
        }
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.await;
            None
        })
        .await;
        let Some(accepted) = accepted else {
            return;
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(shard = shard.id, %error, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.connections.get() >= share {
            // Once a second at most: a flood of connections must not flood the log too.
            refused += 1;
            if last_warning.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1)) {
                tracing::warn!(
                    shard = shard.id,
                    limit = share,
                    refused,
                    "connection limit reached; closing new connections"
                );
                last_warning = Some(std::time::Instant::now());
                refused = 0;
            }
            drop(stream);
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let connection_shard = shard.clone();
        glommio::spawn_local(async move {
            connection::serve(connection_shard.clone(), stream).await;
            connection_shard
                .connections
                .set(connection_shard.connections.get() - 1);
            connection_shard.connection_closed.notify(usize::MAX);
        })
        .detach();
    }
}
