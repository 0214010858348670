//! The shutdown signal of one shard: a flag that stays set, and an event that wakes every
//! loop waiting on something else (accepting, reading a connection, the retention timer).

use std::cell::Cell;
use std::future::Future;

use event_listener::Event;

#[derive(Default)]
pub struct Shutdown {
    started: Cell<bool>,
    event: Event,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the shutdown: every current and later `or_stopped` returns `None`.
    pub fn begin(&self) {
        self.started.set(true);
        self.event.notify(usize::MAX);
    }

    pub fn is_started(&self) -> bool {
        self.started.get()
    }

    /// Runs `work` until it completes (`Some`) or shutdown begins (`None`, and `work` is
    /// dropped). Use only with work that is safe to cancel.
    pub async fn or_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        // Listen before checking the flag, so a `begin` between the two is not missed.
        let stop = self.event.listen();
        if self.started.get() {
            return None;
        }
        futures_lite::future::or(async { Some(work.await) }, async {
            stop.await;
            None
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_stops_when_shutdown_begins_and_later_work_never_starts() {
        let shutdown = std::rc::Rc::new(Shutdown::new());
        futures_lite::future::block_on(async {
            assert_eq!(shutdown.or_stopped(async { 7 }).await, Some(7));
            let waiting = shutdown.or_stopped(futures_lite::future::pending::<()>());
            let stopper = async {
                futures_lite::future::yield_now().await;
                shutdown.begin();
            };
            let (stopped, ()) = futures_lite::future::zip(waiting, stopper).await;
            assert_eq!(stopped, None);
            assert!(shutdown.is_started());
            assert_eq!(shutdown.or_stopped(async { 7 }).await, None);
        });
    }
}
