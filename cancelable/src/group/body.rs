//! The group's own future, run as the body of the group's scope: it polls
//! the user's body and the `start_soon` children, and on cancellation
//! gives them the grace period before dropping them.
//!
//! # How it stays polled
//!
//! * A child woken queues itself in the group's run queue (`local.rs`)
//!   and wakes the group's task (the waker the group registers at each
//!   poll).
//! * A child started from anywhere is queued in the shared state and the
//!   group's waker is woken; a child started during the group's own poll
//!   (by the body or another child) is picked up in the same poll.
//! * A spawned child that ends wakes the group's waker.
//!
//! # Cancellation
//!
//! The group holds its scope and the scopes around it (a [`Hold`]) from
//! its first poll until it returns, so a cancelled scope keeps polling it
//! instead of dropping it: the group drains. Its children, in child scopes,
//! see the cancellation at once. Without a grace period, the body is
//! dropped at once and the children end at their next poll (their scopes
//! drop their bodies, as any cancelled scope does); spawned children end on
//! their executor. With a grace period, the group's grace is recorded in
//! its scope (`CancelScope::held_grace`) and is the children's too (their
//! scopes' grace, policy `FromParent`, ends with it), so children and body
//! keep running until they reach a checkpoint. When it runs out, each
//! child's scope ends its child through its own driver (woken by the
//! thread's deadline shard, on whatever executor runs it), and the
//! group — woken by the same shard (`seam::held_grace_end`) — drops its
//! body and takes no more children; no timer of its own. A second signal
//! that ends the grace (`SecondSignal::EndGrace`) drops and aborts what is
//! left at once. Either way the group returns only once every child ended.
//!
//! # Exit
//!
//! Leaving a group is a schedule point, as in trio and anyio: a group
//! whose future never returned `Pending` (empty, or every child ready at
//! once) yields once before it returns, so that a loop opening groups
//! lets its siblings run; a cancellation that arrives meanwhile is the
//! group's outcome.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::error::panic_message;
use super::error::{BoxError, TaskError, TaskFailure};
use super::second::SecondWatch;
use super::set::LocalSet;
use super::state::{lock, GroupShared, Wakeups};
use crate::scope::hold::{Hold, HoldKind};
use crate::scope::seam;
use crate::seam::time;
use crate::Cancelled;

/// How many times one poll goes round picking up children started during
/// it before it yields to the executor.
const ROUNDS: usize = 16;

pin_project! {
    /// The body of the group's scope.
    pub(crate) struct GroupBody<Fut, T> {
        #[pin]
        body: Option<Fut>,
        output: Option<T>,
        core: Core,
    }
}

impl<Fut, T> GroupBody<Fut, T> {
    pub(crate) fn new(body: Fut, shared: Arc<GroupShared>) -> Self {
        GroupBody {
            body: Some(body),
            output: None,
            core: Core {
                local: LocalSet::new(&shared),
                shared,
                hold: None,
                draining: false,
                expired: false,
                grace_end: None,
                finished: false,
                pended: false,
                second: None,
            },
        }
    }
}

pub(crate) struct Core {
    shared: Arc<GroupShared>,
    local: LocalSet,
    hold: Option<Hold>,
    /// The group was seen cancelled.
    draining: bool,
    /// The grace period ran out (or a second signal ended it): the body
    /// was dropped, no child starts any more.
    expired: bool,
    /// The end of the group's grace, once it started.
    grace_end: Option<seam::HeldGraceEnd>,
    finished: bool,
    /// The group's future returned `Pending` at least once: it let the
    /// executor run others.
    pended: bool,
    /// Listeners for a second signal that ends the grace period.
    second: Option<SecondWatch>,
}

impl Core {
    fn cancelled(&self) -> bool {
        self.shared.scope.is_cancelled()
    }

    /// Moves the children started since the last poll into the set the
    /// group polls; `true` if there were any.
    fn take_incoming(&mut self) -> bool {
        // The whole list, taken under the lock, moved outside it.
        let incoming = std::mem::take(&mut lock(&self.shared.state).incoming);
        let any = !incoming.is_empty();
        self.local.take_in(incoming);
        any
    }

    fn has_incoming(&self) -> bool {
        !lock(&self.shared.state).incoming.is_empty()
    }

    fn start_draining(&mut self) {
        self.draining = true;
        // The children see the cancellation at their next poll: now.
        self.local.wake_all();
        if self.shared.grace.is_some() {
            // The group's grace, recorded in its scope: one grace for the
            // group and its children, started by the first to see the
            // cancellation; the thread's deadline shard wakes the group at
            // its end, as it wakes each child's scope.
            self.grace_end = seam::held_grace_end(&self.shared.scope, time::executor_now());
        }
    }

    /// `true` once the group's grace has run out.
    fn grace_over(&self) -> bool {
        self.grace_end
            .as_ref()
            .is_some_and(|end| end.is_over(time::executor_now()))
    }

    /// The grace period ran out: no new children; the body is dropped.
    /// The children end through their scopes' drivers, which end them at
    /// the same instant (their graces are the group's).
    fn end_grace(&mut self) {
        self.expired = true;
        self.grace_end = None;
        let mut wakeups = Wakeups::default();
        lock(&self.shared.state).close(&mut wakeups);
        wakeups.wake();
    }

    /// A second signal ended the grace (`SecondSignal::EndGrace`): no new
    /// children, drop the local ones, abort the spawned ones — their
    /// scopes' graces do not know of the signal.
    fn expire(&mut self) {
        self.expired = true;
        self.grace_end = None;
        let mut wakeups = Wakeups::default();
        self.abort_all(|state| state.close(&mut wakeups));
        wakeups.wake();
    }

    /// Nothing the group started outlives it: drops the children it polls
    /// and those not yet picked up, and aborts the spawned ones. `end`
    /// runs on the group's state first, under its lock; the children are
    /// dropped and aborted outside it.
    fn abort_all(&mut self, end: impl FnOnce(&mut super::state::GroupState)) {
        let (incoming, aborts) = {
            let mut state = lock(&self.shared.state);
            end(&mut state);
            let aborts: Vec<_> = state.spawned.iter().cloned().collect();
            (std::mem::take(&mut state.incoming), aborts)
        };
        drop(incoming);
        for abort in aborts {
            abort.abort();
        }
        self.local.clear();
    }

    /// Polls the children picked up or woken since the last pass (each
    /// wakes the group's task, registered in this poll, when woken again).
    fn poll_children(&mut self) {
        self.local.poll();
    }

    /// The body returned `Err`: a failure unless it is the group's
    /// cancellation (the outcome rule, see `CancelScope::try_run`).
    fn body_failed(&self, error: BoxError) {
        let scope = &self.shared.scope;
        if seam::scope_cancel_recorded(scope)
            && seam::err_is_cancellation(scope, error.is::<Cancelled>())
        {
            return;
        }
        let failure = TaskFailure {
            id: None,
            name: None,
            error: TaskError::Failed(Arc::from(error)),
        };
        self.shared.record_failure(failure, None, true);
    }

    fn body_panicked(&self, payload: super::state::Panic) {
        let failure = TaskFailure {
            id: None,
            name: None,
            error: TaskError::Panicked(panic_message(&*payload).into()),
        };
        self.shared.record_failure(failure, Some(payload), true);
    }

    /// The group's output once it ended: cancelled before everything
    /// ended — possibly from another thread during this very poll, the
    /// children ending with it — the cancellation is the outcome, not the
    /// body's value.
    fn exit<T>(&self, output: &mut Option<T>) -> Option<T> {
        if seam::scope_cancel_recorded(&self.shared.scope) {
            *output = None;
        }
        output.take()
    }

    /// Ends the group if no child runs.
    fn try_end(&mut self) -> bool {
        let mut wakeups = Wakeups::default();
        let ended = lock(&self.shared.state).try_end(&mut wakeups);
        wakeups.wake();
        if ended {
            self.finished = true;
            self.hold = None;
            // No longer listening: a signal now does what it did before.
            self.second = None;
        }
        ended
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped before the end (the group's future was dropped): nothing
        // it started may outlive it.
        self.abort_all(|state| {
            state.closed = true;
            state.ended = true;
        });
        let mut wakeups = Wakeups::default();
        lock(&self.shared.state).close(&mut wakeups);
        wakeups.wake();
    }
}

impl<Fut, T, E> Future for GroupBody<Fut, T>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut this = self.project();
        let core: &mut Core = this.core;
        if core.finished {
            // Back from the exit's schedule point.
            return Poll::Ready(core.exit(this.output));
        }
        if core.hold.is_none() {
            core.hold = Some(Hold::chain(HoldKind::Grace));
            core.second = SecondWatch::start(&core.shared);
        }
        core.shared.waker.register(cx.waker());
        // A second signal and the grace's end only wake the group's scope's
        // owner: that is this task from before `SecondWatch::fired` and
        // `grace_over` are read, so one arriving during this poll wakes it
        // again (the scope's driver registers it only after the poll).
        seam::register_owner(&core.shared.scope, cx.waker());
        for _ in 0..ROUNDS {
            core.take_incoming();
            if !core.draining && core.cancelled() {
                core.start_draining();
            }
            if core.grace_over() {
                core.end_grace();
            }
            if core.draining
                && !core.expired
                && core.second.as_ref().is_some_and(SecondWatch::fired)
            {
                core.expire();
            }
            core.poll_children();
            if this.body.is_some() {
                // Without a grace period a cancelled group drops its body
                // at once, as a cancelled scope does — unless something in
                // it holds the scope (a shield, a nested group).
                let drop_now = core.expired
                    || (core.draining
                        && core.shared.grace.is_none()
                        && seam::hold_count(&core.shared.scope) <= 1);
                if drop_now {
                    this.body.set(None);
                } else {
                    let body = this.body.as_mut().as_pin_mut().expect("checked above");
                    match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
                        Ok(Poll::Pending) => {}
                        Ok(Poll::Ready(Ok(value))) => {
                            *this.output = Some(value);
                            this.body.set(None);
                        }
                        Ok(Poll::Ready(Err(error))) => {
                            this.body.set(None);
                            core.body_failed(error.into());
                        }
                        Err(payload) => {
                            this.body.set(None);
                            core.body_panicked(payload);
                        }
                    }
                }
            }
            if this.body.is_none() && core.try_end() {
                if !core.pended {
                    // Leaving a group is a schedule point (trio, anyio): a
                    // group that never let the executor run others yields
                    // once; a cancellation meanwhile is its outcome (the
                    // scope ends with it, or `exit` reads it).
                    core.pended = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(core.exit(this.output));
            }
            let newly_cancelled = !core.draining && core.cancelled();
            if !newly_cancelled && !core.has_incoming() {
                core.pended = true;
                return Poll::Pending;
            }
        }
        // Children keep starting children: let the executor run others.
        core.pended = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
