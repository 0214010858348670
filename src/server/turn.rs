//! Request order on one connection. Kafka handles a connection's requests in the order they
//! arrive, and producers rely on it: two pipelined produce requests for one partition must
//! append in request order. Each request gets a [`Turn`] in a per-connection chain: it waits
//! until the previous request has passed its ordered phase, and lets the next one go when
//! its own ordered phase ends (or when the turn is dropped).
//!
//! What each API counts as its ordered phase is decided in `registry::dispatch`; produce
//! releases after its appends, so durability waits (fsync) of successive requests overlap.

use futures_channel::oneshot;

pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    next: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// The first turn of a connection, and the receiver the second turn waits on.
    pub fn chain(previous: Option<oneshot::Receiver<()>>) -> (Turn, oneshot::Receiver<()>) {
        let (next, following) = oneshot::channel();
        (
            Turn {
                previous,
                next: Some(next),
            },
            following,
        )
    }

    /// Resolves once every earlier request has released its turn.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Dropped without a send also means released.
            let _ = previous.await;
        }
    }

    /// Lets the next request go.
    pub fn release(&mut self) {
        if let Some(next) = self.next.take() {
            let _ = next.send(());
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_pass_in_order_and_dropping_releases() {
        futures_lite::future::block_on(async {
            let (mut first, after_first) = Turn::chain(None);
            let (mut second, after_second) = Turn::chain(Some(after_first));
            let (mut third, _) = Turn::chain(Some(after_second));
            first.wait().await;
            // The second cannot go before the first releases.
            assert!(futures_lite::future::poll_once(second.wait())
                .await
                .is_none());
            first.release();
            second.wait().await;
            drop(second);
            third.wait().await;
        });
    }
}
