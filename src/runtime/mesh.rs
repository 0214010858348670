//! Messages between shards. Each shard has one bounded inbox (`async_channel`, capacity
//! [`INBOX_CAPACITY`]). A message is a `Send` closure that runs on the target shard with
//! that shard's context `C` and answers through a oneshot ([`Mesh::run_on`]). Only `Send`
//! data crosses: record data as `bytes::Bytes`, names as `String`, snapshots as `Arc`.
//!
//! **Architecture invariant: no cross-shard deadlock.** The inbox loop ([`serve_inbox`])
//! never awaits anything but its next message (each job runs as its own task), so a shard
//! waiting for another can never block that other's inbox, and no cycle of waits can form.
//! glommio's `channel_mesh` (an `Rc` behind `unsafe impl Send`) is not used.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// Jobs queued for one shard before senders wait.
pub const INBOX_CAPACITY: usize = 1024;

/// A unit of work sent to a shard: runs there, on its executor, with its context.
pub type Job<C> = Box<dyn FnOnce(Rc<C>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is gone (shutting down)")]
pub struct ShardGone(pub usize);

/// One bounded inbox per shard: the senders (for the mesh and the main thread) and the
/// receivers (one for each shard's [`serve_inbox`]), in shard order.
pub type Inboxes<C> = (
    Vec<async_channel::Sender<Job<C>>>,
    Vec<async_channel::Receiver<Job<C>>>,
);

pub fn inboxes<C>(shards: usize) -> Inboxes<C> {
    (0..shards)
        .map(|_| async_channel::bounded::<Job<C>>(INBOX_CAPACITY))
        .unzip()
}

/// One shard's view of every shard's inbox. Cheap to clone.
pub struct Mesh<C> {
    id: usize,
    peers: Rc<[async_channel::Sender<Job<C>>]>,
}

impl<C> Clone for Mesh<C> {
    fn clone(&self) -> Self {
        Mesh {
            id: self.id,
            peers: self.peers.clone(),
        }
    }
}

impl<C: 'static> Mesh<C> {
    pub fn new(id: usize, peers: Vec<async_channel::Sender<Job<C>>>) -> Mesh<C> {
        debug_assert!(id < peers.len());
        Mesh {
            id,
            peers: peers.into(),
        }
    }

    /// This shard's id.
    pub fn id(&self) -> usize {
        self.id
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.peers.len()
    }

    /// Runs `job` on shard `target` and returns its result; `here` is this shard's context,
    /// used when `target` is this shard (the job then runs inline).
    pub async fn run_on<T, F, Fut>(
        &self,
        here: &Rc<C>,
        target: usize,
        job: F,
    ) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<C>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(job(here.clone()).await);
        }
        let (reply, answer) = futures_channel::oneshot::channel();
        let boxed: Job<C> = Box::new(move |context| {
            Box::pin(async move {
                // The asker may have given up (its connection closed); nothing to do then.
                let _ = reply.send(job(context).await);
            })
        });
        let peer = self.peers.get(target).ok_or(ShardGone(target))?;
        peer.send(boxed).await.map_err(|_| ShardGone(target))?;
        answer.await.map_err(|_| ShardGone(target))
    }

    /// Runs `job(context, part)` for every `(shard id, part)` on that shard, all at once,
    /// and returns the results in the order of `parts`.
    pub async fn run_on_each<P, T, F, Fut>(
        &self,
        here: &Rc<C>,
        parts: Vec<(usize, P)>,
        job: F,
    ) -> Result<Vec<T>, ShardGone>
    where
        P: Send + 'static,
        T: Send + 'static,
        F: Fn(Rc<C>, P) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let runs: Vec<_> = parts
            .into_iter()
            .map(|(target, part)| {
                let (mesh, here, job) = (self.clone(), here.clone(), job.clone());
                glommio::spawn_local(async move {
                    mesh.run_on(&here, target, move |owner| job(owner, part))
                        .await
                })
            })
            .collect();
        let mut results = Vec::with_capacity(runs.len());
        for run in runs {
            results.push(run.await?);
        }
        Ok(results)
    }
}

/// A shard's inbox loop: spawns every job it receives as its own task and awaits nothing
/// else (see the invariant above). Ends when every sender is gone.
pub async fn serve_inbox<C: 'static>(context: Rc<C>, inbox: async_channel::Receiver<Job<C>>) {
    while let Ok(job) = inbox.recv().await {
        glommio::spawn_local(job(context.clone())).detach();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// Cross-shard replies wake a shard's task from another thread, and that thread may drop
    /// the task's last waker just as the task completes and its `JoinHandle` is dropped (what
    /// `run_on_each` does for every part). Upstream glommio 0.9.0 let the count pass through
    /// zero there and freed the task under the foreign waker; a shard then hung on a garbage
    /// futex (vendor/glommio/PETREL-PATCHES.md). This drives that interleaving many times,
    /// with the foreign drop jittered over the owner's drop of the `JoinHandle`.
    #[test]
    fn a_task_outlives_a_waker_dropped_on_another_thread() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::mpsc;
        use std::task::{Poll, Waker};
        use std::time::Duration;

        const ROUNDS: usize = 30_000;
        let (to_foreign, foreign_inbox) = mpsc::sync_channel::<(Waker, Arc<AtomicBool>)>(1);
        let foreign = std::thread::spawn(move || {
            let mut jitter: u32 = 0x9e37_79b9;
            for (waker, ready) in foreign_inbox {
                ready.store(true, Ordering::Release);
                waker.wake_by_ref();
                // xorshift: spin 0..4095 rounds so the drop sweeps over the owner's work.
                jitter ^= jitter << 13;
                jitter ^= jitter >> 17;
                jitter ^= jitter << 5;
                for _ in 0..(jitter % 4096) {
                    std::hint::spin_loop();
                }
                drop(waker);
            }
        });
        let completed = Arc::new(AtomicUsize::new(0));
        let counted = completed.clone();
        let (finished_tx, finished) = mpsc::channel();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spin_before_park(Duration::from_millis(10))
            .spawn(move || async move {
                for _ in 0..ROUNDS {
                    let ready = Arc::new(AtomicBool::new(false));
                    let (sender, flag) = (to_foreign.clone(), ready.clone());
                    let mut sent = false;
                    let task = glommio::spawn_local(futures_lite::future::poll_fn(move |cx| {
                        if flag.load(Ordering::Acquire) {
                            return Poll::Ready(());
                        }
                        if !sent {
                            sent = true;
                            let _ = sender.send((cx.waker().clone(), flag.clone()));
                        }
                        Poll::Pending
                    }));
                    task.await;
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                let _ = finished_tx.send(());
            })
            .expect("executor starts");
        // A freed task shows as a panic on either thread or as a hung executor; don't wait
        // out the deadline when the foreign thread has already died.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while finished.recv_timeout(Duration::from_millis(100)).is_err() {
            let rounds = completed.load(Ordering::Relaxed);
            assert!(
                !foreign.is_finished(),
                "the foreign thread died after {rounds} of {ROUNDS} rounds"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the executor stopped after {rounds} of {ROUNDS} rounds"
            );
        }
        foreign.join().expect("the foreign thread ends");
    }
}
