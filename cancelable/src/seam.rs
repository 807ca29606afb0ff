//! The declared seams: what the crate's layers may use of the core beyond
//! its public API, so that a layer compiles against public items alone and
//! a later split into crates is a move.
//!
//! **Not public API**: hidden from the docs, changed in any release
//! without notice. Users have the public API (scopes, tokens, waits) for
//! the same needs.
//!
//! - [`time`]: the process clock and its timers (used by the cluster
//!   layer, `remote/`), and the executor's clock (read by the services
//!   layer, `http/`, and task groups, `group/`, whose timers are scope
//!   deadlines and graces), both driven by the testing kit's manual clock.
//! - `signal` (crate-visible): the signal dispatcher's listeners, for a
//!   layer that watches signals itself (the services layer's graceful
//!   shutdown).
//!
//! The registry's seam, its join observer, lives with the registry
//! (`registry::JoinObserver`, `Registry::set_join_observer`).

pub mod time {
    //! The *process clock* and timers on it.
    //!
    //! A scope keeps time on the clock of the executor it runs on (tokio's
    //! on tokio, which a runtime may pause). A layer that keeps time on a
    //! thread of its own, or compares instants taken on different threads
    //! (the cluster node: its thread, and the registrations of the
    //! application's tasks), needs one clock for the whole process: this
    //! one. It reads the testing kit's `ManualClock` while one is installed
    //! (and its timers are then woken by the clock's advances, with no
    //! real waiting), else [`Instant::now`]. Its timers run on every
    //! executor (`async-io`'s timer, which needs no runtime).

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use crate::backend::{Backend, Clock};

    /// The clock a scope keeps time on (tokio's on tokio, else the
    /// process clock), as the registry notes it with each operation to
    /// read its elapsed time on the same clock.
    #[cfg(feature = "registry")]
    pub(crate) use crate::backend::Clock as ScopeClock;
    /// The time now on each clock, each read at most once: what a registry
    /// query compares every operation with.
    #[cfg(feature = "registry")]
    pub(crate) use crate::backend::Now;

    /// The time on the process clock.
    pub fn now() -> Instant {
        Clock::of_process().now()
    }

    /// The instant `delay` after `now` on the process clock, saturated
    /// (to about 30 years from now) instead of overflowing.
    pub fn after(delay: Duration) -> Instant {
        crate::backend::saturating_add(now(), delay)
    }

    /// The time on the clock of the executor running here: tokio's on
    /// tokio (paused with its runtime), else the process clock; the manual
    /// clock while one is installed. What a layer that runs on the
    /// caller's tasks reads (the services layer: request deadlines, the
    /// shutdown's grace), so that its instants agree with the scopes'.
    pub fn executor_now() -> Instant {
        crate::backend::now()
    }

    /// A one-shot timer on the process clock that can be moved to another
    /// deadline; as a future, it completes once the clock reads at or past
    /// its deadline (never earlier).
    pub struct Timer(crate::backend::Timer);

    impl std::fmt::Debug for Timer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Timer").finish_non_exhaustive()
        }
    }

    impl Timer {
        /// A timer that fires at `deadline`.
        pub fn at(deadline: Instant) -> Timer {
            Timer(Backend::of_clock(Clock::of_process()).timer(deadline))
        }

        /// A timer that fires `delay` from now.
        pub fn after(delay: Duration) -> Timer {
            Timer::at(after(delay))
        }

        /// Moves the timer to `deadline` (it can fire again).
        pub fn reset(&mut self, deadline: Instant) {
            self.0.reset(deadline);
        }

        /// `Ready` once the clock reads at or past the deadline.
        pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            self.0.poll_fired(cx)
        }
    }

    impl Future for Timer {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.get_mut().poll_fired(cx)
        }
    }
}

/// The signal dispatcher's listeners: the arrivals of a signal counted for
/// a layer that watches signals itself (the services layer's graceful
/// shutdown), beside the scopes' signal sources.
#[cfg(feature = "axum")]
pub(crate) mod signal {
    pub(crate) use crate::source::{watch_signal, SignalArrivals, SignalGuard};
}
