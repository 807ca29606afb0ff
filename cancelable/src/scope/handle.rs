//! `ScopeHandle`: control and observe a scope from outside — cancel it,
//! move its deadline, read its status and context.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::state::ScopeShared;
use crate::context::{OperationContext, OperationStatus};
use crate::{CancelReason, CancellationToken};

/// A handle to a scope, to control and observe it from outside.
#[derive(Clone)]
pub struct ScopeHandle {
    pub(crate) shared: Arc<ScopeShared>,
}

impl ScopeHandle {
    /// Cancels the scope (reason [`CancelReason::Manual`]). Returns `true`
    /// if this call cancelled it.
    pub fn cancel(&self) -> bool {
        self.shared.token.cancel()
    }

    /// Cancels the scope with `reason` and a message.
    pub fn cancel_with(&self, reason: CancelReason, message: impl Into<String>) -> bool {
        self.shared.token.cancel_with(reason, message)
    }

    /// `true` once the scope is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// The scope's own token: cancelling it cancels the scope (reason
    /// [`CancelReason::Manual`] unless given), and it reads as cancelled
    /// once the scope is, whatever cancelled it. Hand it to spawned tasks
    /// or threads to link them to the scope.
    ///
    /// Not to be confused with [`CancelScope::token`](crate::CancelScope::token),
    /// which adds a token *source*: a token of someone else's that cancels
    /// the scope.
    ///
    /// ```
    /// use cancelable::CancelScope;
    ///
    /// let scope = CancelScope::new();
    /// let token = scope.handle().cancel_token();
    /// token.cancel();
    /// assert!(scope.handle().is_cancelled());
    /// ```
    pub fn cancel_token(&self) -> CancellationToken {
        self.shared.token.clone()
    }

    /// Reports the operation's progress from anywhere, as
    /// [`report_progress`](crate::report_progress) does from inside it: its
    /// `on_progress` callbacks run (a panicking one is contained) and the
    /// registry shows it. `fraction` is clamped to `0.0..=1.0`; a NaN counts
    /// as unknown.
    ///
    /// ```
    /// use cancelable::CancelScope;
    ///
    /// let scope = CancelScope::new();
    /// let handle = scope.handle();
    /// handle.report_progress(0.5, "half way");
    /// assert_eq!(handle.context().progress.unwrap().message, "half way");
    /// ```
    pub fn report_progress(&self, fraction: impl Into<Option<f64>>, message: impl Into<String>) {
        self.shared
            .report_progress(crate::Progress::new(fraction.into(), message.into()));
    }

    /// The operation's id, unique within the process and never 0.
    ///
    /// Ids are **not contiguous** and do not tell the order in which
    /// operations started across threads: each thread takes a block of
    /// 1,024 ids from a process-wide counter and hands them out in order,
    /// so that threads starting many scopes do not contend on one counter.
    /// Two scopes started one after the other on one thread have increasing
    /// ids; on two threads, ids 1 and 1025 may be neighbours. Use an id to
    /// name an operation (in logs, the registry, remote cancels), never to
    /// count operations or to sort them by start time (the context's
    /// `started_at` does that).
    ///
    /// ```
    /// use cancelable::CancelScope;
    ///
    /// let here = (CancelScope::new().handle().id(), CancelScope::new().handle().id());
    /// let there = std::thread::spawn(|| CancelScope::new().handle().id()).join().unwrap();
    /// assert!(here.0 < here.1, "increasing on one thread");
    /// assert!(there != here.0 && there != here.1, "unique in the process");
    /// // ...but another thread's ids come from another block, far away.
    /// assert!(there.abs_diff(here.0) > 1);
    /// ```
    pub fn id(&self) -> u64 {
        self.shared.id()
    }

    /// Where the operation is in its life.
    pub fn status(&self) -> OperationStatus {
        self.shared.status()
    }

    /// A snapshot of the operation's context.
    pub fn context(&self) -> OperationContext {
        self.shared.context()
    }

    /// The scope's own deadline (set by `timeout`, `deadline` or
    /// [`set_deadline`](Self::set_deadline)). A timeout only becomes a
    /// deadline when the scope starts.
    pub fn deadline(&self) -> Option<Instant> {
        self.shared.deadline()
    }

    /// The earliest deadline of this scope and the scopes around it, up
    /// to the nearest [`shield`](crate::shield): deadlines outside a shield
    /// do not reach a scope started inside it.
    pub fn effective_deadline(&self) -> Option<Instant> {
        self.shared.effective_deadline()
    }

    /// Moves the scope's deadline, earlier or later (`None` removes it).
    /// A running scope re-arms its timer; a deadline that has passed
    /// cancels a pending body at once. Set before the scope starts, it
    /// replaces the builder's `timeout` and `deadline`: the last one set
    /// wins.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.shared.set_deadline(deadline);
    }
}

impl fmt::Debug for ScopeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeHandle")
            .field("id", &self.id())
            .field("status", &self.status())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
