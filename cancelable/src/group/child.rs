//! One child of a group: its scope, the wrapper that gives it the group's
//! grace period, the guard that reports its end exactly once, and the
//! handle that receives its result.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering as StdOrdering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use super::aborts::Abort;
use super::error::{panic_message, BoxError, TaskError};
use super::incoming::LocalNode;
use super::state::{lock, GroupShared, Panic};
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

/// What a child and its handle share: who the child is, how its scope is
/// reached, and its result.
///
/// # Reaching the child's scope
///
/// A child's scope makes no shared state unless something asks for it
/// (`scope/lazy.rs`): its handle (`cancel`, `scope`), a tracked group
/// (made when the child is built), or the code inside. The handle and the
/// child's first poll decide under the slot's lock, so that the scope has
/// exactly one state and no cancel is lost:
///
/// 1. **Before the child's first poll**, whoever needs the state first
///    makes it: the handle makes a fresh one ([`Reach::Made`]), which the
///    child's run adopts at its first poll, as a scope adopts the state
///    `CancelScope::handle` made before its run; a handle's `cancel`
///    cancels that state's token, which the child then starts with.
/// 2. **At its first poll**, a child whose handle still lives and whose
///    state nobody made makes it ([`Reach::Known`] from then on): the
///    handle may ask at any time after. A child without a handle, whose
///    state nobody made, starts lazy: nothing outside its run can reach it
///    any more (a handle is never made again, [`HANDLE`] is cleared by its
///    drop), so no protocol is needed past this poll. The first poll reads
///    `reach` without the lock when it says nothing needs doing: the
///    handle's drop clears [`HANDLE`] (release) after every state it made
///    was recorded ([`MADE`], set under the lock before, in the same
///    atomic), so a poll that reads no [`HANDLE`] also reads every
///    [`MADE`].
///
/// 3. **Once its state is made**, the slot keeps it weakly
///    ([`Reach::Known`]): the handle cancels and shows the scope only while
///    the child's run exists.
///
/// Model-checked by loom as a step-for-step model of these functions
/// (`cancelable/tests/loom.rs`, `group_child_reach`): a cancel racing the
/// first poll is never lost, and the child never runs beside a state its
/// handle made.
pub(crate) struct Slot<T> {
    /// The child's id; `None` for a handle to a child never started.
    id: Option<u64>,
    inner: Mutex<SlotInner<T>>,
    finished: AtomicBool,
    /// [`HANDLE`], [`MADE`], [`KNOWN`]: what the child's first poll reads.
    reach: AtomicU8,
}

/// `Slot::reach`: the child's handle lives.
const HANDLE: u8 = 1;
/// `Slot::reach`: the handle made the child's state, for the child to
/// adopt at its first poll.
const MADE: u8 = 2;
/// `Slot::reach`: the child's state is known to the slot (made up front,
/// or at its first poll).
const KNOWN: u8 = 4;

/// How the child's scope is reached (see [`Slot`]), under the slot's lock.
enum Reach {
    /// No state yet: made on demand.
    Unknown,
    /// Made by the handle before the child's first poll, which adopts it.
    Made(ScopeHandle),
    /// The child's state, while its run exists.
    Known(WeakScope),
}

/// The slot's state under its lock. Small on purpose: the slot is one
/// allocation per child, and the allocator's fast path takes chunks up to
/// 128 bytes (glibc's fast bins) — a slot for a `()` child fits.
struct SlotInner<T> {
    result: Option<Result<T, TaskError>>,
    /// The handle's task, woken when the result is there.
    waker: Option<Waker>,
    /// A spawned child's task, woken when its group aborts it.
    task: Option<Waker>,
    taken: bool,
    /// A spawned child's group aborted it (see [`ChildAbort`](super::aborts::ChildAbort)).
    aborted: bool,
    /// How the child's scope is reached.
    scope: Reach,
}

impl<T> Slot<T> {
    fn new(id: Option<u64>, scope: Reach, result: Option<Result<T, TaskError>>) -> Arc<Self> {
        let known = match scope {
            Reach::Known(_) => KNOWN,
            _ => 0,
        };
        Arc::new(Slot {
            id,
            finished: AtomicBool::new(result.is_some()),
            // A child's handle is made with it.
            reach: AtomicU8::new(known | if id.is_some() { HANDLE } else { 0 }),
            inner: Mutex::new(SlotInner {
                result,
                waker: None,
                task: None,
                taken: false,
                aborted: false,
                scope,
            }),
        })
    }

    /// The child's scope, for its handle: made now if nothing has made it
    /// and the child has not started (rule 1 of [`Slot`]); `None` once the
    /// child ended, or if it never started.
    fn scope(&self) -> Option<ScopeHandle> {
        self.id?;
        let mut inner = lock(&self.inner);
        match &inner.scope {
            Reach::Known(scope) => scope.upgrade(),
            Reach::Made(scope) => Some(scope.clone()),
            // Ended (or dropped) before its first poll: nothing to reach.
            Reach::Unknown if self.finished.load(StdOrdering::Acquire) => None,
            Reach::Unknown => {
                let scope = seam::new_state();
                inner.scope = Reach::Made(scope.clone());
                self.reach.fetch_or(MADE, StdOrdering::Release);
                Some(scope)
            }
        }
    }

    /// The child's first poll, before its scope starts: adopts the state
    /// its handle made, or makes one if its handle lives (rule 2 of
    /// [`Slot`]). Nothing to do, without the lock, for a child nobody can
    /// reach: its scope starts lazy.
    fn before_start<F: Future>(&self, run: Pin<&mut ScopeTryRun<F>>) {
        let reach = self.reach.load(StdOrdering::Acquire);
        if reach & MADE == 0 && (reach & HANDLE == 0 || reach & KNOWN != 0) {
            return;
        }
        let mut inner = lock(&self.inner);
        let scope = match std::mem::replace(&mut inner.scope, Reach::Unknown) {
            Reach::Made(scope) => scope,
            Reach::Known(scope) => {
                inner.scope = Reach::Known(scope);
                return;
            }
            Reach::Unknown => seam::new_state(),
        };
        inner.scope = Reach::Known(WeakScope::of_handle(&scope));
        self.reach.fetch_or(KNOWN, StdOrdering::Release);
        let adopted = run.adopt(&scope);
        debug_assert!(adopted, "a child without state before its start");
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

impl<T: Send> Abort for Slot<T> {
    fn abort(&self) {
        let task = {
            let mut inner = lock(&self.inner);
            inner.aborted = true;
            inner.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<T> Slot<T> {
    /// A spawned child's poll: `true` if its group aborted it; else its
    /// task is the one to wake when that happens.
    fn aborted(&self, cx: &Context<'_>) -> bool {
        let mut inner = lock(&self.inner);
        if !inner.aborted {
            match &mut inner.task {
                Some(task) if task.will_wake(cx.waker()) => {}
                task => *task = Some(cx.waker().clone()),
            }
        }
        inner.aborted
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

/// An awaitable handle to a child of a [`TaskGroup`](crate::group::TaskGroup),
/// returned by [`Group::start_soon`](crate::group::Group::start_soon) and
/// [`Group::spawn`](crate::group::Group::spawn).
///
/// It resolves to the child's value, or to a [`TaskError`] saying why
/// there is none. Dropping it leaves the child running (the group still
/// waits for it).
///
/// ```
/// use cancelable::group::TaskGroup;
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
    /// A supervised child's restart count.
    restarts: Option<Arc<AtomicU32>>,
}

impl<T> TaskHandle<T> {
    /// The handle of the child that shares `slot`.
    pub(crate) fn of(slot: Arc<Slot<T>>) -> Self {
        TaskHandle {
            slot,
            restarts: None,
        }
    }

    /// A handle to a child that was never started.
    pub(crate) fn not_started() -> Self {
        TaskHandle {
            slot: Slot::new(None, Reach::Unknown, Some(Err(TaskError::NotStarted))),
            restarts: None,
        }
    }

    /// The handle of a supervised child, whose restarts `restarts` counts.
    pub(crate) fn with_restarts(mut self, restarts: Arc<AtomicU32>) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// How many times the child was restarted so far: always 0 but for a
    /// supervised child (see [`ChildBuilder::supervised`](crate::group::ChildBuilder::supervised)).
    pub fn restarts(&self) -> u32 {
        self.restarts
            .as_ref()
            .map_or(0, |restarts| restarts.load(StdOrdering::Relaxed))
    }

    /// Cancels the child's scope (reason [`CancelReason::Manual`](crate::CancelReason::Manual)): it
    /// ends with [`TaskError::Cancelled`], which is not a failure, so the
    /// group goes on. Returns `true` if this call cancelled it: `false`
    /// if it was cancelled already, has ended, or never started.
    pub fn cancel(&self) -> bool {
        self.slot.scope().is_some_and(|scope| scope.cancel())
    }

    /// `true` once the child has ended (or was never started).
    pub fn is_finished(&self) -> bool {
        self.slot.finished.load(StdOrdering::Acquire)
    }

    /// The child's id in its group (1 for the first child started, and so
    /// on), as [`TaskOutcome::id`](crate::group::TaskOutcome::id) and
    /// [`TaskFailure::id`](crate::group::TaskFailure::id) report it; `None` if it
    /// was never started.
    pub fn id(&self) -> Option<u64> {
        self.slot.id
    }

    /// A handle to the child's scope (its operation id, status, context,
    /// deadline) while the child runs; `None` once it has ended or if it
    /// never started.
    pub fn scope(&self) -> Option<ScopeHandle> {
        self.slot.scope()
    }
}

impl<T> Drop for TaskHandle<T> {
    fn drop(&mut self) {
        // After every state it made was recorded (`Slot`, rule 2).
        self.slot.reach.fetch_and(!HANDLE, StdOrdering::Release);
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
            .field("restarts", &self.restarts())
            .finish()
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

impl<T> Slot<T> {
    /// The slot a new child of `group`, to run in `scope`, shares with its
    /// handle: the child's id, and how its scope is reached — known now by
    /// a weak reference if the group tracks its children or the scope has
    /// a state already (a handle was taken), else made on demand (see
    /// [`Slot`]).
    #[inline(always)]
    pub(crate) fn for_child(group: &GroupShared, scope: &CancelScope) -> Arc<Self> {
        let id = group.next_id();
        let reach = match group.is_tracked() || seam::has_state(scope) {
            true => {
                let weak = WeakScope::of(scope);
                group.track_start(id, &weak);
                Reach::Known(weak)
            }
            false => Reach::Unknown,
        };
        Slot::new(Some(id), reach, None)
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
