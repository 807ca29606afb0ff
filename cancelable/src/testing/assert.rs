//! [`assert_cancelled_within`].

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::group::{GroupError, TaskError};
use crate::Cancelled;

/// An error that may be a cancellation and can give its [`Cancelled`]:
/// what [`assert_cancelled_within`] accepts. Implemented for `Cancelled`
/// itself, [`GroupError`] (a task group's result) and [`TaskError`] (a
/// child's); implement it for an error of your own that carries one.
///
/// ```
/// use cancelable::testing::AsCancelled;
/// use cancelable::{CancelReason, Cancelled};
///
/// #[derive(Debug)]
/// enum JobError {
///     Cancelled(Cancelled),
///     Io(std::io::ErrorKind),
/// }
///
/// impl AsCancelled for JobError {
///     fn as_cancelled(&self) -> Option<&Cancelled> {
///         match self {
///             JobError::Cancelled(cancelled) => Some(cancelled),
///             JobError::Io(_) => None,
///         }
///     }
/// }
///
/// let error = JobError::Cancelled(Cancelled::new(CancelReason::Manual));
/// assert!(error.as_cancelled().is_some());
/// assert!(JobError::Io(std::io::ErrorKind::Other).as_cancelled().is_none());
/// ```
pub trait AsCancelled: fmt::Debug {
    /// The cancellation this error is, or `None` for any other error.
    fn as_cancelled(&self) -> Option<&Cancelled>;
}

impl AsCancelled for Cancelled {
    fn as_cancelled(&self) -> Option<&Cancelled> {
        Some(self)
    }
}

impl AsCancelled for GroupError {
    fn as_cancelled(&self) -> Option<&Cancelled> {
        self.cancelled()
    }
}

impl AsCancelled for TaskError {
    fn as_cancelled(&self) -> Option<&Cancelled> {
        self.cancelled()
    }
}

/// Awaits `future` — a scope's run, a task group's, say — and returns its
/// [`Cancelled`], asserting that it ends cancelled within `within` of real
/// time. The future's error is any that can give its `Cancelled`
/// ([`AsCancelled`]: `Cancelled`, [`GroupError`], [`TaskError`], ...).
///
/// The bound is real time on the executor-neutral `async-io` timer, on
/// every backend, whatever clock scopes follow: with a
/// [`ManualClock`](super::ManualClock) it bounds how long the test waits
/// for a cancellation the clock has already caused. Give a generous bound:
/// it is a guard against a missing cancellation, not a timing measure.
///
/// # Panics
///
/// If `future` completes with `Ok` or with an error that is not a
/// cancellation, or is still running after `within`; the message says
/// which (a test assertion, so panicking is the point).
///
/// ```
/// use std::time::Duration;
/// use cancelable::testing::assert_cancelled_within;
/// use cancelable::{CancelReason, CancelScope};
///
/// # futures::executor::block_on(async {
/// let run = CancelScope::new()
///     .timeout(Duration::from_millis(5))
///     .run(std::future::pending::<()>());
/// let cancelled = assert_cancelled_within(Duration::from_secs(5), run).await;
/// assert_eq!(cancelled.reason(), &CancelReason::Timeout);
/// # });
/// ```
#[track_caller]
pub fn assert_cancelled_within<F, T, E>(
    within: Duration,
    future: F,
) -> impl Future<Output = Cancelled>
where
    F: Future<Output = Result<T, E>>,
    T: fmt::Debug,
    E: AsCancelled,
{
    let caller = std::panic::Location::caller();
    async move {
        let start = Instant::now();
        let mut future = pin!(future);
        let mut bound = async_io::Timer::after(within);
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(outcome) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(outcome));
            }
            match std::pin::Pin::new(&mut bound).poll(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match outcome {
            Some(Err(error)) => match error.as_cancelled() {
                Some(cancelled) => cancelled.clone(),
                None => panic!(
                    "assert_cancelled_within at {caller}: expected a cancellation within \
                     {within:?}, but the future failed with {error:?} after {:?}",
                    start.elapsed()
                ),
            },
            Some(Ok(value)) => panic!(
                "assert_cancelled_within at {caller}: expected a cancellation within {within:?}, \
                 but the future completed with Ok({value:?}) after {:?}",
                start.elapsed()
            ),
            None => panic!(
                "assert_cancelled_within at {caller}: expected a cancellation within {within:?}, \
                 but the future was still running after {:?}",
                start.elapsed()
            ),
        }
    }
}
