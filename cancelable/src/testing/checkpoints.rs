//! [`CancelAfterCheckpoints`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::hooks::trips::{self, Trip};
use crate::CancelScope;

/// Cancels a scope at a chosen cancellation point of its body: after `n`
/// of them have gone through, the next one cancels the scope with
/// [`CancelReason::Manual`](crate::CancelReason::Manual) and returns the
/// cancellation. Counted, in the scope or in scopes nested in it, not
/// inside a [`shield`](fn@crate::shield):
///
/// * each [`checkpoint`](crate::checkpoint) and [`cancel_point!`](crate::cancel_point)
///   (not `cancel_point!(token)`, which watches a token of its own);
/// * each cancellation-aware wait, once, when it starts (its first poll):
///   [`sleep`](crate::sleep), [`sleep_until`](crate::sleep_until),
///   [`cancelled`](crate::cancelled), [`.or_cancelled()`](crate::OrCancelled::or_cancelled),
///   [`run_blocking`](crate::blocking::run_blocking);
/// * each item a stream adapter watching the scope
///   ([`within`](crate::stream::CancellableStream::within),
///   [`within_current`](crate::stream::CancellableStream::within_current)) pulls, and
///   its pull of the end.
///
/// Looping `n = 0, 1, 2, ..` until the body completes hits every
/// cancellation point of the body once, deterministically: the way to
/// test that each of them cleans up.
///
/// The count is kept while this value lives; it is exact on every backend.
/// It goes on after the trip: the cleanup's cancellation points, and those
/// of every other scope given to [`scope`](Self::scope) (sibling children
/// included), keep counting in [`checkpoints`](Self::checkpoints); only the
/// first point past `n` cancels.
///
/// ```
/// use cancelable::testing::CancelAfterCheckpoints;
/// use cancelable::{cancel_point, CancelScope, Cancelled};
///
/// async fn three_steps(done: &mut Vec<u32>) -> Result<(), Cancelled> {
///     for step in 0..3 {
///         cancel_point!();
///         done.push(step);
///     }
///     Ok(())
/// }
///
/// # futures::executor::block_on(async {
/// for n in 0.. {
///     let trip = CancelAfterCheckpoints::new(n);
///     let mut done = Vec::new();
///     let outcome = trip.scope(CancelScope::new()).try_run(three_steps(&mut done)).await;
///     match outcome {
///         // Cancelled at checkpoint `n`: exactly `n` steps ran.
///         Err(_) => assert_eq!(done.len() as u64, n),
///         Ok(()) => {
///             assert_eq!(n, 3);
///             break;
///         }
///     }
/// }
/// # });
/// ```
pub struct CancelAfterCheckpoints {
    after: u64,
    trips: std::sync::Mutex<Vec<Arc<Trip>>>,
}

impl std::fmt::Debug for CancelAfterCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelAfterCheckpoints")
            .field("after", &self.after)
            .field("checkpoints", &self.checkpoints())
            .finish()
    }
}

impl CancelAfterCheckpoints {
    /// Cancels at checkpoint number `n`, counting from 0: `n` checkpoints
    /// go through first.
    pub fn new(n: u64) -> Self {
        CancelAfterCheckpoints {
            after: n,
            trips: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// `scope`, cancelled at its checkpoint number `n`. Each scope given
    /// here counts its own checkpoints.
    pub fn scope(&self, scope: CancelScope) -> CancelScope {
        let trip = trips::arm(scope.handle().id(), self.after);
        self.lock().push(trip);
        scope
    }

    /// The cancellation points counted so far, in all the scopes given to
    /// [`scope`](Self::scope) (the one that cancelled included), before and
    /// after the trip.
    pub fn checkpoints(&self) -> u64 {
        self.lock()
            .iter()
            .map(|trip| trip.counted.load(Ordering::Acquire))
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Trip>>> {
        crate::sync::lock(&self.trips)
    }
}
