//! What a child and its handle share ([`Slot`]): the child's id, how its
//! scope is reached (the protocol by which the handle and the child's
//! first poll agree on one state, in `Slot`'s docs), and its result. The
//! handle, `TaskHandle`, is in `task_handle.rs`; the slot lives in the
//! child's node (`node.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering as StdOrdering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;

use super::error::TaskError;
use crate::scope::seam::{self, WeakScope};
use crate::sync::lock;
use crate::{ScopeHandle, ScopeTryRun};

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
///    state nobody made, starts without one (lazy, where its scope allows:
///    `scope/lazy.rs`; else its start makes a state nobody else holds):
///    nothing outside its run can reach it any more (a handle is never
///    made again, [`HANDLE`] is cleared by its drop), so no protocol is
///    needed past this poll. The first poll reads
///    `reach` without the lock when it says nothing needs doing: the
///    handle's drop clears [`HANDLE`] (release) after every state it made
///    was recorded ([`MADE`], set under the lock before, in the same
///    atomic), so a poll that reads no [`HANDLE`] also reads every
///    [`MADE`].
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
    pub(super) id: Option<u64>,
    inner: Mutex<SlotInner<T>>,
    finished: AtomicBool,
    /// [`HANDLE`], [`MADE`], [`KNOWN`]: what the child's first poll reads.
    reach: AtomicU8,
    /// A spawned child's group aborted it (see [`ChildAbort`](super::aborts::ChildAbort)).
    aborted: AtomicBool,
    /// A spawned child's task, woken when its group aborts it.
    task: AtomicWaker,
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

/// The slot's state under its lock.
struct SlotInner<T> {
    result: Option<Result<T, TaskError>>,
    /// The handle's task, woken when the result is there.
    waker: Option<Waker>,
    taken: bool,
    /// How the child's scope is reached.
    scope: Reach,
}

impl<T> Slot<T> {
    #[inline]
    fn new(id: Option<u64>, scope: Reach, result: Option<Result<T, TaskError>>) -> Self {
        let known = match scope {
            Reach::Known(_) => KNOWN,
            _ => 0,
        };
        Slot {
            id,
            finished: AtomicBool::new(result.is_some()),
            // A child's handle is made with it.
            reach: AtomicU8::new(known | if id.is_some() { HANDLE } else { 0 }),
            aborted: AtomicBool::new(false),
            task: AtomicWaker::new(),
            inner: Mutex::new(SlotInner {
                result,
                waker: None,
                taken: false,
                scope,
            }),
        }
    }

    /// `true` while the child's handle lives (nobody else reads the
    /// result).
    #[inline]
    pub(super) fn has_handle(&self) -> bool {
        self.reach.load(StdOrdering::Acquire) & HANDLE != 0
    }

    /// The child's scope, for its handle: made now if nothing has made it
    /// and the child has not started (rule 1 of [`Slot`]); `None` once the
    /// child ended, or if it never started.
    pub(super) fn scope(&self) -> Option<ScopeHandle> {
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
    #[inline]
    pub(super) fn before_start<F: Future>(&self, run: Pin<&mut ScopeTryRun<F>>) {
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

    #[inline]
    pub(super) fn fill(&self, result: Result<T, TaskError>) {
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

impl<T> Slot<T> {
    /// Marks a spawned child aborted and wakes its task (its
    /// [`ChildAbort`](super::aborts::ChildAbort)).
    pub(super) fn abort(&self) {
        self.aborted.store(true, StdOrdering::Release);
        self.task.wake();
    }
}

impl<T> Slot<T> {
    /// A spawned child's poll: `true` if its group aborted it; else its
    /// task is the one to wake when that happens.
    #[inline]
    pub(super) fn aborted(&self, cx: &Context<'_>) -> bool {
        if self.aborted.load(StdOrdering::Acquire) {
            return true;
        }
        self.task.register(cx.waker());
        // An abort between the load and the registration woke no task:
        // read again.
        self.aborted.load(StdOrdering::Acquire)
    }
}

impl<T> Slot<T> {
    /// The slot a new child, `id`, shares with its handle: its scope known
    /// now by a weak reference (`known`: its group tracks its children, or
    /// its scope has a state already), else made on demand (see [`Slot`]).
    #[inline(always)]
    pub(super) fn for_child(id: u64, known: Option<WeakScope>) -> Self {
        let reach = match known {
            Some(weak) => Reach::Known(weak),
            None => Reach::Unknown,
        };
        Slot::new(Some(id), reach, None)
    }

    /// The slot of a handle to a child that was never started.
    pub(super) fn not_started() -> Self {
        Slot::new(None, Reach::Unknown, Some(Err(TaskError::NotStarted)))
    }

    /// The child's id; `None` for a child never started.
    #[inline]
    pub(super) fn id(&self) -> Option<u64> {
        self.id
    }

    /// `true` once the child has ended (or was never started).
    pub(super) fn is_finished(&self) -> bool {
        self.finished.load(StdOrdering::Acquire)
    }

    /// The handle was dropped, after every state it made was recorded
    /// (rule 2).
    #[inline]
    pub(super) fn handle_dropped(&self) {
        self.reach.fetch_and(!HANDLE, StdOrdering::Release);
    }

    /// The handle's poll: the result once there, else its task is the one
    /// to wake with it.
    pub(super) fn poll_result(&self, cx: &Context<'_>) -> Poll<Result<T, TaskError>> {
        let mut inner = lock(&self.inner);
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
