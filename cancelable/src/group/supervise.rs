//! Restart supervision of a group's children (Erlang/OTP's one-for-one
//! supervisor, adapted to structured concurrency): [`Supervision`], the
//! restart loop a supervised child runs, and [`RestartsExhausted`], the
//! failure it ends with when its budget is spent.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::error::panic_message;
use super::error::{BoxError, TaskError};
use crate::scope::seam;
use crate::seam::time;
use crate::{CancelScope, Cancelled};

/// How a group restarts its supervised children: set with
/// [`TaskGroup::supervise`](crate::group::TaskGroup::supervise) (read back
/// with [`Group::supervision`](crate::group::Group::supervision)) or per
/// child, given to
/// [`ChildBuilder::supervised`](crate::group::ChildBuilder::supervised).
///
/// A supervised child is started from a factory, called with the attempt
/// number (1 for the first, 2 for the first restart, ...). When an attempt
/// fails — returns an `Err` that is not its cancellation, or panics — the
/// factory makes a fresh attempt, in a fresh child scope, after the
/// [`backoff`](Self::backoff) delay; when more than
/// [`max_restarts`](Self::max_restarts) restarts would fall
/// [`within`](Self::within) one window (Erlang's *intensity* and *period*),
/// the child gives up and fails with [`RestartsExhausted`] carrying the
/// last error: the group's failure policy then applies as to any failure
/// (by default, siblings cancelled and the group's error lists it).
///
/// A cancellation is never restarted: when the child's scope is cancelled
/// (by the group, an enclosing scope, its handle) during an attempt or a
/// backoff, the child ends at once as cancelled.
///
/// The default is `Supervision::restart()`: 3 restarts within 5 s, no
/// backoff.
///
/// Beside the other failure policies:
///
/// | when a child fails | the child | its siblings | the group returns | a panic |
/// |---|---|---|---|---|
/// | default ([`FailurePolicy::CancelGroup`](crate::group::FailurePolicy::CancelGroup)) | ends | cancelled | `Err(GroupError)` with every failure | re-raised once every child ended |
/// | [`on_child_error(Ignore)`](crate::group::TaskGroup::on_child_error) | ends; its handle has the error | keep running | the body's result | caught; its handle has it |
/// | `supervise(..)` + `child().supervised(..)` | restarted in a fresh scope while the budget lasts, then fails with [`RestartsExhausted`] | keep running; once it gives up, as the group's policy says | as the policy says | caught and restarted, never re-raised |
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cancelable::group::{Supervision, TaskGroup};
///
/// # futures::executor::block_on(async {
/// let attempts = Arc::new(AtomicU32::new(0));
/// let counted = attempts.clone();
/// let value = TaskGroup::new()
///     .supervise(Supervision::restart().max_restarts(5).within(Duration::from_secs(60)))
///     .run(|group| async move {
///         let flaky = group.child().supervised(group.supervision()).start_soon(move |attempt| {
///             counted.fetch_add(1, Ordering::SeqCst);
///             async move {
///                 if attempt < 3 {
///                     return Err(format!("connection refused (attempt {attempt})"));
///                 }
///                 Ok(attempt)
///             }
///         });
///         let value = flaky.await.unwrap();
///         Ok::<_, cancelable::Cancelled>(value)
///     })
///     .await
///     .unwrap();
/// assert_eq!((value, attempts.load(Ordering::SeqCst)), (3, 3));
/// # });
/// ```
///
/// **Retrying the same item.** The restart budget is per child, so a flaky
/// step on one item is one supervised child per item: the factory owns the
/// item (captured once, behind an `Arc` if it is large) and lends each
/// attempt a clone of the `Arc` — no shared `Option` to take the item out
/// of, no capture cloned twice:
///
/// ```
/// use std::sync::Arc;
/// use cancelable::group::{Supervision, TaskGroup};
///
/// async fn upload(item: &str, attempt: u32) -> Result<String, std::io::Error> {
///     if attempt < 2 {
///         return Err(std::io::Error::other("connection reset"));
///     }
///     Ok(format!("{item} uploaded on attempt {attempt}"))
/// }
///
/// # futures::executor::block_on(async {
/// let done = TaskGroup::new()
///     .supervise(Supervision::restart().max_restarts(3))
///     .run(|group| async move {
///         let handles: Vec<_> = ["a.csv", "b.csv"]
///             .into_iter()
///             .map(|name| {
///                 let item = Arc::new(name.to_owned());
///                 group.child().supervised(group.supervision()).start_soon(move |attempt| {
///                     let item = item.clone();
///                     async move { upload(&item, attempt).await }
///                 })
///             })
///             .collect();
///         let mut done = Vec::new();
///         for handle in handles {
///             done.push(handle.await.unwrap());
///         }
///         Ok::<_, cancelable::Cancelled>(done)
///     })
///     .await
///     .unwrap();
/// assert_eq!(done, ["a.csv uploaded on attempt 2", "b.csv uploaded on attempt 2"]);
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supervision {
    max_restarts: u32,
    within: Duration,
    backoff: Duration,
    max_backoff: Option<Duration>,
}

impl Supervision {
    /// Restart failed children: 3 restarts within 5 s, no backoff.
    pub fn restart() -> Self {
        Supervision {
            max_restarts: 3,
            within: Duration::from_secs(5),
            backoff: Duration::ZERO,
            max_backoff: None,
        }
    }

    /// At most `restarts` restarts within one [`within`](Self::within)
    /// window; the failure after them ends the child. `0` never restarts
    /// (the child fails with [`RestartsExhausted`] at its first failure).
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.max_restarts = restarts;
        self
    }

    /// The window [`max_restarts`](Self::max_restarts) counts in: restarts
    /// older than `window` no longer count, so a child that fails rarely
    /// is restarted for ever. `Duration::MAX` counts every restart of the
    /// child's life; `Duration::ZERO` counts none (unlimited restarts).
    pub fn within(mut self, window: Duration) -> Self {
        self.within = window;
        self
    }

    /// Waits `delay` before each restart (the child's scope is cancellable
    /// meanwhile: a cancelled group does not wait for it).
    pub fn backoff(mut self, delay: Duration) -> Self {
        self.backoff = delay;
        self
    }

    /// Doubles the [`backoff`](Self::backoff) with each restart counted in
    /// the window, up to `max`.
    pub fn exponential_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = Some(max);
        self
    }

    /// The delay before the restart that follows `recent` restarts counted
    /// in the window.
    fn delay(&self, recent: usize) -> Duration {
        match self.max_backoff {
            None => self.backoff,
            Some(max) => {
                let doublings = u32::try_from(recent).unwrap_or(u32::MAX).min(31);
                self.backoff
                    .checked_mul(1 << doublings)
                    .unwrap_or(max)
                    .min(max)
            }
        }
    }
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision::restart()
    }
}

/// The failure of a supervised child that failed once more after its
/// restart budget was spent: how many restarts it had and the last error.
/// Read it from a [`TaskError`] with
/// [`TaskError::restarts_exhausted`] (the child's handle, the group's
/// [`GroupError`](crate::group::GroupError) failures).
#[derive(Clone, Debug)]
pub struct RestartsExhausted {
    restarts: u32,
    supervision: Supervision,
    last: TaskError,
}

impl RestartsExhausted {
    /// How many times the child was restarted in all.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The last attempt's failure: [`TaskError::Failed`] or
    /// [`TaskError::Panicked`].
    pub fn last_error(&self) -> &TaskError {
        &self.last
    }

    /// The supervision that gave up.
    pub fn supervision(&self) -> &Supervision {
        &self.supervision
    }
}

// Kept beside the type it reads, not in `error.rs`: the error types stay
// free of the supervision module, so the group's modules import in one
// direction (supervise -> child -> error).
impl TaskError {
    /// For a supervised child that gave up (a [`TaskError::Failed`] with
    /// a [`RestartsExhausted`]): how many restarts it had and its last
    /// error.
    pub fn restarts_exhausted(&self) -> Option<&RestartsExhausted> {
        match self {
            TaskError::Failed(error) => error.downcast_ref::<RestartsExhausted>(),
            _ => None,
        }
    }
}

impl fmt::Display for RestartsExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = match &self.last {
            TaskError::Failed(error) => error.to_string(),
            TaskError::Panicked(message) => format!("panicked: {message}"),
            other => other.to_string(),
        };
        write!(
            f,
            "gave up after {} restart{} (at most {} ",
            self.restarts,
            if self.restarts == 1 { "" } else { "s" },
            self.supervision.max_restarts,
        )?;
        match self.supervision.within {
            Duration::MAX => f.write_str("in all")?,
            window => write!(f, "within {window:?}")?,
        }
        write!(f, "): {last}")
    }
}

impl std::error::Error for RestartsExhausted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.last {
            TaskError::Failed(error) => Some(&**error as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

/// The restart loop of a supervised child, run in the child's scope:
/// each attempt in a fresh child scope of it; `restarts` counts for the
/// handle.
pub(crate) async fn supervised<M, F, T, E>(
    supervision: Supervision,
    mut make: M,
    restarts: Arc<AtomicU32>,
) -> Result<T, BoxError>
where
    M: FnMut(u32) -> F,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    let child = seam::current();
    let name = child.as_ref().and_then(seam::name);
    let mut recent: VecDeque<Instant> = VecDeque::new();
    let mut total: u32 = 0;
    loop {
        let mut scope = CancelScope::new().metadata("attempt", (total + 1).to_string());
        if let Some(name) = &name {
            scope = scope.name(name.clone());
        }
        let attempt = match catch_unwind(AssertUnwindSafe(|| make(total + 1))) {
            Ok(future) => {
                let body = async move { future.await.map_err(Into::<BoxError>::into) };
                AssertUnwindSafe(scope.try_run(body)).catch_unwind().await
            }
            Err(payload) => Err(payload),
        };
        // A cancellation of the child (its group, an enclosing scope, its
        // handle) is never restarted: it ends the child here. Its cause is
        // recorded before its token reads as cancelled and before the
        // attempt's scope inside it is cancelled: an attempt ended by the
        // cancellation, seen from another thread, is never taken for a
        // failure. An attempt that failed on its own meanwhile (the
        // outcome rule, see `CancelScope::try_run`) ends the child with
        // that failure, not restarted either.
        let cancelled = child
            .as_ref()
            .filter(|child| seam::scope_cancel_recorded(child));
        let last = match attempt {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => match cancelled {
                Some(child) if seam::err_is_cancellation(child, error.is::<Cancelled>()) => {
                    return Err(Box::new(seam::observe_cancellation(child)));
                }
                Some(_) => return Err(error),
                None => TaskError::Failed(Arc::from(error)),
            },
            Err(payload) if cancelled.is_some() => std::panic::resume_unwind(payload),
            Err(payload) => TaskError::Panicked(panic_message(&*payload).into()),
        };
        let now = time::executor_now();
        while recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= supervision.within)
        {
            recent.pop_front();
        }
        if recent.len() >= supervision.max_restarts as usize {
            return Err(Box::new(RestartsExhausted {
                restarts: total,
                supervision,
                last,
            }));
        }
        let delay = supervision.delay(recent.len());
        if !delay.is_zero() {
            crate::sleep(delay).await?;
        }
        recent.push_back(time::executor_now());
        total += 1;
        restarts.store(total, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_up_to_its_cap() {
        let supervision = Supervision::restart()
            .backoff(Duration::from_millis(10))
            .exponential_backoff(Duration::from_millis(35));
        let delays: Vec<_> = (0..5).map(|recent| supervision.delay(recent)).collect();
        assert_eq!(
            delays,
            [10, 20, 35, 35, 35].map(Duration::from_millis).to_vec()
        );
        assert_eq!(
            Supervision::restart()
                .backoff(Duration::MAX)
                .exponential_backoff(Duration::from_secs(1))
                .delay(40),
            Duration::from_secs(1)
        );
        assert_eq!(Supervision::restart().delay(3), Duration::ZERO);
    }
}
