//! [`assert_cancelled_within`].

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::Cancelled;

/// Awaits `future` — a scope's run, say — and returns its [`Cancelled`],
/// asserting that it ends cancelled within `within` of real time.
///
/// The bound is real time on the executor-neutral `async-io` timer, on
/// every backend, whatever clock scopes follow: with a
/// [`ManualClock`](super::ManualClock) it bounds how long the test waits
/// for a cancellation the clock has already caused. Give a generous bound:
/// it is a guard against a missing cancellation, not a timing measure.
///
/// # Panics
///
/// If `future` completes with `Ok`, or is still running after `within`;
/// the message says which (a test assertion, so panicking is the point).
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
pub fn assert_cancelled_within<F, T>(within: Duration, future: F) -> impl Future<Output = Cancelled>
where
    F: Future<Output = Result<T, Cancelled>>,
    T: fmt::Debug,
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
            Some(Err(cancelled)) => cancelled,
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
