//! The manual clock's hook: the indirection between the crate's clock
//! reads and timers and the testing kit's manual clock
//! ([`crate::testing::ManualClock`]).
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
//! 4. Backend timers (a source's timeout, a sleep) that one advance passed
//!    fire in deadline order, as real time would fire them, not in the
//!    order their owners poll them: each is *firing* until it has been
//!    polled and seen its deadline reached, and a timer's deadline counts
//!    as reached only once no firing timer has an earlier one. A firing
//!    timer that is dropped, or the next advance, lets the others go. The
//!    deadline shards take no part: they expire in deadline order on the
//!    advancing thread already.

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

/// [`poll_reached`] for a backend timer (a source's timeout, a sleep),
/// `id` naming it (see `manual::poll_timer_reached`).
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) fn poll_timer_reached(_deadline: Instant, _id: u64, _waker: &Waker) -> Option<bool> {
    None
}

#[cfg(feature = "testing")]
pub(crate) use manual::{
    advance, forget_timer, install, manual_now, poll_reached, poll_timer_reached, uninstall,
};

#[cfg(feature = "testing")]
mod manual {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard};
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
        /// Backend timers waiting, by id.
        timers: Vec<(Instant, u64, Waker)>,
        /// Backend timers the clock reached, not yet polled since: in
        /// deadline order (then id).
        firing: Vec<(Instant, u64, Waker)>,
    }

    fn state() -> MutexGuard<'static, Option<State>> {
        crate::sync::lock(&STATE)
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

    /// [`poll_reached`] for the backend timer `id`: reached only once no
    /// timer the same advance reached has an earlier deadline and is still
    /// to fire (invariant 4).
    pub(crate) fn poll_timer_reached(deadline: Instant, id: u64, waker: &Waker) -> Option<bool> {
        if !ACTIVE.load(Ordering::Acquire) {
            return None;
        }
        let (reached, next) = {
            let mut state = state();
            let state = state.as_mut()?;
            let firing = state.firing.iter().position(|(_, timer, _)| *timer == id);
            if state.now < deadline {
                match state.timers.iter_mut().find(|(_, timer, _)| *timer == id) {
                    Some(entry) => *entry = (deadline, id, waker.clone()),
                    None => state.timers.push((deadline, id, waker.clone())),
                }
                // Reset to a later deadline: no longer firing.
                (false, firing.and_then(|at| state.stop_firing(at)))
            } else {
                match firing {
                    // Not waiting when the clock passed it: fires now.
                    None => (true, None),
                    Some(0) => (true, state.stop_firing(0)),
                    Some(at) => {
                        // An earlier one fires first; this one is woken then.
                        state.firing[at].2 = waker.clone();
                        (false, None)
                    }
                }
            }
        };
        // The next to fire may be waiting for this one.
        if let Some(next) = next {
            next.wake();
        }
        Some(reached)
    }

    /// The backend timer `id` is dropped: it no longer waits, nor holds
    /// back the timers after it.
    pub(crate) fn forget_timer(id: u64) {
        if !ACTIVE.load(Ordering::Acquire) {
            return;
        }
        let next = {
            let mut state = state();
            let Some(state) = state.as_mut() else {
                return;
            };
            state.timers.retain(|(_, timer, _)| *timer != id);
            let firing = state.firing.iter().position(|(_, timer, _)| *timer == id);
            firing.and_then(|at| state.stop_firing(at))
        };
        if let Some(next) = next {
            next.wake();
        }
    }

    /// Makes the manual clock, reading `start`, the clock of every scope.
    /// The caller makes sure only one is installed at a time.
    pub(crate) fn install(start: Instant) {
        let waiters = {
            let mut state = state();
            let previous = state.replace(State {
                now: start,
                waiters: Vec::new(),
                timers: Vec::new(),
                firing: Vec::new(),
            });
            ACTIVE.store(true, Ordering::Release);
            previous.map(State::into_wakers).unwrap_or_default()
        };
        wake(waiters);
    }

    /// Goes back to the backends' clocks.
    pub(crate) fn uninstall() {
        let waiters = {
            let mut state = state();
            ACTIVE.store(false, Ordering::Release);
            state.take().map(State::into_wakers).unwrap_or_default()
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
            let (mut reached, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.waiters)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= now);
            state.waiters = waiting;
            // Timers still firing from an earlier advance go in any order.
            reached.extend(
                std::mem::take(&mut state.firing)
                    .into_iter()
                    .map(|(deadline, _, waker)| (deadline, waker)),
            );
            let (mut firing, timers): (Vec<_>, Vec<_>) = std::mem::take(&mut state.timers)
                .into_iter()
                .partition(|(deadline, _, _)| *deadline <= now);
            state.timers = timers;
            firing.sort_unstable_by_key(|(deadline, id, _)| (*deadline, *id));
            state.firing = firing.clone();
            reached.extend(
                firing
                    .into_iter()
                    .map(|(deadline, _, waker)| (deadline, waker)),
            );
            reached.sort_by_key(|(deadline, _)| *deadline);
            (now, reached)
        };
        wake(reached);
        Some(now)
    }

    impl State {
        /// Takes the firing timer at `at` out; the waker of the one that
        /// fires next if it was the first.
        fn stop_firing(&mut self, at: usize) -> Option<Waker> {
            self.firing.remove(at);
            match at {
                0 => self.firing.first().map(|(_, _, waker)| waker.clone()),
                _ => None,
            }
        }

        /// Every waker waiting on the clock.
        fn into_wakers(self) -> Vec<(Instant, Waker)> {
            let timers = self.timers.into_iter().chain(self.firing);
            self.waiters
                .into_iter()
                .chain(timers.map(|(deadline, _, waker)| (deadline, waker)))
                .collect()
        }
    }

    fn wake(waiters: Vec<(Instant, Waker)>) {
        for (_, waker) in waiters {
            waker.wake();
        }
    }
}
