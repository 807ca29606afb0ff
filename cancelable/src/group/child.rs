//! One child of a group: its scope, the wrapper that gives it the group's
//! grace period, the guard that reports its end exactly once, and the
//! handle that receives its result.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use super::error::{BoxError, TaskError};
use super::state::{lock, GroupShared, Panic};
use crate::current;
use crate::scope::ScopeShared;
use crate::sync::Ordering;
use crate::{CancelScope, CancellationToken, OperationStatus, ScopeHandle, TryRun};

/// Keeps scopes polling their body once cancelled, as a running
/// [`shield`](crate::shield) does, while it lives: the group uses it to
/// give its children (and itself) their grace period instead of being
/// dropped at once.
pub(crate) struct Hold(Vec<Arc<ScopeShared>>);

impl Hold {
    /// Holds the current scope and the scopes around it, up to the nearest
    /// shield (those whose cancellation reaches the code here).
    pub(crate) fn chain() -> Hold {
        Hold::scopes(current::current_chain())
    }

    /// Holds one scope.
    pub(crate) fn scope(scope: &Arc<ScopeShared>) -> Hold {
        Hold::scopes(vec![scope.clone()])
    }

    fn scopes(scopes: Vec<Arc<ScopeShared>>) -> Hold {
        for scope in &scopes {
            scope.shields.fetch_add(1, Ordering::AcqRel);
        }
        Hold(scopes)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        for scope in self.0.drain(..) {
            scope.shields.fetch_sub(1, Ordering::AcqRel);
            // A cancelled scope waiting for us can end now.
            if scope.token.is_cancelled() {
                scope.token.wake_owner();
            }
        }
    }
}

pin_project! {
    /// A child's body inside its scope: turns its error into a
    /// [`BoxError`], and in a group with a grace period keeps the scope
    /// polling the body once the *group* is cancelled, so that the body
    /// reaches a checkpoint and cleans up. A cancellation of the child's
    /// own (its scope's sources, its handle) drops the body at once, as
    /// any scope does.
    pub(crate) struct Held<F> {
        #[pin]
        body: Option<F>,
        grace: Option<Grace>,
    }
}

pub(crate) struct Grace {
    _hold: Hold,
    own: ScopeHandle,
    group: CancellationToken,
}

impl<F, T, E> Future for Held<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(grace) = this.grace.as_ref() {
            // The group records its cause before it cancels its children.
            if grace.own.is_cancelled() && grace.group.recorded_cause().is_none() {
                let cancelled = grace.own.shared.observe_cancellation();
                this.body.set(None);
                *this.grace = None;
                return Poll::Ready(Err(Box::new(cancelled)));
            }
        }
        let Some(body) = this.body.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let output = std::task::ready!(body.poll(cx));
        this.body.set(None);
        *this.grace = None;
        Poll::Ready(output.map_err(Into::into))
    }
}

/// The result of a child, shared by the child and its handle.
pub(crate) struct Slot<T> {
    inner: Mutex<SlotInner<T>>,
    finished: AtomicBool,
}

struct SlotInner<T> {
    result: Option<Result<T, TaskError>>,
    waker: Option<Waker>,
    taken: bool,
}

impl<T> Slot<T> {
    fn new(result: Option<Result<T, TaskError>>) -> Arc<Self> {
        Arc::new(Slot {
            finished: AtomicBool::new(result.is_some()),
            inner: Mutex::new(SlotInner {
                result,
                waker: None,
                taken: false,
            }),
        })
    }

    fn fill(&self, result: Result<T, TaskError>) {
        let waker = {
            let mut inner = lock(&self.inner);
            inner.result = Some(result);
            self.finished.store(true, StdOrdering::Release);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// An awaitable handle to a child of a [`TaskGroup`](crate::TaskGroup),
/// returned by [`Group::start_soon`](crate::Group::start_soon) and
/// [`Group::spawn`](crate::Group::spawn).
///
/// It resolves to the child's value, or to a [`TaskError`] saying why
/// there is none. Dropping it leaves the child running (the group still
/// waits for it).
///
/// ```
/// use cancelable::TaskGroup;
///
/// # futures::executor::block_on(async {
/// TaskGroup::new()
///     .run(|group| async move {
///         let forever = group.start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
///         assert!(!forever.is_finished());
///         forever.cancel();
///         assert!(forever.await.unwrap_err().is_cancelled());
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await
///     .unwrap();
/// # });
/// ```
pub struct TaskHandle<T> {
    slot: Arc<Slot<T>>,
    scope: Option<ScopeHandle>,
}

impl<T> TaskHandle<T> {
    /// A handle to a child that was never started.
    pub(crate) fn not_started() -> Self {
        TaskHandle {
            slot: Slot::new(Some(Err(TaskError::NotStarted))),
            scope: None,
        }
    }

    /// Cancels the child's scope (reason [`CancelReason::Manual`]): it
    /// ends with [`TaskError::Cancelled`], which is not a failure, so the
    /// group goes on. Returns `true` if this call cancelled it.
    ///
    /// [`CancelReason::Manual`]: crate::CancelReason::Manual
    pub fn cancel(&self) -> bool {
        self.scope.as_ref().is_some_and(ScopeHandle::cancel)
    }

    /// `true` once the child has ended (or was never started).
    pub fn is_finished(&self) -> bool {
        self.slot.finished.load(StdOrdering::Acquire)
    }

    /// The operation id of the child's scope; `None` if it never started.
    pub fn id(&self) -> Option<u64> {
        self.scope.as_ref().map(ScopeHandle::id)
    }

    /// A handle to the child's scope (its status, context, deadline);
    /// `None` if it never started.
    pub fn scope(&self) -> Option<&ScopeHandle> {
        self.scope.as_ref()
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = lock(&self.slot.inner);
        if let Some(result) = inner.result.take() {
            inner.taken = true;
            return Poll::Ready(result);
        }
        assert!(!inner.taken, "a TaskHandle was polled after it completed");
        match &mut inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Unpin for TaskHandle<T> {}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Reports an accepted child's end to its handle and its group, exactly
/// once: when it ends, or when it is dropped before (its group ran out of
/// grace, was dropped, or aborted it).
pub(crate) struct Done<T> {
    slot: Arc<Slot<T>>,
    group: Arc<GroupShared>,
    scope: ScopeHandle,
    pub(crate) spawned: Option<usize>,
}

impl<T> Done<T> {
    fn end(&self, result: Result<T, TaskError>, panic: Option<Panic>) {
        let error = result.as_ref().err().cloned();
        self.slot.fill(result);
        self.group
            .child_ended(&self.scope, error.as_ref(), panic, self.spawned);
    }
}

/// A child that was armed but never reported its end (see [`Done`]).
struct Armed<T>(Option<Done<T>>);

impl<T> Drop for Armed<T> {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let cancelled = done.scope.shared.observe_cancellation();
            done.end(Err(TaskError::Cancelled(cancelled)), None);
        }
    }
}

pin_project! {
    /// A child: its body run in its own scope, a child scope of the group.
    pub(crate) struct ChildTask<F, T>
    where
        Held<F>: Future,
    {
        // `None` once ended: the body is dropped before the end is reported,
        // so that nothing of it outlives the group.
        #[pin]
        run: Option<TryRun<Held<F>>>,
        scope: ScopeHandle,
        done: Armed<T>,
    }
}

impl<F, T, E> ChildTask<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    /// The child `body` in `scope`, and its handle; not yet counted by the
    /// group (see [`arm`](Self::arm)).
    pub(crate) fn new(
        group: &Arc<GroupShared>,
        scope: CancelScope,
        body: F,
    ) -> (Self, TaskHandle<T>) {
        let handle = scope.handle();
        let grace = group.grace.map(|_| Grace {
            _hold: Hold::scope(&handle.shared),
            own: handle.clone(),
            group: group.scope.shared.token.clone(),
        });
        let held = Held {
            body: Some(body),
            grace,
        };
        let slot = Slot::new(None);
        let child = ChildTask {
            run: Some(scope.try_run(held)),
            scope: handle.clone(),
            done: Armed(None),
        };
        let task = TaskHandle {
            slot,
            scope: Some(handle),
        };
        (child, task)
    }

    /// The group accepted the child: from now on its end is reported.
    pub(crate) fn arm(&mut self, group: &Arc<GroupShared>, task: &TaskHandle<T>) {
        self.done.0 = Some(Done {
            slot: task.slot.clone(),
            group: group.clone(),
            scope: self.scope.clone(),
            spawned: None,
        });
    }

    /// Forgets the arming of a child its group refused after all.
    pub(crate) fn disarm(self: Pin<&mut Self>) {
        self.project().done.0 = None;
    }

    /// Records the key of the child's abort handle in its group.
    pub(crate) fn set_spawned(&mut self, key: usize) {
        if let Some(done) = &mut self.done.0 {
            done.spawned = Some(key);
        }
    }
}

impl<F, T, E> Future for ChildTask<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(run) = this.run.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let (result, panic) = match catch_unwind(AssertUnwindSafe(|| run.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(value))) => (Ok(value), None),
            Ok(Poll::Ready(Err(error))) => (Err(classify(error, this.scope)), None),
            Err(payload) => (
                Err(TaskError::Panicked(panic_message(&*payload).into())),
                Some(payload),
            ),
        };
        this.run.set(None);
        if let Some(done) = this.done.0.take() {
            done.end(result, panic);
        }
        Poll::Ready(())
    }
}

/// A child's `Err`: a cancellation if its scope ended cancelled (a
/// source fired, or the body returned after a checkpoint saw the
/// cancellation), a failure otherwise.
fn classify(error: BoxError, scope: &ScopeHandle) -> TaskError {
    if scope.status() != OperationStatus::Cancelled {
        return TaskError::Failed(Arc::from(error));
    }
    match error.downcast::<crate::Cancelled>() {
        Ok(cancelled) => TaskError::Cancelled(*cancelled),
        Err(_) => TaskError::Cancelled(scope.shared.observe_cancellation()),
    }
}

/// The message of a panic payload, as the standard panic hook prints it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a task panicked (with a non-string payload)".to_owned()
    }
}

pin_project! {
    /// A child running on an executor: polled with the group's scope as the
    /// current scope, so that the child's scope starts as its child.
    pub(crate) struct Spawned<C> {
        #[pin]
        child: C,
        group: Option<Arc<ScopeShared>>,
    }
}

impl<C> Spawned<C> {
    pub(crate) fn new(child: C, group: &Arc<GroupShared>) -> Self {
        Spawned {
            child,
            group: Some(group.scope.shared.clone()),
        }
    }
}

impl<C: Future<Output = ()>> Future for Spawned<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let child = this.child;
        // `ChildTask` contains panics, so none crosses `enter`.
        current::enter(this.group, || child.poll(cx))
    }
}
