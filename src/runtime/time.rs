//! Time: every timer, timeout and deadline of the broker goes through here, so one place
//! decides what "now" is and when a sleep ends. A test replaces its thread's clock with a
//! [`FakeClock`]: time then moves only when the test advances it, and a sleep of a minute
//! ends as soon as the test says a minute has passed.
//!
//! - [`now`] (monotonic) and [`now_ms`] (wall clock, Kafka's timestamps);
//! - [`sleep`], [`timeout`] (a future raced against a sleep);
//! - [`Deadline`] and [`wait_until`], the loop "look, and if it is not there yet, wait for
//!   the event that may change it, or the deadline" that several services need.
//!
//! The real clock sleeps with glommio's timers, so it needs a glommio executor; a fake
//! clock needs none (a test may drive it with `futures_lite::future::block_on`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::Event;

thread_local! {
    /// The fake clock installed on this thread, if any (`FakeClock::install`).
    static FAKE: RefCell<Option<Rc<FakeClock>>> = const { RefCell::new(None) };
}

fn fake() -> Option<Rc<FakeClock>> {
    FAKE.with(|fake| fake.borrow().clone())
}

/// Monotonic now.
pub fn now() -> Instant {
    match fake() {
        Some(clock) => clock.now(),
        None => Instant::now(),
    }
}

/// Wall-clock milliseconds since the Unix epoch (Kafka timestamps). A clock set before 1970
/// reads as 0 rather than failing.
pub fn now_ms() -> i64 {
    if let Some(clock) = fake() {
        return clock.now_ms();
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A sleep of `duration` on this thread's clock.
pub fn sleep(duration: Duration) -> Sleep {
    match fake() {
        Some(clock) => Sleep::Fake(clock.sleep(duration)),
        None => Sleep::Real(glommio::timer::Timer::new(duration)),
    }
}

/// A sleep until `at` on this thread's clock (at once if it has passed).
pub fn sleep_until(at: Instant) -> Sleep {
    sleep(at.saturating_duration_since(now()))
}

/// The sleep [`sleep`] returns.
pub enum Sleep {
    Real(glommio::timer::Timer),
    Fake(FakeSleep),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Real(timer) => Pin::new(timer).poll(context).map(drop),
            Sleep::Fake(sleep) => Pin::new(sleep).poll(context),
        }
    }
}

/// A timeout ran out before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Elapsed;

/// Runs `work` for at most `within`; `Err(Elapsed)` (and `work` dropped) if it takes
/// longer. Use only with work that is safe to cancel.
pub async fn timeout<T>(within: Duration, work: impl Future<Output = T>) -> Result<T, Elapsed> {
    futures_lite::future::or(async { Ok(work.await) }, async {
        sleep(within).await;
        Err(Elapsed)
    })
    .await
}

/// A point in time that work must finish by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// `within` from now.
    pub fn after(within: Duration) -> Deadline {
        Deadline { at: now() + within }
    }

    pub fn at(at: Instant) -> Deadline {
        Deadline { at }
    }

    pub fn instant(&self) -> Instant {
        self.at
    }

    /// What is left of it (zero once it has passed).
    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(now())
    }

    pub fn passed(&self) -> bool {
        now() >= self.at
    }

    /// Runs `work` until the deadline; `Err(Elapsed)` if it is not done by then.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Result<T, Elapsed> {
        timeout(self.left(), work).await
    }
}

/// Waits until `check` finds what it looks for (`Some`), looking again each time `event`
/// fires, or until `deadline` (`Err(Elapsed)`). A notification is only a reason to look
/// again: `check` decides. The listener is taken before each look, so a notification
/// between the look and the wait is not missed.
pub async fn wait_until<T>(
    event: &Event,
    deadline: Deadline,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Elapsed> {
    loop {
        let listener = event.listen();
        if let Some(found) = check() {
            return Ok(found);
        }
        let left = deadline.left();
        if left.is_zero() {
            return Err(Elapsed);
        }
        futures_lite::future::or(listener, sleep(left)).await;
    }
}

/// A clock that moves only when told to (`advance`), for tests. Installed per thread; every
/// function of this module on that thread reads and sleeps on it until the guard returned
/// by [`FakeClock::install`] is dropped.
pub struct FakeClock {
    start: Instant,
    wall_start_ms: i64,
    elapsed: Cell<Duration>,
    /// Sleeps not yet over: (end, id) -> the waker of the task sleeping.
    sleepers: RefCell<BTreeMap<(Duration, u64), Option<Waker>>>,
    next_id: Cell<u64>,
}

/// Keeps a fake clock installed on this thread; the real clock returns when it is dropped.
pub struct FakeClockGuard {
    clock: Rc<FakeClock>,
}

impl FakeClockGuard {
    pub fn clock(&self) -> &Rc<FakeClock> {
        &self.clock
    }
}

impl Drop for FakeClockGuard {
    fn drop(&mut self) {
        FAKE.with(|fake| fake.borrow_mut().take());
    }
}

impl FakeClock {
    /// Installs a fake clock on this thread, starting at the real now.
    pub fn install() -> FakeClockGuard {
        let clock = Rc::new(FakeClock {
            start: Instant::now(),
            wall_start_ms: 1_700_000_000_000,
            elapsed: Cell::new(Duration::ZERO),
            sleepers: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
        });
        FAKE.with(|fake| {
            let previous = fake.borrow_mut().replace(clock.clone());
            assert!(previous.is_none(), "a fake clock is already installed");
        });
        FakeClockGuard { clock }
    }

    pub fn now(&self) -> Instant {
        self.start + self.elapsed.get()
    }

    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.elapsed.get().as_millis()).unwrap_or(i64::MAX);
        self.wall_start_ms.saturating_add(elapsed)
    }

    /// Moves time on by `by` and wakes every sleep that has ended.
    pub fn advance(&self, by: Duration) {
        let now = self.elapsed.get() + by;
        self.elapsed.set(now);
        let ended: Vec<Waker> = {
            let mut sleepers = self.sleepers.borrow_mut();
            let later = sleepers.split_off(&(now, u64::MAX));
            let ended = std::mem::replace(&mut *sleepers, later);
            ended.into_values().flatten().collect()
        };
        for waker in ended {
            waker.wake();
        }
    }

    /// When the earliest sleep not yet over ends, if any sleeps.
    pub fn next_wake(&self) -> Option<Instant> {
        let sleepers = self.sleepers.borrow();
        let ((end, _), _) = sleepers.iter().next()?;
        Some(self.start + *end)
    }

    fn sleep(self: &Rc<Self>, duration: Duration) -> FakeSleep {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let end = self.elapsed.get() + duration;
        self.sleepers.borrow_mut().insert((end, id), None);
        FakeSleep {
            clock: self.clone(),
            end,
            id,
        }
    }
}

/// A sleep on a [`FakeClock`].
pub struct FakeSleep {
    clock: Rc<FakeClock>,
    end: Duration,
    id: u64,
}

impl Future for FakeSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.clock.elapsed.get() >= self.end {
            return Poll::Ready(());
        }
        let key = (self.end, self.id);
        if let Some(waker) = self.clock.sleepers.borrow_mut().get_mut(&key) {
            *waker = Some(context.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for FakeSleep {
    fn drop(&mut self) {
        self.clock
            .sleepers
            .borrow_mut()
            .remove(&(self.end, self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, yield_now, zip};

    #[test]
    fn a_fake_clock_moves_only_when_advanced_and_ends_sleeps_in_order() {
        let guard = FakeClock::install();
        let clock = guard.clock().clone();
        let start = now();
        let order = Rc::new(RefCell::new(Vec::new()));
        let sleeper = |name: &'static str, seconds: u64| {
            let order = order.clone();
            async move {
                sleep(Duration::from_secs(seconds)).await;
                order.borrow_mut().push(name);
            }
        };
        let sleepers = zip(sleeper("long", 60), sleeper("short", 1));
        block_on(zip(sleepers, async {
            yield_now().await;
            assert_eq!(now(), start, "nothing moves by itself");
            assert_eq!(clock.next_wake(), Some(start + Duration::from_secs(1)));
            clock.advance(Duration::from_secs(30));
            yield_now().await;
            assert_eq!(*order.borrow(), vec!["short"]);
            clock.advance(Duration::from_secs(30));
        }));
        assert_eq!(*order.borrow(), vec!["short", "long"]);
        assert_eq!(now() - start, Duration::from_secs(60));
        assert_eq!(now_ms() - clock.wall_start_ms, 60_000);
        assert_eq!(clock.next_wake(), None, "no sleeper left behind");
    }

    #[test]
    fn a_timeout_ends_work_that_outlasts_it_and_keeps_work_that_does_not() {
        let guard = FakeClock::install();
        let clock = guard.clock().clone();
        assert_eq!(
            block_on(timeout(Duration::from_secs(5), async { 7 })),
            Ok(7)
        );
        let slow = timeout(
            Duration::from_secs(5),
            futures_lite::future::pending::<()>(),
        );
        let (outcome, ()) = block_on(zip(slow, async {
            yield_now().await;
            clock.advance(Duration::from_secs(5));
        }));
        assert_eq!(outcome, Err(Elapsed));
    }

    #[test]
    fn wait_until_looks_again_on_each_event_and_gives_up_at_the_deadline() {
        let guard = FakeClock::install();
        let clock = guard.clock().clone();
        let event = Event::new();
        let value = Cell::new(0);
        let deadline = Deadline::after(Duration::from_secs(10));
        let waiter = wait_until(&event, deadline, || {
            (value.get() >= 2).then_some(value.get())
        });
        let loser = wait_until(&event, deadline, || (value.get() >= 100).then_some(()));
        let ((found, lost), ()) = block_on(zip(zip(waiter, loser), async {
            yield_now().await;
            value.set(1);
            event.notify(usize::MAX);
            yield_now().await;
            value.set(2);
            event.notify(usize::MAX);
            yield_now().await;
            clock.advance(Duration::from_secs(10));
        }));
        assert_eq!(found, Ok(2));
        assert_eq!(lost, Err(Elapsed));
    }
}
