//! One child of a group: its scope, the wrapper that gives it the group's
//! grace period and the guard that reports its end exactly once (what it
//! shares with its handle, and the handle, are in `slot.rs`).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::error::{panic_message, BoxError, TaskError};
use super::incoming::LocalNode;
use super::slot::{Slot, TaskHandle};
use super::state::{GroupShared, Panic};
use crate::scope::seam;
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
        slot: &Arc<Slot<T>>,
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
        // Nobody can read the result once the handle is gone (the child
        // holds the only reference): drop it here, unlocked.
        if Arc::strong_count(slot) > 1 {
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
    /// A child: its body run in its own scope, a child scope of the group.
    pub(crate) struct ChildTask<F, T>
    where
        Held<F>: Future,
    {
        // `None` once ended: the body is dropped before the end is reported,
        // so that nothing of it outlives the group.
        #[pin]
        run: Option<ScopeTryRun<Held<F>>>,
        // Shared with the handle; its `id` is always there.
        slot: Arc<Slot<T>>,
        done: Option<Done>,
        // Polled once: its scope has started.
        started: bool,
    }

    impl<F, T> PinnedDrop for ChildTask<F, T>
    where
        Held<F>: Future,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // Dropped before its end: cancelled.
            if let Some(done) = this.done.take() {
                let Some(id) = this.slot.id else {
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
                done.end(this.slot, id, Err(TaskError::Cancelled(cancelled)), None, name);
            }
        }
    }
}

impl<F, T, E> ChildTask<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    /// The child `body` in `scope`, armed and boxed with its link in the
    /// group's incoming list, for the group to poll, and its handle: built
    /// in one piece, so that the large child is moved once, into its box.
    pub(crate) fn new_local(
        group: &Arc<GroupShared>,
        scope: CancelScope,
        body: F,
    ) -> (Pin<Box<LocalNode<Self>>>, TaskHandle<T>) {
        let scope = child_scope(group, scope);
        let slot = Slot::for_child(group, &scope);
        let task = ChildTask {
            run: Some(scope.try_run(Held { body }).detached()),
            slot: slot.clone(),
            done: Some(Done {
                group: group.clone(),
                spawned: None,
            }),
            started: false,
        };
        (Box::pin(LocalNode::new(task)), TaskHandle::of(slot))
    }

    /// The child `body` in `scope` (see [`child_scope`]) with `slot`,
    /// accepted by its group as the spawned child `key`, boxed for its
    /// executor: built in one piece, straight into its box.
    pub(crate) fn new_spawned(
        group: &Arc<GroupShared>,
        scope: CancelScope,
        slot: Arc<Slot<T>>,
        body: F,
        key: usize,
    ) -> Pin<Box<Spawned<Self>>> {
        Box::pin(Spawned {
            child: ChildTask {
                run: Some(scope.try_run(Held { body }).detached()),
                slot,
                done: Some(Done {
                    group: group.clone(),
                    spawned: Some(key),
                }),
                started: false,
            },
            group: Some(group.scope.clone()),
        })
    }

    /// Forgets the arming of a child its group refused after all.
    pub(crate) fn disarm(self: Pin<&mut Self>) {
        *self.project().done = None;
    }
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

impl<F, T, E> Future for ChildTask<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(mut run) = this.run.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let Some(id) = this.slot.id else {
            return Poll::Ready(());
        };
        if !*this.started {
            *this.started = true;
            this.slot.before_start(run.as_mut());
        }
        if this
            .done
            .as_ref()
            .is_some_and(|done| done.spawned.is_some())
        {
            // Running on an executor: aborted by its group, it ends here,
            // unpolled; its drop reports it cancelled.
            if this.slot.aborted(cx) {
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
        done.end(this.slot, id, result, panic, name);
        Poll::Ready(())
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

pin_project! {
    /// A child running on an executor: first polled with the group's scope
    /// as the current scope, so that the child's scope starts as its child.
    pub(crate) struct Spawned<C> {
        #[pin]
        child: C,
        // `None` after the first poll: the child's scope, started, knows
        // its parent.
        group: Option<ScopeHandle>,
    }
}

impl<C: Future<Output = ()>> Future for Spawned<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let child = this.child;
        // After the first poll the child's scope has started, as the
        // group's child (it reads the current scope only when it starts):
        // the later polls need no current scope.
        let Some(group) = this.group.take() else {
            return child.poll(cx);
        };
        seam::enter(&group, || child.poll(cx))
    }
}
