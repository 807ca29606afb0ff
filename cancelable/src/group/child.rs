//! One child of a group: its scope, the wrapper that gives it the group's
//! grace period and the guard that reports its end exactly once, built
//! into its node (`node.rs`; what it shares with its handle is in
//! `slot.rs`, the handle in `task_handle.rs`).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::aborts::ChildAbort;
use super::error::{panic_message, BoxError, TaskError};
use super::local::Local;
use super::node::{new_child, Child, Owned};
use super::slot::Slot;
use super::state::{GroupShared, Panic};
use super::task_handle::TaskHandle;
use crate::scope::seam::{self, WeakScope};
use crate::{
    CancelReason, CancelScope, Cancelled, GracePolicy, GraceStart, GraceValue, ScopeHandle,
    ScopeTryRun,
};

pin_project! {
    /// A child's body inside its scope: turns its error into a
    /// [`ChildError`]. The group's grace is its scope's (see
    /// [`child_scope`]).
    pub(crate) struct Held<F> {
        #[pin]
        body: F,
    }
}

/// A child's error as its scope returns it: the scope's own cancellation
/// as it is (no box to make and take apart again), or the body's error.
pub(crate) enum ChildError {
    Cancelled(Cancelled),
    Body(BoxError),
}

impl From<Cancelled> for ChildError {
    fn from(cancelled: Cancelled) -> Self {
        ChildError::Cancelled(cancelled)
    }
}

impl<F, T, E> Future for Held<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, ChildError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let output = std::task::ready!(self.project().body.poll(cx));
        Poll::Ready(output.map_err(|error| ChildError::Body(error.into())))
    }
}

/// The child's scope name, read from its run's state (an unnamed child
/// may have none: `scope/lazy.rs`).
fn name_of<F: Future>(run: &ScopeTryRun<F>) -> Option<Arc<str>> {
    let name = seam::name(&run.state()?)?;
    Some(Arc::from(name))
}

/// The error describing the cancellation of a child dropped before its
/// end, read from its run (still there) in `group`.
fn cancelled_of<F: Future>(run: &ScopeTryRun<F>, group: &GroupShared) -> Cancelled {
    match run.state() {
        Some(scope) => seam::observe_cancellation(&scope),
        None => seam::dropped_without_state(&group.scope),
    }
}

/// Reports an accepted child's end to its handle and its group, exactly
/// once: when it ends, or when it is dropped before (its group ran out of
/// grace, was dropped, or aborted it).
pub(crate) struct Done {
    group: Arc<GroupShared>,
    pub(crate) spawned: Option<usize>,
}

impl Done {
    fn end<T>(
        self,
        slot: &Slot<T>,
        id: u64,
        result: Result<T, TaskError>,
        panic: Option<Panic>,
        name: Option<Arc<str>>,
    ) {
        // A copy of the error only for whoever reads it besides the handle:
        // the failure record and results streams.
        let streamed = self.group.wants_names();
        let error = match &result {
            Err(error) if error.is_failure() || streamed => Some(error.clone()),
            _ => None,
        };
        let state = super::summary::ChildState::of(&result);
        // Nobody can read the result once the handle is gone: drop it
        // here, unlocked.
        if slot.has_handle() {
            slot.fill(result);
        } else {
            drop(result);
        }
        let end = super::state::End {
            id,
            name,
            error: error.as_ref(),
            state,
            streamed,
            panic,
            spawned: self.spawned,
        };
        self.group.child_ended(end);
    }
}

pin_project! {
    /// A child: its body run in its own scope, a child scope of the group,
    /// in its node (`node.rs`) with the slot it shares with its handle.
    pub(crate) struct ChildTask<F, T>
    where
        Held<F>: Future,
    {
        // `None` once ended: the body is dropped before the end is reported,
        // so that nothing of it outlives the group.
        #[pin]
        run: Option<ScopeTryRun<Held<F>>>,
        done: Option<Done>,
        // Polled once: its scope has started.
        started: bool,
        _result: std::marker::PhantomData<fn() -> T>,
    }
}

impl<F, T, E> ChildTask<F, T>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError>,
{
    /// The child `body` in `scope` (see [`child_scope`]), its end reported
    /// to `group` (a spawned child's: under its abort handle's `key`).
    #[inline(always)]
    fn new(group: &Arc<GroupShared>, scope: CancelScope, body: F, spawned: Option<usize>) -> Self {
        ChildTask {
            run: Some(scope.try_run(Held { body }).detached()),
            done: Some(Done {
                group: group.clone(),
                spawned,
            }),
            started: false,
            _result: std::marker::PhantomData,
        }
    }

    /// The child `body` in `scope`, armed, in its node for the group to
    /// poll, and its handle: built in one piece, so that the large child is
    /// moved once, into its node.
    pub(crate) fn new_local(
        group: &Arc<GroupShared>,
        scope: CancelScope,
        body: F,
    ) -> (Owned, TaskHandle<T>) {
        let mut scope = child_scope(group, scope);
        // Woken by its group when the group's token is cancelled
        // (`LocalSet::wake_all`): no waiter of its own on that token.
        seam::woken_by_parent(&mut scope);
        let slot = slot_for(group, &scope);
        let local = Some(Local::new(group.clone()));
        let (owned, node) = new_child(slot, ChildTask::new(group, scope, body, None), local);
        (owned, TaskHandle::of(node))
    }

    /// The child `body` in `scope` (see [`child_scope`]) with `slot`,
    /// accepted by its group as the spawned child `key`, in its node: its
    /// owner (for its executor), its abort handle and its handle.
    pub(crate) fn new_spawned(
        group: &Arc<GroupShared>,
        scope: CancelScope,
        slot: Slot<T>,
        body: F,
        key: usize,
    ) -> (Spawned, ChildAbort, TaskHandle<T>) {
        let (owned, node) = new_child(slot, ChildTask::new(group, scope, body, Some(key)), None);
        let spawned = Spawned {
            child: owned,
            group: Some(group.scope.clone()),
        };
        (spawned, ChildAbort(node.clone()), TaskHandle::of(node))
    }
}

/// The slot a new child of `group`, to run in `scope`, shares with its
/// handle: the child's id, and its scope known now by a weak reference if
/// the group tracks its children or the scope has a state already (a
/// handle was taken), else made on demand (`slot.rs`).
#[inline(always)]
pub(crate) fn slot_for<T>(group: &GroupShared, scope: &CancelScope) -> Slot<T> {
    let id = group.next_id();
    let known = (group.is_tracked() || seam::has_state(scope)).then(|| {
        let weak = WeakScope::of(scope);
        group.track_start(id, &weak);
        weak
    });
    Slot::for_child(id, known)
}

/// The scope a child of `group` runs in: a child with a grace period of
/// its own keeps it, for any cancellation; the others get the group's,
/// for the group's cancellation only, and end with the cancellation
/// whatever they return within it.
#[inline(always)]
pub(crate) fn child_scope(group: &GroupShared, scope: CancelScope) -> CancelScope {
    match group.grace {
        Some(grace) if !scope.has_grace() => scope.grace(grace).grace_policy(
            GracePolicy::new()
                .start(GraceStart::FromParent)
                .value(GraceValue::Replace),
        ),
        _ => scope,
    }
}

impl<F, T, E> Child<T> for ChildTask<F, T>
where
    F: Future<Output = Result<T, E>> + Send,
    T: Send,
    E: Into<BoxError>,
{
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, slot: &Slot<T>) -> Poll<()> {
        let mut this = self.project();
        let Some(mut run) = this.run.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let Some(id) = slot.id() else {
            return Poll::Ready(());
        };
        if !*this.started {
            *this.started = true;
            slot.before_start(run.as_mut());
        }
        if this
            .done
            .as_ref()
            .is_some_and(|done| done.spawned.is_some())
        {
            // Running on an executor: aborted by its group, it ends here,
            // unpolled; its drop reports it cancelled.
            if slot.aborted(cx) {
                return Poll::Ready(());
            }
        }
        let polled = catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx)));
        if let Ok(Poll::Pending) = polled {
            return Poll::Pending;
        }
        let Some(done) = this.done.take() else {
            this.run.set(None);
            return Poll::Ready(());
        };
        let (result, panic) = match polled {
            Ok(Poll::Pending) => unreachable!("returned above"),
            Ok(Poll::Ready(Ok(value))) => (Ok(value), None),
            Ok(Poll::Ready(Err(error))) => (Err(classify(error, &run, &done.group)), None),
            Err(payload) => (
                Err(TaskError::Panicked(panic_message(&*payload).into())),
                Some(payload),
            ),
        };
        let failed = result.as_ref().is_err_and(TaskError::is_failure);
        let name = (failed || done.group.wants_names())
            .then(|| name_of(&run))
            .flatten();
        this.run.set(None);
        done.end(slot, id, result, panic, name);
        Poll::Ready(())
    }

    /// Dropped before its end: cancelled.
    fn abandon(self: Pin<&mut Self>, slot: &Slot<T>) {
        let mut this = self.project();
        let Some(done) = this.done.take() else {
            this.run.set(None);
            return;
        };
        let Some(id) = slot.id() else {
            this.run.set(None);
            return;
        };
        let (name, cancelled) = match this.run.as_ref().as_pin_ref() {
            Some(run) => (
                done.group.wants_names().then(|| name_of(&run)).flatten(),
                cancelled_of(&run, &done.group),
            ),
            None => (None, Cancelled::new(CancelReason::Manual)),
        };
        this.run.set(None);
        done.end(slot, id, Err(TaskError::Cancelled(cancelled)), None, name);
    }

    fn disarm(self: Pin<&mut Self>) {
        *self.project().done = None;
    }
}

/// A child's `Err`: its cancellation or its own failure, by the outcome
/// rule (see [`CancelScope::try_run`]): the cancellation only if its scope
/// was cancelled and the child saw it, or the error is a [`Cancelled`].
/// A child whose scope made no state (`scope/lazy.rs`) can have been
/// cancelled only by its group, and cannot have seen it (seeing it makes
/// the state).
fn classify<F: Future>(error: ChildError, run: &ScopeTryRun<F>, group: &GroupShared) -> TaskError {
    // The child's run still exists: so does its state, if made.
    let scope = run.state();
    let cancelled = match &scope {
        Some(scope) => seam::scope_cancel_recorded(scope),
        None => seam::scope_cancel_recorded(&group.scope),
    };
    if !cancelled {
        let error: BoxError = match error {
            ChildError::Cancelled(cancelled) => Box::new(cancelled),
            ChildError::Body(error) => error,
        };
        return TaskError::Failed(Arc::from(error));
    }
    let error = match error {
        // The scope's own answer: it dropped the body.
        ChildError::Cancelled(cancelled) => return TaskError::Cancelled(cancelled),
        ChildError::Body(error) => error,
    };
    let error = match error.downcast::<Cancelled>() {
        Ok(cancelled) => return TaskError::Cancelled(*cancelled),
        Err(error) => error,
    };
    match scope {
        Some(scope) if seam::err_is_cancellation(&scope, false) => {
            TaskError::Cancelled(seam::observe_cancellation(&scope))
        }
        _ => TaskError::Failed(Arc::from(error)),
    }
}

/// A child running on an executor (its node's owner): first polled with
/// the group's scope as the current scope, so that the child's scope
/// starts as its child. Small (two pointers and a handle): the executor's
/// task holds it inline, with no box of its own.
pub(crate) struct Spawned {
    child: Owned,
    // `None` after the first poll: the child's scope, started, knows its
    // parent.
    group: Option<ScopeHandle>,
}

impl Future for Spawned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let child = Pin::new(&mut this.child);
        // After the first poll the child's scope has started, as the
        // group's child (it reads the current scope only when it starts):
        // the later polls need no current scope.
        let Some(group) = this.group.take() else {
            return child.poll(cx);
        };
        seam::enter(&group, || child.poll(cx))
    }
}
