//! The few primitives that differ between executors: the clock, a timer and
//! a thread to run blocking predicates on.
//!
//! The backend is detected at run time, never configured: a live tokio
//! runtime on this thread means tokio's timer (so `tokio::time::pause()`
//! and `advance()` act on scopes as they act on `tokio::time::timeout`) and
//! tokio's blocking pool; anything else — async-std, smol,
//! `futures::executor::block_on` — gets the executor-neutral `async-io`
//! timer and the `blocking` thread pool. No code path that can run outside
//! tokio touches a tokio-only primitive.

mod deadlines;

pub(crate) use deadlines::{Registration, Shard};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

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

    /// The clock of the executor running on this thread.
    pub(crate) fn detect() -> Clock {
        Backend::detect().clock()
    }

    /// The current time on this clock.
    pub(crate) fn now(self) -> Instant {
        match self {
            #[cfg(feature = "tokio")]
            Clock::Tokio => tokio::time::Instant::now().into_std(),
            Clock::Std => Instant::now(),
        }
    }
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
        match self {
            #[cfg(feature = "tokio")]
            Backend::Tokio => Timer::Tokio(Box::pin(tokio::time::sleep_until(
                tokio::time::Instant::from_std(deadline),
            ))),
            Backend::AsyncIo => Timer::AsyncIo(async_io::Timer::at(deadline)),
        }
    }

    /// Runs `work` on a thread where blocking is allowed.
    pub(crate) fn run_blocking<T, F>(self, work: F) -> Blocking<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self {
            #[cfg(feature = "tokio")]
            Backend::Tokio => Blocking::Tokio(tokio::task::spawn_blocking(work)),
            Backend::AsyncIo => Blocking::AsyncIo(blocking::unblock(work)),
        }
    }
}

/// A one-shot timer that can be moved to another deadline.
pub(crate) enum Timer {
    #[cfg(feature = "tokio")]
    Tokio(Pin<Box<tokio::time::Sleep>>),
    AsyncIo(async_io::Timer),
}

impl Timer {
    pub(crate) fn reset(&mut self, deadline: Instant) {
        match self {
            #[cfg(feature = "tokio")]
            Timer::Tokio(sleep) => sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline)),
            Timer::AsyncIo(timer) => timer.set_at(deadline),
        }
    }

    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            #[cfg(feature = "tokio")]
            Timer::Tokio(sleep) => sleep.as_mut().poll(cx),
            Timer::AsyncIo(timer) => Pin::new(timer).poll(cx).map(|_| ()),
        }
    }
}

/// Work running on a blocking thread. `None` if the thread pool lost it
/// (the runtime shut down).
pub(crate) enum Blocking<T> {
    #[cfg(feature = "tokio")]
    Tokio(tokio::task::JoinHandle<T>),
    AsyncIo(blocking::Task<T>),
}

impl<T: Send + 'static> Blocking<T> {
    pub(crate) fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self {
            #[cfg(feature = "tokio")]
            Blocking::Tokio(handle) => Pin::new(handle).poll(cx).map(Result::ok),
            Blocking::AsyncIo(task) => Pin::new(task).poll(cx).map(Some),
        }
    }
}
