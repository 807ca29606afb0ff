//! The indirection between the crate's clock reads and timers and the
//! testing kit's manual clock ([`crate::testing::ManualClock`]).
//!
//! Without the `testing` feature both functions here are constants that
//! the compiler removes: clock reads are plain `Instant::now()` (or
//! tokio's clock) and timers are the backend's.
//!
//! With it, a manual clock, while installed, is *the* clock of every scope
//! of the process, on every backend: [`manual_now`] is what
//! `backend::Clock::now` returns, and every timer of the crate — a scope
//! timer, the deadline shards' timers, [`crate::sleep`] — asks
//! [`poll_reached`] instead of arming a backend timer, so it is woken when
//! the clock is advanced past its deadline, with no real waiting.
//!
//! # Invariants
//!
//! 1. The time and the waiters live under one lock: a timer that finds its
//!    deadline not reached registers its waker before any advance can read
//!    the waiters, so no advance past its deadline is missed.
//! 2. Waiters are woken outside the lock (a woken deadline shard expires
//!    and re-registers at once, on the advancing thread).
//! 3. Uninstalling wakes every waiter: they go back to the real clock and
//!    the backend's timers.

#[cfg(not(feature = "testing"))]
use std::task::Waker;
#[cfg(not(feature = "testing"))]
use std::time::Instant;

/// The manual clock's time, if one is installed; `None` means: read the
/// backend's clock.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn manual_now() -> Option<Instant> {
    None
}

/// For a timer at `deadline`: `None` if no manual clock is installed (arm
/// the backend's timer), else whether the manual clock reads at or past
/// `deadline`; if not, `waker` is woken once it does.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn poll_reached(_deadline: Instant, _waker: &Waker) -> Option<bool> {
    None
}

#[cfg(feature = "testing")]
pub(crate) use manual::{advance, install, manual_now, poll_reached, uninstall};

#[cfg(feature = "testing")]
mod manual {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::task::Waker;
    use std::time::{Duration, Instant};

    /// Set while a manual clock is installed: the one atomic load a clock
    /// read costs with the feature on and no manual clock.
    static ACTIVE: AtomicBool = AtomicBool::new(false);
    static STATE: Mutex<Option<State>> = Mutex::new(None);

    struct State {
        now: Instant,
        /// Timers waiting for the clock to reach their deadline.
        waiters: Vec<(Instant, Waker)>,
    }

    fn state() -> MutexGuard<'static, Option<State>> {
        STATE.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    pub(crate) fn manual_now() -> Option<Instant> {
        if !ACTIVE.load(Ordering::Acquire) {
            return None;
        }
        state().as_ref().map(|state| state.now)
    }

    pub(crate) fn poll_reached(deadline: Instant, waker: &Waker) -> Option<bool> {
        if !ACTIVE.load(Ordering::Acquire) {
            return None;
        }
        let mut state = state();
        let state = state.as_mut()?;
        if state.now >= deadline {
            return Some(true);
        }
        match state
            .waiters
            .iter_mut()
            .find(|(_, waiting)| waiting.will_wake(waker))
        {
            Some((at, _)) => *at = (*at).min(deadline),
            None => state.waiters.push((deadline, waker.clone())),
        }
        Some(false)
    }

    /// Makes the manual clock, reading `start`, the clock of every scope.
    /// The caller makes sure only one is installed at a time.
    pub(crate) fn install(start: Instant) {
        let waiters = {
            let mut state = state();
            let previous = state.replace(State {
                now: start,
                waiters: Vec::new(),
            });
            ACTIVE.store(true, Ordering::Release);
            previous
                .map(|previous| previous.waiters)
                .unwrap_or_default()
        };
        wake(waiters);
    }

    /// Goes back to the backends' clocks.
    pub(crate) fn uninstall() {
        let waiters = {
            let mut state = state();
            ACTIVE.store(false, Ordering::Release);
            state.take().map(|state| state.waiters).unwrap_or_default()
        };
        wake(waiters);
    }

    /// Moves the manual clock forward by `by` and wakes the timers whose
    /// deadline it reached: the time it now reads, or `None` if no manual
    /// clock is installed.
    pub(crate) fn advance(by: Duration) -> Option<Instant> {
        let (now, reached) = {
            let mut state = state();
            let state = state.as_mut()?;
            state.now = state
                .now
                .checked_add(by)
                .expect("the manual clock was advanced past the end of `Instant`");
            let now = state.now;
            let (reached, waiting) = std::mem::take(&mut state.waiters)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= now);
            state.waiters = waiting;
            (now, reached)
        };
        wake(reached);
        Some(now)
    }

    fn wake(waiters: Vec<(Instant, Waker)>) {
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}
