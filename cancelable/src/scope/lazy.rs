//! A running scope that has no shared state yet ([`LazyScope`]): what it
//! needs to make that state when something outside its future asks for it.
//!
//! Most scopes are reached by nothing but their own body: no handle, no
//! token handed out, no parent, no source besides a deadline, no callback,
//! no registration. Such a scope keeps what it knows in its future (the
//! current-scope slot, `slot.rs`, points to it while its body is polled)
//! and makes no [`ScopeShared`] — no allocation, no pooled state to reset —
//! unless one of these happens:
//!
//! * the code inside asks for the current scope or its token (a handle,
//!   `current_token()`, a cancellation-aware wait, a shield, a scope
//!   nested in it, `run_blocking`): the slot makes the state
//!   ([`LazyScope::share`]) and the driver takes it after the poll;
//! * its deadline passes: a checkpoint finds it passed, or the driver
//!   does after the deadline shard woke the task; the state records the
//!   cancellation.
//!
//! Pending under a deadline, it stays lazy: its entry in the thread's
//! deadline shard holds the task's waker, not the state
//! (`LazyRun::waits_for_deadline`). Without a deadline, its backend is
//! detected only when its state is made.
//!
//! # Invariants
//!
//! 1. **Nothing can cancel a lazy scope.** It has no token anybody else
//!    holds, no parent and no source; its deadline is checked by the
//!    checkpoints and, once it pends, by its driver when the shard's
//!    entry wakes it — the shared state made and cancelled at that
//!    moment. So a checkpoint inside it is never cancelled while it stays
//!    lazy, and its end is unobservable: no status, end time or callback
//!    to record.
//! 2. **The state made is the state the scope would have had**: its start
//!    time, name, deadline, clock and (if already assigned) id are moved
//!    into it, and its status is `Running`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::pool;
use super::state::ScopeShared;
use crate::backend::Backend;
use crate::context::OperationStatus;
use crate::sync::Ordering;

/// What a scope without shared state knows of itself (module docs).
pub(crate) struct LazyScope {
    /// Detected at the start for a scope with a deadline; for one without,
    /// only when its state is made (its start time needs no detection:
    /// `backend::now`).
    pub(super) backend: Option<Backend>,
    pub(super) started: Instant,
    pub(super) deadline: Option<Instant>,
    pub(super) name: Option<Cow<'static, str>>,
    /// 0 until assigned: assigned at the start only when a `tracing` span
    /// names the scope.
    pub(super) id: u64,
    /// The shared state, once the code inside asked the slot for it
    /// (`slot.rs`, invariant 2); the driver takes it after the poll.
    pub(super) made: Option<Arc<ScopeShared>>,
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
        if self.id != 0 {
            shared.assign_id(self.id);
        }
        shared
            .clock
            .store(self.backend().clock().number(), Ordering::Release);
        shared.set_status(OperationStatus::Running);
        shared
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
        self.deadline.is_some_and(|deadline| {
            let now = match self.backend {
                Some(backend) => backend.now(),
                None => crate::backend::now(),
            };
            now >= deadline
        })
    }
}
