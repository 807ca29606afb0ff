//! The current scope as user code reaches it — [`current_scope`],
//! [`current_token`], [`report_progress`] — and the checkpoint that reads
//! it, whose hot path is one thread-local access and one atomic load.
//!
//! The thread-local slot itself is scope machinery (`crate::scope::slot`);
//! its functions are re-exported here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) use crate::scope::slot::{current_shared, enter_shield};

use crate::context::Progress;
use crate::scope::slot::{self, Current};
use crate::scope::ScopeHandle;
#[cfg(feature = "testing")]
use crate::scope::ScopeShared;
use crate::{CancellationToken, Cancelled};

/// How many checkpoints pass between two reads of the clock for deadline
/// checks (a clock read costs about 30 ns; a checkpoint a few). A power of
/// two, so the check is a mask.
const DEADLINE_CHECK_EVERY: u32 = 32;

/// How many checkpoints pass between two yields to the executor, so that a
/// busy loop lets other tasks and timers on its thread run. A power of two,
/// and a multiple of `DEADLINE_CHECK_EVERY` (yields happen on the slow path).
const YIELD_EVERY: u32 = 256;

/// A handle to the innermost scope running the calling code, if any.
///
/// The current scope does not flow into tasks spawned with `tokio::spawn`,
/// `smol::spawn` and the like: pass them [`current_token`] or a child of it.
pub fn current_scope() -> Option<ScopeHandle> {
    current_shared().map(|shared| ScopeHandle { shared })
}

/// The token of the innermost scope running the calling code, if any.
///
/// Inside a [`shield`](crate::shield) it is still the token of the scope
/// around the shield, which the shield does not stop from being cancelled.
///
/// Use it to link work spawned onto other tasks to the scope:
///
/// ```
/// # futures::executor::block_on(async {
/// use cancelable::{current_token, CancelScope};
///
/// CancelScope::new()
///     .run(async {
///         let token = current_token().expect("inside a scope");
///         std::thread::spawn(move || token.cancel());
///         futures::future::pending::<()>().await
///     })
///     .await
///     .unwrap_err();
/// # });
/// ```
pub fn current_token() -> Option<CancellationToken> {
    slot::with_scope(|scope| scope.token.clone())
}

/// Reports progress to the current scope: it is recorded in the scope's
/// [`OperationContext`](crate::OperationContext) and passed to its
/// `on_progress` callbacks.
///
/// `fraction` is clamped to `0.0..=1.0`; a NaN counts as unknown. Returns
/// `false` (and does nothing) outside any scope.
pub fn report_progress(fraction: impl Into<Option<f64>>, message: impl Into<String>) -> bool {
    report_progress_with(fraction, message, std::iter::empty::<(String, String)>())
}

/// [`report_progress`] with key/value details attached to the report
/// ([`Progress::metadata`]): items done, the current file, a rate.
///
/// ```
/// use cancelable::{report_progress_with, CancelScope};
///
/// # futures::executor::block_on(async {
/// let scope = CancelScope::new();
/// let handle = scope.handle();
/// scope
///     .run(async { report_progress_with(0.4, "copying", [("file", "a.txt"), ("done", "4")]) })
///     .await
///     .unwrap();
/// let progress = handle.context().progress.unwrap();
/// assert_eq!(progress.metadata["file"], "a.txt");
/// # });
/// ```
pub fn report_progress_with<K, V>(
    fraction: impl Into<Option<f64>>,
    message: impl Into<String>,
    metadata: impl IntoIterator<Item = (K, V)>,
) -> bool
where
    K: Into<String>,
    V: Into<String>,
{
    let Some(scope) = current_shared() else {
        return false;
    };
    scope.report_progress(
        Progress::new(fraction.into(), message.into()).with_metadata(
            metadata
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        ),
    );
    true
}

/// A cancellation checkpoint: `Err(Cancelled)` if the current scope is
/// cancelled, `Ok(())` otherwise. `cancel_point!()` expands to it.
///
/// * Outside any scope it is a no-op that never fails.
/// * Inside a [`shield`](crate::shield) it does not report the cancellation
///   (nor enforce the deadlines) of the scopes outside the shield; it does
///   report those of scopes started inside it.
/// * Uncancelled, it costs a thread-local read and an atomic load.
/// * Every 32nd call it also reads the clock and enforces the deadlines of
///   the current scope and the scopes around it, so a loop that never
///   awaits anything else still notices a passed deadline, even on a
///   single-threaded executor: within 32 iterations of the deadline.
/// * Every 256th call it yields once to the executor so that other tasks
///   and timers on the same thread can run (and cancel it).
#[inline]
pub fn checkpoint() -> Checkpoint<'static> {
    Checkpoint {
        token: None,
        yielded: false,
    }
}

/// Like [`checkpoint`], but checks an explicit token instead of the
/// current scope. `cancel_point!(token)` expands to it.
#[inline]
pub fn checkpoint_token(token: &CancellationToken) -> Checkpoint<'_> {
    Checkpoint {
        token: Some(token),
        yielded: false,
    }
}

/// The future returned by [`checkpoint`] and [`checkpoint_token`].
#[must_use = "a checkpoint does nothing unless awaited"]
#[derive(Debug)]
pub struct Checkpoint<'a> {
    token: Option<&'a CancellationToken>,
    yielded: bool,
}

enum Step {
    Ready(Result<(), Cancelled>),
    Yield,
}

impl Checkpoint<'_> {
    /// The hot path: one thread-local access, one counter update, one
    /// atomic load; everything else is in [`Checkpoint::slow_step`].
    #[inline]
    fn step(&self, current: &Current) -> Step {
        let ticks = current.ticks.get().wrapping_add(1);
        current.ticks.set(ticks);
        let due = ticks & (DEADLINE_CHECK_EVERY - 1) == 0;
        let cancelled = match self.token {
            Some(token) => token.is_cancelled(),
            None => match current.is_cancelled() {
                Some(cancelled) => cancelled,
                // Outside any scope: never cancelled, never yields.
                None => return Step::Ready(Ok(())),
            },
        };
        if !cancelled && !due {
            return Step::Ready(Ok(()));
        }
        self.slow_step(current, ticks)
    }

    /// Cancelled, or a deadline check or a yield is due.
    #[cold]
    #[inline(never)]
    fn slow_step(&self, current: &Current, ticks: u32) -> Step {
        match self.token {
            Some(token) => {
                if let Err(cancelled) = token.check() {
                    return Step::Ready(Err(cancelled));
                }
            }
            // Inside a shield the current scope lies outside it: its
            // cancellation and deadlines do not show here.
            None if current.shielded.get() => {}
            None => {
                if let Some(cancelled) = current.cancellation() {
                    return Step::Ready(Err(cancelled));
                }
            }
        }
        if self.yielded || ticks & (YIELD_EVERY - 1) != 0 {
            Step::Ready(Ok(()))
        } else {
            Step::Yield
        }
    }
}

impl Future for Checkpoint<'_> {
    type Output = Result<(), Cancelled>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match slot::try_with(|current| {
            // The testing kit's checkpoint counters: once per checkpoint
            // (not again when it is polled after yielding).
            #[cfg(feature = "testing")]
            if this.token.is_none() && !this.yielded {
                count_checkpoint(current);
            }
            this.step(current)
        }) {
            Ok(Step::Ready(outcome)) => Poll::Ready(outcome),
            Ok(Step::Yield) => {
                this.yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}

/// The testing kit's checkpoint trips (`hooks::trips`) told of a checkpoint
/// running with `current` as this thread's slot: counted in the current
/// scope's chain, unless inside a shield.
#[cfg(feature = "testing")]
#[inline]
fn count_checkpoint(current: &Current) {
    if !crate::hooks::trips::armed() || current.shielded.get() {
        return;
    }
    // A scope without shared state has no id a trip could name.
    let Some(scope) = current.shared_if_made() else {
        return;
    };
    count_wait(&scope);
}

/// A cancellation-aware wait (a sleep, `cancelled()`, `.or_cancelled()`,
/// a blocking run) starts, or a stream adapter starts pulling an item,
/// watching `scope`: counted by the testing kit's trips as a checkpoint
/// inside it.
#[cfg(feature = "testing")]
#[inline]
pub(crate) fn count_wait(scope: &std::sync::Arc<ScopeShared>) {
    if crate::hooks::trips::armed() {
        crate::hooks::trips::count(|id| {
            scope
                .chain()
                .find(|inner| inner.id() == id)
                .map(|inner| inner.token.clone())
        });
    }
}
