//! The current scope: a thread-local slot that a scope fills around each
//! poll of its body, and the checkpoint that reads it.
//!
//! A thread-local rather than `tokio::task_local!`, which exists only on
//! tokio. The scope moves its `Arc` into the slot and back, so entering
//! costs no reference-count traffic.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::context::{OperationStatus, Progress};
use crate::scope::{Parent, ScopeHandle, ScopeShared};
use crate::{CancellationToken, Cancelled};

/// How many checkpoints pass between two reads of the clock for deadline
/// checks (a clock read costs about 30 ns; a checkpoint a few). A power of
/// two, so the check is a mask.
const DEADLINE_CHECK_EVERY: u32 = 32;

/// How many checkpoints pass between two yields to the executor, so that a
/// busy loop lets other tasks and timers on its thread run. A power of two,
/// and a multiple of `DEADLINE_CHECK_EVERY` (yields happen on the slow path).
const YIELD_EVERY: u32 = 256;

struct Current {
    scope: RefCell<Option<Arc<ScopeShared>>>,
    /// A shield runs between the current scope and the running code: the
    /// scope's cancellation and deadlines do not show there.
    shielded: Cell<bool>,
    ticks: Cell<u32>,
}

thread_local! {
    static CURRENT: Current = const {
        Current {
            scope: RefCell::new(None),
            shielded: Cell::new(false),
            ticks: Cell::new(0),
        }
    };
}

/// Runs `poll` with `slot`'s scope as the current scope, not shielded,
/// restoring the previous state afterwards, even on panic.
pub(crate) fn enter<R>(slot: &mut Option<Arc<ScopeShared>>, poll: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        slot: &'a mut Option<Arc<ScopeShared>>,
        previous: Option<Arc<ScopeShared>>,
        shielded: bool,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let ours = CURRENT
                .try_with(|current| {
                    current.shielded.set(self.shielded);
                    current.scope.replace(self.previous.take())
                })
                .ok()
                .flatten();
            if let Some(scope) = &ours {
                if std::thread::panicking() {
                    // The body panicked: the panic propagates unchanged, the
                    // operation is recorded as failed.
                    scope.set_status(OperationStatus::Failed);
                }
            }
            *self.slot = ours;
        }
    }
    let entered = CURRENT.try_with(|current| {
        let shielded = current.shielded.replace(false);
        (current.scope.replace(slot.take()), shielded)
    });
    match entered {
        Ok((previous, shielded)) => {
            let _restore = Restore {
                slot,
                previous,
                shielded,
            };
            poll()
        }
        // Thread-local storage is being torn down (thread exit): poll
        // without a current scope.
        Err(_) => poll(),
    }
}

/// Runs `poll` shielded: the current scope stays current, but neither its
/// cancellation nor its deadlines show to checkpoints until a scope started
/// inside takes over; restores the previous state afterwards, even on panic.
pub(crate) fn enter_shield<R>(poll: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|current| current.shielded.set(self.0));
        }
    }
    match CURRENT.try_with(|current| current.shielded.replace(true)) {
        Ok(shielded) => {
            let _restore = Restore(shielded);
            poll()
        }
        Err(_) => poll(),
    }
}

/// A clone of the current scope's shared state.
pub(crate) fn current_shared() -> Option<Arc<ScopeShared>> {
    CURRENT
        .try_with(|current| current.scope.borrow().clone())
        .ok()
        .flatten()
}

/// The parent of a scope starting now: the current scope, and whether a
/// shield runs in between.
pub(crate) fn current_parent() -> Option<Parent> {
    CURRENT
        .try_with(|current| {
            let scope = current.scope.borrow().clone()?;
            Some(Parent {
                scope,
                shielded: current.shielded.get(),
            })
        })
        .ok()
        .flatten()
}

/// The scopes whose cancellation a shield starting now hides: from the
/// current one outwards, up to the nearest shield further out (scopes
/// beyond it cannot reach the code here anyway).
pub(crate) fn current_chain() -> Vec<Arc<ScopeShared>> {
    std::iter::successors(current_shared(), |scope| scope.outer().cloned()).collect()
}

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
    CURRENT
        .try_with(|current| {
            current
                .scope
                .borrow()
                .as_ref()
                .map(|scope| scope.token.clone())
        })
        .ok()
        .flatten()
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
    let fraction = fraction
        .into()
        .filter(|fraction| !fraction.is_nan())
        .map(|fraction| fraction.clamp(0.0, 1.0));
    scope.report_progress(Progress {
        fraction,
        message: message.into(),
        metadata: metadata
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect(),
    });
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
            None => match &*current.scope.borrow() {
                Some(scope) => scope.token.is_cancelled(),
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
                let scope = current.scope.borrow();
                let Some(scope) = scope.as_ref() else {
                    return Step::Ready(Ok(()));
                };
                if scope.token.is_cancelled() || scope.enforce_deadlines() {
                    return Step::Ready(Err(scope.observe_cancellation()));
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
        match CURRENT.try_with(|current| this.step(current)) {
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
