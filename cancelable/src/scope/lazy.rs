//! A running scope that has no shared state yet ([`LazyScope`]): what it
//! needs to make that state when something outside its future asks for it.
//!
//! Most scopes are reached by nothing but their own body: no handle, no
//! token handed out, no parent, no source besides a deadline and one
//! token, no callback, no registration. Such a scope keeps what it knows
//! in its future (the current-scope slot, `slot.rs`, points to it while
//! its body is polled) and makes no [`ScopeShared`] — no allocation, no
//! pooled state to reset — unless one of these happens:
//!
//! * the code inside asks for the current scope or its token (a handle,
//!   `current_token()`, a cancellation-aware wait, a shield, a scope
//!   nested in it, `run_blocking`): the slot makes the state
//!   ([`LazyScope::share`]) and the driver takes it after the poll;
//! * its deadline passes or its token source is cancelled and a
//!   checkpoint finds it so: the state records the cancellation, which
//!   the checkpoint reports.
//!
//! Found so by the driver at a pend instead, the scope ends with the
//! error its state would have given ([`LazyScope::cancelled_error`]),
//! still without state.
//!
//! Pending, it stays lazy: its deadline's entry in the thread's deadline
//! shard and its waiter on its token source hold the task's waker, not
//! the state (`LazyRun::waits`). Without a deadline, its backend is
//! detected only when its state is made.
//!
//! # Invariants
//!
//! 1. **Nothing but its deadline and its token source can cancel a lazy
//!    scope**, and both are read in place. It has no token anybody else
//!    holds and no parent; its deadline is checked by the checkpoints and,
//!    once it pends, by its driver when the shard's entry wakes it; its
//!    token source by the checkpoints' hot path and, at a pend, by its
//!    driver, woken by the waiter. So a lazy scope's end is unobservable
//!    but for its result: no status, end time or callback to record, no
//!    parent to pass a cancellation up to.
//! 2. **The state made is the state the scope would have had**: its start
//!    time, name, deadline, clock and (if already assigned) id are moved
//!    into it, its token is linked under its token source (cancelled with
//!    its cause if it fired), and its status is `Running`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::pool;
use super::state::ScopeShared;
use crate::backend::Backend;
use crate::cancelled::Times;
use crate::context::OperationStatus;
use crate::sync::Ordering;
use crate::token::{Cause, ChildLink, Link};
use crate::{CancelReason, CancellationToken, Cancelled, GraceOutcome};

/// `LazyScope::source_waiter` when no waiter is registered (a slab key
/// never reaches it).
pub(super) const NO_WAITER: usize = usize::MAX;

/// Now, on the clock of a scope without shared state: its backend's once
/// detected, else `backend::now`, the same clock read without the
/// detection.
#[inline]
pub(super) fn now_on(backend: Option<Backend>) -> Instant {
    match backend {
        Some(backend) => backend.now(),
        None => crate::backend::now(),
    }
}

/// What a scope without shared state knows of itself (module docs).
pub(crate) struct LazyScope {
    /// Detected at the start for a scope with a deadline; for one without,
    /// only when its state is made (its start time needs no detection:
    /// `backend::now`).
    pub(super) backend: Option<Backend>,
    pub(super) started: Instant,
    pub(super) deadline: Option<Instant>,
    pub(super) name: Option<Cow<'static, str>>,
    /// Assigned at the start when a `tracing` span names the scope.
    #[cfg(feature = "tracing")]
    pub(super) id: u64,
    /// The shared state, once the code inside asked the slot for it
    /// (`slot.rs`, invariant 2); the driver takes it after the poll.
    pub(super) made: Option<Arc<ScopeShared>>,
    /// Its token source (`CancelScope::token`), until the state is made.
    pub(super) source: Option<CancellationToken>,
    /// Its waiter's key on `source` once it pended, or [`NO_WAITER`] (a
    /// plain key, not an `Option`: the running state's room is the
    /// limit).
    pub(super) source_waiter: usize,
    /// Its state's token linked under `source`, once the state is made;
    /// the driver moves it into the running state.
    pub(super) source_link: Option<ChildLink>,
}

impl Drop for LazyScope {
    fn drop(&mut self) {
        self.release_source();
    }
}

impl LazyScope {
    /// The shared state the scope would have had from its start
    /// (invariant 2); the name moves into it.
    pub(super) fn make_shared(&mut self) -> Arc<ScopeShared> {
        let mut shared = pool::take();
        match Arc::get_mut(&mut shared) {
            Some(state) => {
                let data = crate::sync::get_mut(&mut state.data);
                data.started = Some(self.started);
                data.name = self.name.take();
                data.deadline = self.deadline;
            }
            None => unreachable!("a fresh scope state is not shared"),
        }
        #[cfg(feature = "tracing")]
        if self.id != 0 {
            shared.assign_id(self.id);
        }
        shared
            .clock
            .store(self.backend().clock().number(), Ordering::Release);
        shared.set_status(OperationStatus::Running);
        if let Some(source) = &self.source {
            // Its deadline passed before its source fired, both unseen:
            // the first to fire cancels the scope.
            let deadline_first = self.deadline.is_some()
                && source.is_cancelled()
                && source
                    .recorded_shared_cause()
                    .is_some_and(|cause| self.deadline_came_first(&cause));
            if deadline_first {
                shared.token.cancel_cause(Cause::new(CancelReason::Timeout));
            }
            // Linked as a running scope's first token source is: cancelled
            // now, with its cause, if the source was.
            self.source_link = source.attach(&shared.token, Link::Transparent);
            self.release_source();
        }
        shared
    }

    /// `true` if the scope's deadline came before its source's `cause`
    /// was recorded: both fired while nothing looked, and the first to
    /// fire is the scope's reason. `cause.at` is on the real clock, which
    /// the scope's reads unless a test paused tokio's.
    fn deadline_came_first(&self, cause: &Cause) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= cause.at)
    }

    /// Forgets the token source (the waiter on it removed): the state's
    /// link, if made, watches it from then on.
    #[inline]
    pub(super) fn release_source(&mut self) {
        if let Some(source) = self.source.take() {
            if self.source_waiter != NO_WAITER {
                source.drop_waiter(self.source_waiter);
                self.source_waiter = NO_WAITER;
            }
        }
    }

    /// `true` if its token source is cancelled (the checkpoints' hot
    /// path).
    #[inline]
    pub(super) fn cancelled_by_source(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// The error of a scope that ends cancelled without shared state (its
    /// token source cancelled, or its deadline passed, seen at a pend):
    /// the error its state would have given — the token's cause (shared)
    /// or `Timeout`, its name, an id, its times — made from what the
    /// future keeps. Nothing else can observe its end (invariant 1).
    pub(super) fn cancelled_error(&mut self) -> Cancelled {
        let cause = self
            .source
            .as_ref()
            .and_then(CancellationToken::recorded_shared_cause)
            .filter(|cause| !self.deadline_came_first(cause))
            .unwrap_or_else(|| Arc::new(Cause::new(CancelReason::Timeout)));
        let ended = now_on(self.backend);
        #[cfg(feature = "tracing")]
        let id = match self.id {
            0 => super::state::next_operation_id(),
            id => id,
        };
        #[cfg(not(feature = "tracing"))]
        let id = super::state::next_operation_id();
        let times = Times {
            started: self.started,
            ended,
            asked: cause.at,
        };
        Cancelled::of_scope(
            cause,
            self.name.take(),
            id,
            Some(times),
            GraceOutcome::NoGrace,
        )
    }

    /// The shared state, made now if it was not (into `made`).
    pub(super) fn share(&mut self) -> &Arc<ScopeShared> {
        if self.made.is_none() {
            self.made = Some(self.make_shared());
        }
        match &self.made {
            Some(shared) => shared,
            None => unreachable!("made above"),
        }
    }

    /// The scope's backend, detected now if it was not at the start.
    pub(super) fn backend(&mut self) -> Backend {
        *self.backend.get_or_insert_with(Backend::detect)
    }

    /// `true` if the scope's deadline has passed on its clock.
    pub(super) fn deadline_passed(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| now_on(self.backend) >= deadline)
    }
}
