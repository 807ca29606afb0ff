//! State a running group shares with its [`Group`](crate::group::Group) handles
//! and its children, and the bookkeeping of children that start and end.
//!
//! # Invariants
//!
//! 1. `active` counts every accepted child that has not ended: queued in
//!    `incoming`, polled by the group, or running on an executor. It is
//!    incremented under the lock when a child is accepted (never once
//!    `closed` or `ended`) and decremented under the lock when the child's
//!    [`Done`](super::child::Done) guard reports its end, which happens
//!    exactly once per accepted child (at its end or its drop).
//! 2. The group ends (`ended`) only under the lock and only with
//!    `active == 0`; a child is accepted only under the lock and only
//!    while not `ended`: no child can start after its group ended.
//! 3. A failing child records its failure and, under
//!    [`FailurePolicy::CancelGroup`], cancels the group *before* it
//!    decrements `active`: the group cannot end between the failure and
//!    the cancellation it causes.
//!
//! # Deadlock safety
//!
//! No user code runs while `state` is locked: child futures taken out of
//! `incoming` are dropped, wakers woken and tokens cancelled after the
//! guard is gone. The only lock taken inside it is a results stream's
//! queue (never the other way round).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;
use std::time::Duration;

use atomic_waker::AtomicWaker;

use super::aborts::Aborts;
use super::error::{TaskError, TaskFailure};
use super::executor::Executor;
use super::incoming::Incoming;
use crate::scope::seam::WeakScope;
use crate::{CancelReason, ScopeHandle};

/// A panic payload, re-raised by the group once every child has ended.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// What a group does when a child returns an `Err` or panics.
///
/// Set with [`TaskGroup::on_child_error`](crate::group::TaskGroup::on_child_error).
/// Whatever the policy, the failing child's own
/// [`TaskHandle`](crate::group::TaskHandle) resolves to the error, and an `Err`
/// (or a panic) of the group's *body* always cancels the group.
///
/// | policy | siblings | group's result | a child's panic |
/// |---|---|---|---|
/// | `CancelGroup` (default) | cancelled at the first failure | `Err(GroupError)` with every failure | re-raised once every child ended |
/// | `Collect` | keep running | `Err(GroupError)` with every failure | re-raised once every child ended |
/// | `Ignore` | keep running | the body's own result | caught: only the handle sees it ([`TaskError::Panicked`]) |
///
/// ```
/// use cancelable::group::{FailurePolicy, TaskGroup};
///
/// # futures::executor::block_on(async {
/// let value = TaskGroup::new()
///     .on_child_error(FailurePolicy::Ignore)
///     .run(|group| async move {
///         let failed = group.start_soon(async { Err::<(), _>("no such item") });
///         let fine = group.start_soon(async { Ok::<_, cancelable::Cancelled>(2) });
///         assert!(failed.await.is_err());
///         Ok::<_, cancelable::Cancelled>(fine.await.unwrap() * 21)
///     })
///     .await
///     .unwrap();
/// assert_eq!(value, 42);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// The first child that fails cancels the group: its body and every
    /// other child see the cancellation (children with reason
    /// `Parent(Manual)`), with the failure as the message.
    #[default]
    CancelGroup,
    /// Failures are collected: the other children keep running, and the
    /// group returns `Err` listing them once everything has ended.
    Collect,
    /// Failures are left to the children's handles and
    /// [`results`](crate::group::Group::results): the group returns its body's
    /// result.
    Ignore,
}

/// What a group's handles, children and future share.
pub(crate) struct GroupShared {
    pub(crate) state: Mutex<GroupState>,
    /// The group's own scope.
    pub(crate) scope: ScopeHandle,
    pub(crate) policy: FailurePolicy,
    /// The group's default supervision policy (`Group::supervision`).
    pub(crate) supervision: super::Supervision,
    pub(crate) grace: Option<Duration>,
    pub(crate) executor: Option<Executor>,
    /// The task polling the group's future: woken when a child is added
    /// from elsewhere, a `start_soon` child is woken, or the last spawned
    /// child ends.
    pub(crate) waker: AtomicWaker,
    /// The keys of the `start_soon` children woken since the group's last
    /// pass over them (`local.rs`, `set.rs`).
    pub(crate) ready: Mutex<Vec<usize>>,
    pub(crate) next_id: AtomicU64,
    /// A results stream was made: children's names are worth reading.
    pub(crate) subscribed: AtomicBool,
    /// The group keeps a record per child (`summary.rs`).
    pub(crate) tracked: AtomicBool,
    /// The signals the group listens for, and what a second one does.
    pub(crate) signals: Vec<crate::Signal>,
    pub(crate) second_signal: crate::SecondSignal,
}

#[derive(Default)]
pub(crate) struct GroupState {
    /// Children started with `start_soon`, not yet picked up by the group.
    pub(crate) incoming: Incoming,
    pub(crate) closed: bool,
    pub(crate) ended: bool,
    pub(crate) started: usize,
    pub(crate) active: usize,
    pub(crate) failures: Vec<TaskFailure>,
    /// The group was cancelled by its own failure policy.
    pub(crate) failure_cancelled: bool,
    pub(crate) panic: Option<Panic>,
    /// Children running on an executor, to abort when the grace period
    /// runs out or the group is dropped.
    pub(crate) spawned: Aborts,
    /// `Group::wait` futures.
    pub(crate) waiters: Vec<Waker>,
    pub(crate) subscribers: Vec<Weak<Subscriber>>,
    /// Children's counts by state, and their records if tracked.
    pub(crate) tracker: super::summary::Tracker,
}

/// The queue of one [`ChildResults`](crate::group::ChildResults) stream.
#[derive(Default)]
pub(crate) struct Subscriber {
    pub(crate) queue: Mutex<(VecDeque<TaskOutcome>, Option<Waker>)>,
}

/// How one child of a group ended, as [`Group::results`](crate::group::Group::results)
/// streams it.
#[derive(Clone, Debug)]
pub struct TaskOutcome {
    pub(crate) id: u64,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) error: Option<TaskError>,
}

impl TaskOutcome {
    /// The child's id in its group (as [`TaskHandle::id`](crate::group::TaskHandle::id)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The child's scope name, if it had one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `true` if the child returned `Ok`.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Why the child did not return `Ok`, if it did not. Its value, when
    /// it has one, goes to its [`TaskHandle`](crate::group::TaskHandle).
    pub fn error(&self) -> Option<&TaskError> {
        self.error.as_ref()
    }
}

/// How an accepted child ended, as its group records it.
pub(crate) struct End<'a> {
    pub(crate) id: u64,
    pub(crate) name: Option<Arc<str>>,
    /// The error, if the child failed or a results stream wants it.
    pub(crate) error: Option<&'a TaskError>,
    /// How it ended.
    pub(crate) state: super::summary::ChildState,
    /// ChildResults streams existed when the end was taken: `error` and `name`
    /// are there for them.
    pub(crate) streamed: bool,
    pub(crate) panic: Option<Panic>,
    /// The key of a spawned child's abort handle.
    pub(crate) spawned: Option<usize>,
}

pub(crate) use crate::sync::lock;

/// A `start_soon` child's wake (`local.rs`): its key in the `ready`
/// list, the group's task woken.
impl super::local::RunQueue for GroupShared {
    fn queue(&self, key: usize) {
        lock(&self.ready).push(key);
        self.waker.wake();
    }
}

/// Wakers to wake once the state's lock is released.
#[derive(Default)]
pub(crate) struct Wakeups(Vec<Waker>);

impl Wakeups {
    pub(crate) fn wake(self) {
        for waker in self.0 {
            waker.wake();
        }
    }
}

impl GroupState {
    /// Takes the wakers of `wait()` futures and results streams, if
    /// nothing is running any more.
    fn idle_wakeups(&mut self, wakeups: &mut Wakeups) {
        if self.active == 0 {
            wakeups.0.append(&mut self.waiters);
            self.subscriber_wakeups(wakeups);
        }
    }

    fn subscriber_wakeups(&mut self, wakeups: &mut Wakeups) {
        self.subscribers.retain(|subscriber| {
            let Some(subscriber) = subscriber.upgrade() else {
                return false;
            };
            wakeups.0.extend(lock(&subscriber.queue).1.take());
            true
        });
    }

    /// Marks the group ended if nothing runs; `true` if it did.
    pub(crate) fn try_end(&mut self, wakeups: &mut Wakeups) -> bool {
        if self.active != 0 {
            return false;
        }
        self.ended = true;
        self.closed = true;
        self.idle_wakeups(wakeups);
        true
    }

    /// No new children; wakes whoever waits for the end if nothing runs.
    pub(crate) fn close(&mut self, wakeups: &mut Wakeups) {
        self.closed = true;
        self.idle_wakeups(wakeups);
    }
}

impl GroupShared {
    /// A new child's id in the group.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `true` once a results stream exists, or the group tracks its
    /// children: names and errors are worth reading.
    pub(crate) fn wants_names(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) || self.is_tracked()
    }

    /// Records the end of an accepted child (see the invariants).
    pub(crate) fn child_ended(&self, end: End<'_>) {
        let End {
            id,
            name,
            error,
            state: ended,
            streamed,
            panic,
            spawned,
        } = end;
        let failed =
            error.is_some_and(TaskError::is_failure) && self.policy != FailurePolicy::Ignore;
        if failed {
            let failure = TaskFailure {
                id: Some(id),
                name: name.clone(),
                error: error.cloned().expect("a failure has an error"),
            };
            self.record_failure(failure, panic, self.policy == FailurePolicy::CancelGroup);
        }
        let mut wakeups = Wakeups::default();
        let idle = {
            let mut state = lock(&self.state);
            state.active -= 1;
            let tracked = self.is_tracked();
            state
                .tracker
                .ended(id, name.as_ref(), ended, error, tracked);
            if let Some(key) = spawned {
                state.spawned.remove(key);
            }
            // A stream made while this child was ending may miss it: it
            // sees the children that end after it was made.
            if streamed && !state.subscribers.is_empty() {
                let outcome = TaskOutcome {
                    id,
                    name,
                    error: error.cloned(),
                };
                state.subscribers.retain(|subscriber| {
                    let Some(subscriber) = subscriber.upgrade() else {
                        return false;
                    };
                    let mut queue = lock(&subscriber.queue);
                    queue.0.push_back(outcome.clone());
                    wakeups.0.extend(queue.1.take());
                    true
                });
            }
            state.idle_wakeups(&mut wakeups);
            state.active == 0
        };
        if spawned.is_some() && idle {
            // The group does not poll spawned children: it waits for the
            // last one to end.
            self.waker.wake();
        }
        wakeups.wake();
    }

    /// Records a failure (and a panic to re-raise), and cancels the group
    /// if `cancel` and it is the first failure to do so.
    pub(crate) fn record_failure(&self, failure: TaskFailure, panic: Option<Panic>, cancel: bool) {
        let token = &self.scope.cancel_token();
        let message = failure.to_string();
        let claimed = {
            let mut state = lock(&self.state);
            state.failures.push(failure);
            if state.panic.is_none() {
                state.panic = panic;
            }
            let claimed = cancel && !state.failure_cancelled && !token.is_cancelled();
            if claimed {
                state.failure_cancelled = true;
            }
            claimed
        };
        if claimed && !token.cancel_with(CancelReason::Manual, message) {
            // Cancelled from elsewhere meanwhile: that cancellation is the
            // group's reason.
            lock(&self.state).failure_cancelled = false;
        }
    }
}

/// What the group keeps of its children beyond the running count: see
/// `summary.rs` (the data) and `progress.rs` (reading it from the handle).
impl GroupShared {
    /// `true` if the group keeps per-child records.
    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked.load(Ordering::Relaxed)
    }

    /// A child was built: a tracked group keeps its scope, for
    /// [`Group::progress`](crate::group::Group::progress). A child the group then
    /// refuses leaves a dead entry, skipped when read.
    pub(crate) fn track_start(&self, id: u64, scope: &WeakScope) {
        if self.is_tracked() {
            lock(&self.state).tracker.live.insert(id, scope.clone());
        }
    }

    /// The counts by state right now.
    pub(crate) fn counts(&self) -> super::summary::GroupCounts {
        let state = lock(&self.state);
        state.tracker.counts(state.started, state.active)
    }

    /// The counts and the records of the ended children, taken.
    pub(crate) fn summary(&self) -> super::summary::GroupSummary {
        let mut state = lock(&self.state);
        let (started, active) = (state.started, state.active);
        state.tracker.take_summary(started, active)
    }
}
