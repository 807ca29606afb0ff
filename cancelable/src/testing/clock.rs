//! [`ManualClock`].

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// `true` while a [`ManualClock`] is installed; installs wait for it.
static INSTALLED: Mutex<bool> = Mutex::new(false);
static UNINSTALLED: Condvar = Condvar::new();

/// A clock that only moves when told to, driving scope deadlines on every
/// backend: scopes with a [`timeout`](crate::CancelScope::timeout) or
/// [`deadline`](crate::CancelScope::deadline), timeout sources,
/// [`cancelable::sleep`](crate::sleep) and condition intervals time out
/// exactly when the clock is [advanced](Self::advance) to or past their
/// deadline, with no real waiting; so do the cluster node's timers and
/// clock reads (feature `redis`: tombstone expiry, heartbeats, answer
/// limits, backoff — the broker keeps its own, real clock). (tokio's `pause()` does this on tokio
/// only, and not for the other backends' timers.)
///
/// **Process-wide**: while installed it is the clock of every scope of the
/// process, on every thread and backend — the only way it can reach tasks
/// on other threads, timer threads and reactors. So at most one is
/// installed at a time: [`install`](Self::install) waits for the previous
/// one to be dropped, which serialises the tests that use it; tests of the
/// same binary that do *not* use it but rely on real-time deadlines must
/// not run meanwhile: keep manual-clock tests in a test binary of their
/// own, or serialise the binary (see
/// [`on_every_backend_with!`](crate::on_every_backend_with)).
/// Dropping the clock goes back to real time; scopes still running keep
/// deadlines computed on the manual clock's time, which started at the
/// real time of the install and moved only as advanced.
///
/// A condition's next check is due one interval after the scope took the
/// previous check's outcome (from the blocking thread, for a blocking
/// predicate): poll the scope once the predicate has run before advancing.
///
/// Reading it (every clock read of the crate) costs one atomic load while
/// none is installed, and nothing without the `testing` feature.
///
/// ```
/// use std::pin::pin;
/// use std::time::Duration;
/// use cancelable::testing::{assert_cancelled_within, ManualClock};
/// use cancelable::{CancelReason, CancelScope};
///
/// # futures::executor::block_on(async {
/// let clock = ManualClock::install();
/// let mut run = pin!(CancelScope::new()
///     .timeout(Duration::from_secs(3600))
///     .run(std::future::pending::<()>()));
/// // Started: its deadline is an hour from the clock's time.
/// assert!(futures::poll!(run.as_mut()).is_pending());
/// clock.advance(Duration::from_secs(3599));
/// assert!(futures::poll!(run.as_mut()).is_pending());
/// clock.advance(Duration::from_secs(1));
/// let cancelled = assert_cancelled_within(Duration::from_secs(10), run).await;
/// assert_eq!(cancelled.reason(), &CancelReason::Timeout);
/// # });
/// ```
#[derive(Debug)]
#[must_use = "the manual clock is uninstalled when dropped"]
pub struct ManualClock {
    _private: (),
}

impl ManualClock {
    /// Installs a manual clock reading the current real time, waiting
    /// first for any other to be dropped. Dropping it uninstalls it.
    ///
    /// Blocks the calling thread while another is installed (the tests
    /// using it take turns).
    pub fn install() -> ManualClock {
        let mut installed = crate::sync::lock(&INSTALLED);
        while *installed {
            installed = crate::sync::wait(&UNINSTALLED, installed, None);
        }
        *installed = true;
        crate::hooks::clock::install(Instant::now());
        ManualClock { _private: () }
    }

    /// The time the clock reads: what scopes see as "now".
    pub fn now(&self) -> Instant {
        crate::hooks::clock::manual_now().expect("the manual clock is installed while it lives")
    }

    /// Moves the clock forward by `by` and wakes every timer whose deadline
    /// it reached (their scopes are cancelled on this thread, or on the
    /// tokio runtime that drives them). Returns the time it now reads.
    ///
    /// Deadlines passed in one advance fire in deadline order, as real time
    /// would fire them, whatever order their futures are polled in: a
    /// timeout source or a sleep whose deadline is later than another's
    /// that the same advance passed waits for that one to fire first (or
    /// to be dropped).
    ///
    /// # Panics
    ///
    /// If the time would overflow `Instant`.
    pub fn advance(&self, by: Duration) -> Instant {
        crate::hooks::clock::advance(by).expect("the manual clock is installed while it lives")
    }
}

impl Drop for ManualClock {
    fn drop(&mut self) {
        crate::hooks::clock::uninstall();
        let mut installed = crate::sync::lock(&INSTALLED);
        *installed = false;
        UNINSTALLED.notify_one();
    }
}
