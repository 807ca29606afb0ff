//! Starting a child and waiting until it says it is ready (trio's
//! `nursery.start`, anyio's `TaskGroup.start`): [`Group::start`](super::Group::start), the
//! [`Ready`] the child reports with, the [`Start`] future the starter
//! awaits and its [`StartError`].
//!
//! | the child, before it reports | the starter gets | the group |
//! |---|---|---|
//! | calls [`Ready::ready(value)`](Ready::ready) | `Ok(value)`; the child keeps running in the group | goes on; what the child does next counts as any child's |
//! | returns `Err` or panics | [`StartError::Task`] with its [`TaskError::Failed`] / [`TaskError::Panicked`] | not affected (the error went to the starter) |
//! | is cancelled (its group, the starter's cancellation) | [`StartError::Task`] with [`TaskError::Cancelled`] | as for any cancelled child |
//! | returns `Ok` | [`StartError::EndedWithoutReady`] | not affected |
//! | is never started (closed group) | [`StartError::Task`] with [`TaskError::NotStarted`], at once | not affected |
//!
//! The starter's own cancellation (a scope around it, seen as a
//! checkpoint sees it) or dropping the [`Start`] future before the child
//! reports cancels the child.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;

use super::error::{panic_message, BoxError, TaskError};
use super::state::lock;
use super::task_handle::TaskHandle;
use crate::scope::seam;
use crate::wait::Watch;
use crate::Cancelled;

/// What a child started with [`Group::start`](super::Group::start) and its starter share.
struct Shared<V> {
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    /// The child reported (a value or an error before its readiness).
    reported: bool,
    outcome: Option<Result<V, StartError>>,
    waker: Option<Waker>,
}

impl<V> Shared<V> {
    /// Reports `outcome` once; `false` if something was reported before.
    fn report(&self, outcome: Result<V, StartError>) -> bool {
        let waker = {
            let mut inner = lock(&self.inner);
            if inner.reported {
                return false;
            }
            inner.reported = true;
            inner.outcome = Some(outcome);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    fn reported(&self) -> bool {
        lock(&self.inner).reported
    }
}

/// Handed to a child started with [`Group::start`](super::Group::start): the child calls
/// [`ready`](Self::ready) once it is ready (a server bound its port, a
/// worker connected), and its starter gets the value.
///
/// Dropping it without calling `ready` leaves the starter waiting for the
/// child's end, which then is an error ([`StartError::EndedWithoutReady`]
/// or the child's own).
pub struct Ready<V> {
    shared: Arc<Shared<V>>,
}

impl<V> Ready<V> {
    /// Reports readiness with `value`: the starter's [`Start`] future
    /// resolves to `Ok(value)`, and the child goes on running in its
    /// group. If the starter is gone (cancelled or dropped meanwhile), the
    /// value is dropped.
    pub fn ready(self, value: V) {
        self.shared.report(Ok(value));
    }
}

impl<V> fmt::Debug for Ready<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("reported", &self.shared.reported())
            .finish()
    }
}

/// Why [`Group::start`](super::Group::start) produced no value.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The child ended before it reported readiness: it failed, panicked,
    /// was cancelled (by its group or the starter's cancellation), or was
    /// never started (its group was closed or had ended).
    Task(TaskError),
    /// The child returned `Ok` without calling [`Ready::ready`].
    EndedWithoutReady,
}

impl StartError {
    /// `true` if the child was cancelled before it reported readiness.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, StartError::Task(error) if error.is_cancelled())
    }

    /// The child's error, for [`StartError::Task`].
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            StartError::Task(error) => Some(error),
            StartError::EndedWithoutReady => None,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Task(error) => write!(f, "the child ended before it was ready: {error}"),
            StartError::EndedWithoutReady => f.write_str(
                "the child ended without reporting readiness: call `ready.ready(value)` in it \
                 once it is ready",
            ),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Task(error) => Some(error),
            StartError::EndedWithoutReady => None,
        }
    }
}

/// The future returned by [`Group::start`](super::Group::start): resolves once the child
/// reported readiness (to its value) or ended before (to the error).
/// Dropping it before then cancels the child.
#[must_use = "futures do nothing unless awaited; dropping it cancels the child"]
pub struct Start<V> {
    shared: Arc<Shared<V>>,
    handle: TaskHandle<()>,
    /// The starter's scope, bound at the first poll.
    watch: Watch,
    done: bool,
}

impl<V> Start<V> {
    fn finish(&mut self, outcome: Result<V, StartError>) -> Poll<Result<V, StartError>> {
        self.done = true;
        Poll::Ready(outcome)
    }
}

impl<V> Future for Start<V> {
    type Output = Result<V, StartError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "a Start future was polled after it completed");
        {
            let mut inner = lock(&this.shared.inner);
            if let Some(outcome) = inner.outcome.take() {
                drop(inner);
                return this.finish(outcome);
            }
            match &mut inner.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                waker => *waker = Some(cx.waker().clone()),
            }
        }
        if let Poll::Ready(end) = Pin::new(&mut this.handle).poll(cx) {
            // The child reports before it returns: read again.
            let outcome = lock(&this.shared.inner).outcome.take();
            let outcome = outcome.unwrap_or(match end {
                Ok(()) => Err(StartError::EndedWithoutReady),
                Err(error) => Err(StartError::Task(error)),
            });
            return this.finish(outcome);
        }
        if let Poll::Ready(cancelled) = this.watch.poll_cancelled(cx) {
            // The starter is cancelled: so is the child, unless it reported
            // meanwhile.
            this.handle.cancel();
            let outcome = lock(&this.shared.inner).outcome.take();
            return this
                .finish(outcome.unwrap_or(Err(StartError::Task(TaskError::Cancelled(cancelled)))));
        }
        Poll::Pending
    }
}

impl<V> Drop for Start<V> {
    fn drop(&mut self) {
        if !self.done && !self.shared.reported() {
            self.handle.cancel();
        }
    }
}

impl<V> fmt::Debug for Start<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Start")
            .field("child", &self.handle.id())
            .field("reported", &self.shared.reported())
            .finish_non_exhaustive()
    }
}

/// The child's end as the outcome rule classifies it (see
/// [`CancelScope::try_run`]), for an error before readiness.
fn before_ready(error: BoxError) -> TaskError {
    let scope = seam::current();
    let cancelled = scope.filter(|scope| {
        seam::scope_cancel_recorded(scope)
            && seam::err_is_cancellation(scope, error.is::<Cancelled>())
    });
    match cancelled {
        Some(scope) => TaskError::Cancelled(seam::observe_cancellation(&scope)),
        None => TaskError::Failed(Arc::from(error)),
    }
}

/// A child started with readiness, split in two so that the builder
/// starts it (the one implementation of [`Group::start`](super::Group::start)
/// and [`ChildBuilder::start`](super::ChildBuilder::start)): the body the
/// child runs, which reports its end to the starter until it is ready, and
/// the starter's half, which [`Starter::started`] turns into the future of
/// its readiness once the child is in the group.
pub(super) fn with_readiness<C, F, V, T, E>(
    child: C,
) -> (
    impl Future<Output = Result<(), BoxError>> + Send + 'static,
    Starter<V>,
)
where
    C: FnOnce(Ready<V>) -> F,
    F: Future<Output = Result<T, E>> + Send + 'static,
    V: Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + 'static,
{
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            reported: false,
            outcome: None,
            waker: None,
        }),
    });
    let body = child(Ready {
        shared: shared.clone(),
    });
    let report = shared.clone();
    let body = async move {
        let end = AssertUnwindSafe(body).catch_unwind().await;
        let ready = report.reported();
        match end {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if ready => Err(error.into()),
            Ok(Err(error)) => {
                report.report(Err(StartError::Task(before_ready(error.into()))));
                Ok::<(), BoxError>(())
            }
            Err(payload) if ready => std::panic::resume_unwind(payload),
            Err(payload) => {
                let message = panic_message(&*payload).into();
                report.report(Err(StartError::Task(TaskError::Panicked(message))));
                Ok(())
            }
        }
    };
    (body, Starter(shared))
}

/// The starter's half of [`with_readiness`].
pub(super) struct Starter<V>(Arc<Shared<V>>);

impl<V> Starter<V> {
    /// The future of the readiness of the child started as `handle`.
    pub(super) fn started(self, handle: TaskHandle<()>) -> Start<V> {
        Start {
            shared: self.0,
            handle,
            watch: Watch::current_at_first_poll(),
            done: false,
        }
    }
}
