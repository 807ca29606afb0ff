//! The few primitives that differ between executors: the clock, a timer and
//! a thread to run blocking predicates on. Nothing else of the crate is
//! used here but `crate::hooks::clock`, the testing kit's manual-clock indirection.
//!
//! The backend is detected at run time, never configured: a live tokio
//! runtime on this thread means tokio's timer (so `tokio::time::pause()`
//! and `advance()` act on scopes as they act on `tokio::time::timeout`) and
//! tokio's blocking pool; anything else — async-std, smol,
//! `futures::executor::block_on` — gets the executor-neutral `async-io`
//! timer and the `blocking` thread pool. No code path that can run outside
//! tokio touches a tokio-only primitive.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The executor family a scope runs on, detected when the scope starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    #[cfg(feature = "tokio")]
    Tokio,
    AsyncIo,
}

/// Which clock a backend's deadlines follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// tokio's clock, which tests can pause and advance.
    #[cfg(feature = "tokio")]
    Tokio,
    Std,
}

impl Clock {
    /// A small number for storing the clock in an atomic (never 0).
    pub(crate) fn number(self) -> u8 {
        match self {
            #[cfg(feature = "tokio")]
            Clock::Tokio => 1,
            Clock::Std => 2,
        }
    }

    /// The clock stored as [`number`](Self::number), if any.
    pub(crate) fn from_number(number: u8) -> Option<Clock> {
        match number {
            #[cfg(feature = "tokio")]
            1 => Some(Clock::Tokio),
            2 => Some(Clock::Std),
            _ => None,
        }
    }

    /// The process clock: the same on every thread and executor (a
    /// runtime cannot pause it), for time kept across threads (see
    /// `crate::seam::time`).
    pub(crate) fn of_process() -> Clock {
        Clock::Std
    }

    /// The clock of the executor running on this thread.
    pub(crate) fn detect() -> Clock {
        Backend::detect().clock()
    }

    /// The current time on this clock (the testing kit's manual clock,
    /// while one is installed).
    pub(crate) fn now(self) -> Instant {
        if let Some(now) = crate::hooks::clock::manual_now() {
            return now;
        }
        match self {
            #[cfg(feature = "tokio")]
            Clock::Tokio => tokio::time::Instant::now().into_std(),
            Clock::Std => Instant::now(),
        }
    }
}

/// `at` plus `by`, saturated instead of overflowing: a point so far after
/// `at` that it is never reached (about 30 years) when the sum cannot be
/// told. What a deadline or a grace of `Duration::MAX` comes to.
pub(crate) fn saturating_add(at: Instant, by: Duration) -> Instant {
    if let Some(sum) = at.checked_add(by) {
        return sum;
    }
    let mut far = Duration::from_secs(30 * 365 * 86_400).min(by);
    loop {
        if let Some(sum) = at.checked_add(far) {
            return sum;
        }
        far /= 2;
    }
}

/// Now, on the clock of the backend detected here: the one clock of the
/// crate (the testing kit's manual clock while one is installed, else
/// tokio's on tokio, else `Instant::now`). Layers read time through this.
///
/// Without the detection: tokio's clock, read where no runtime is entered
/// (or none was ever paused), is `Instant::now`, so it is the clock of
/// whichever backend is detected here.
pub(crate) fn now() -> Instant {
    #[cfg(feature = "tokio")]
    let clock = Clock::Tokio;
    #[cfg(not(feature = "tokio"))]
    let clock = Clock::Std;
    clock.now()
}

impl Backend {
    /// Tokio if a tokio runtime is entered on this thread, `async-io` otherwise.
    pub(crate) fn detect() -> Backend {
        // Inside a tokio task, `try_id` is a plain thread-local read;
        // `Handle::try_current` (for `block_on`, which is not a task)
        // clones the runtime's handle, which worker threads share.
        #[cfg(feature = "tokio")]
        if tokio::task::try_id().is_some() || tokio::runtime::Handle::try_current().is_ok() {
            return Backend::Tokio;
        }
        Backend::AsyncIo
    }

    /// The backend whose clock is `clock`: one clock per backend.
    pub(crate) fn of_clock(clock: Clock) -> Backend {
        match clock {
            #[cfg(feature = "tokio")]
            Clock::Tokio => Backend::Tokio,
            Clock::Std => Backend::AsyncIo,
        }
    }

    pub(crate) fn clock(self) -> Clock {
        match self {
            #[cfg(feature = "tokio")]
            Backend::Tokio => Clock::Tokio,
            Backend::AsyncIo => Clock::Std,
        }
    }

    /// The current time on this backend's clock (tokio's clock can be paused).
    pub(crate) fn now(self) -> Instant {
        self.clock().now()
    }

    /// A timer that fires at `deadline`.
    ///
    /// On tokio the runtime must have its time driver enabled
    /// (`enable_time()` or `enable_all()`); tokio offers no way to ask.
    pub(crate) fn timer(self, deadline: Instant) -> Timer {
        #[cfg(feature = "testing")]
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Timer {
            deadline,
            inner: TimerInner::new(self, deadline),
            #[cfg(feature = "testing")]
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Runs `work` on a thread where blocking is allowed.
    ///
    /// Always the `blocking` crate's pool, whose threads are detached: a
    /// predicate that never returns must not hold up a tokio runtime's
    /// shutdown (tokio waits for its own blocking pool) nor the process's
    /// exit, and the scope that started it has long ended with its reason.
    pub(crate) fn run_blocking<T, F>(self, work: F) -> Blocking<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        Blocking(blocking::unblock(work))
    }
}

/// A one-shot timer that can be moved to another deadline.
///
/// It reports that it fired only when the clock reads at or past its
/// deadline: a backend timer that wakes early, is polled under tokio's
/// spent cooperative budget, or belongs to a runtime that has been dropped
/// never makes it fire early.
pub(crate) struct Timer {
    deadline: Instant,
    inner: TimerInner,
    /// Names it to the testing kit's manual clock, which fires the timers
    /// one advance passed in deadline order.
    #[cfg(feature = "testing")]
    id: u64,
}

#[cfg(feature = "testing")]
impl Drop for Timer {
    fn drop(&mut self) {
        crate::hooks::clock::forget_timer(self.id);
    }
}

enum TimerInner {
    #[cfg(feature = "tokio")]
    Tokio {
        sleep: Pin<Box<tokio::time::Sleep>>,
        runtime: tokio::runtime::Id,
    },
    AsyncIo(async_io::Timer),
}

impl TimerInner {
    /// A timer of `backend`, or of `async-io` if `backend` is tokio but no
    /// tokio runtime is entered on this thread.
    fn new(backend: Backend, deadline: Instant) -> TimerInner {
        match backend {
            #[cfg(feature = "tokio")]
            Backend::Tokio => match tokio::runtime::Handle::try_current() {
                Ok(handle) => TimerInner::Tokio {
                    sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                        deadline,
                    ))),
                    runtime: handle.id(),
                },
                Err(_) => TimerInner::AsyncIo(async_io::Timer::at(deadline)),
            },
            Backend::AsyncIo => TimerInner::AsyncIo(async_io::Timer::at(deadline)),
        }
    }

    fn clock(&self) -> Clock {
        match self {
            #[cfg(feature = "tokio")]
            TimerInner::Tokio { .. } => Clock::Tokio,
            TimerInner::AsyncIo(_) => Clock::Std,
        }
    }

    /// `false` if this is the timer of a tokio runtime other than the one
    /// entered now (or of none): polling it could panic or never fire.
    fn usable_here(&self) -> bool {
        match self {
            #[cfg(feature = "tokio")]
            TimerInner::Tokio { runtime, .. } => {
                tokio::runtime::Handle::try_current().is_ok_and(|handle| handle.id() == *runtime)
            }
            TimerInner::AsyncIo(_) => true,
        }
    }
}

impl Timer {
    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        match &mut self.inner {
            #[cfg(feature = "tokio")]
            TimerInner::Tokio { sleep, .. } => sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline)),
            TimerInner::AsyncIo(timer) => timer.set_at(deadline),
        }
    }

    /// `Ready` once the clock reads at or past the deadline.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Under the testing kit's manual clock, no backend timer: woken
        // when the clock is advanced past the deadline.
        #[cfg(feature = "testing")]
        let id = self.id;
        #[cfg(not(feature = "testing"))]
        let id = 0;
        if let Some(reached) =
            crate::hooks::clock::poll_timer_reached(self.deadline, id, cx.waker())
        {
            return if reached {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        if !self.inner.usable_here() {
            // Its runtime was dropped, or the scope moved to another
            // executor: a timer of whatever runs here now.
            self.inner = TimerInner::new(Backend::detect(), self.deadline);
        }
        // The backend timer may answer before the clock reaches the
        // deadline (a wake-up under tokio's spent budget, a rounding):
        // re-arm and poll it again, a bounded number of times.
        for _ in 0..2 {
            if self.inner.clock().now() >= self.deadline {
                return Poll::Ready(());
            }
            let woke = match &mut self.inner {
                #[cfg(feature = "tokio")]
                TimerInner::Tokio { sleep, .. } => sleep.as_mut().poll(cx),
                TimerInner::AsyncIo(timer) => Pin::new(timer).poll(cx).map(|_| ()),
            };
            if woke.is_pending() {
                return Poll::Pending;
            }
            self.reset(self.deadline);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Work running on a blocking thread.
pub(crate) struct Blocking<T>(blocking::Task<T>);

impl<T: Send + 'static> Blocking<T> {
    /// The work's result once it is done.
    pub(crate) fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// The time now on each clock, each read at most once per query: what a
/// registry query (a list, a snapshot) compares every operation with. The
/// wall clock for start times, the real clock for the causes' timestamps
/// (`Cause::at`, which the token takes from `Instant::now`), the
/// operation's own clock for its elapsed time (through [`Clock::now`], so
/// the testing kit's manual clock drives it as it drives the scope).
#[cfg(feature = "registry")]
pub(crate) struct Now {
    pub(crate) wall: std::time::SystemTime,
    real: Option<Instant>,
    std: Option<Instant>,
    #[cfg(feature = "tokio")]
    tokio: Option<Instant>,
}

#[cfg(feature = "registry")]
impl Now {
    pub(crate) fn new() -> Self {
        Now {
            wall: std::time::SystemTime::now(),
            real: None,
            std: None,
            #[cfg(feature = "tokio")]
            tokio: None,
        }
    }

    /// Now on the real (monotonic) clock.
    pub(crate) fn real(&mut self) -> Instant {
        *self.real.get_or_insert_with(Instant::now)
    }

    /// Now on `clock`.
    pub(crate) fn on(&mut self, clock: Clock) -> Instant {
        match clock {
            #[cfg(feature = "tokio")]
            Clock::Tokio => *self.tokio.get_or_insert_with(|| clock.now()),
            Clock::Std => *self.std.get_or_insert_with(|| clock.now()),
        }
    }
}
