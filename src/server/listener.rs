//! The accept loop of one shard on one client listener (every shard listens on each
//! listener's port, SO_REUSEPORT).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connection;
use crate::runtime::net::Listener;
use crate::runtime::time;
use crate::shard::Shard;

/// Accepts connections until the shard shuts down. Errors such as EMFILE end one accept,
/// never the loop. Connections beyond this shard's share of `connections_max` are closed
/// at once. `index`: which of the broker's listeners (`config.listeners.all`) this is.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener, index: usize) {
    let share = shard.config.connections_max.div_ceil(shard.count);
    let mut refused = 0u64;
    let mut last_warning: Option<Instant> = None;
    while let Some(accepted) = shard.shutdown.or_stopped(listener.accept()).await {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(shard = shard.id, %error, "accept failed");
                time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.connections.get() >= share {
            // Once a second at most: a flood of connections must not flood the log too.
            refused += 1;
            if last_warning.is_none_or(|at: Instant| time::now() - at >= Duration::from_secs(1)) {
                tracing::warn!(
                    shard = shard.id,
                    limit = share,
                    refused,
                    "connection limit reached; closing new connections"
                );
                last_warning = Some(time::now());
                refused = 0;
            }
            drop(stream);
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let connection_shard = shard.clone();
        crate::runtime::spawn(async move {
            connection::serve(connection_shard.clone(), stream, index).await;
            connection_shard
                .connections
                .set(connection_shard.connections.get() - 1);
            connection_shard.connection_closed.notify(usize::MAX);
        })
        .detach();
    }
}
