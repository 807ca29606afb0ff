//! The state a running scope shares with its handles, the code inside it
//! and the scopes nested in it: token, operation id, status, deadline,
//! context data, and the link to the scope it started inside.
//!
//! Cancellation and deadlines reach a scope from the scopes around it, up
//! to the nearest shield: [`ScopeShared::chain`] is that walk, the one way
//! to go up the scope chain.
//!
//! # Invariants
//!
//! 1. **The scope's own machinery writes the life cycle.** `status` is
//!    written by the driver (`Pending` until the first poll, `Running` once
//!    started, one final status when it finishes), by the slot when the
//!    body panics inside it, and by a task group's end for the group's own
//!    scope; handles and layers only read it.
//! 2. **The cancellation lives in the token.** Whether and why the scope is
//!    cancelled is the token's cause and flag (see `token/node.rs`, cause
//!    before flag); nothing here keeps a second copy. `observed` only says
//!    that the code inside saw that cancellation (a checkpoint, a
//!    cancellation-aware wait, or a nested scope that passed it up); the
//!    outcome rule, [`ScopeShared::err_is_cancellation`], reads it after the
//!    body returned, and nothing clears it while the state is shared.
//! 3. **Holds are counted, never owned.** `holds` (one count per
//!    [`HoldKind`]: shields, task groups draining) and `nested` count
//!    guards (a `Hold`, see `hold.rs`; a running nested scope) that add on
//!    creation and subtract on drop; a scope with a hold keeps polling its
//!    body after its cancellation until the count is zero again.
//! 4. **A deadline fires only when the clock says so.** Every change of the
//!    deadline is written under `data`'s lock and then bumps
//!    `deadline_generation`, so the running scope registers the new
//!    deadline in its shard at its next poll; a shard entry that fires
//!    makes [`ScopeShared::deadline_reached`] compare the clock with the
//!    *current* deadline before it cancels (module docs of `deadlines/`).
//! 5. **The parent is set once**, when the scope starts (`OnceLock`); a
//!    parent reached through a shield gives context only, never its
//!    cancellation or deadlines.
//! 6. **No user code under a lock.** `data`'s lock is held only to read or
//!    write context values; progress handlers, callbacks and token cancels
//!    run after it is released.
//! 7. **A pooled state is as new.** A state returns to the per-thread pool
//!    (`pool.rs`) only when nobody else holds it or its token, and
//!    `reset` sets every field back to what the constructor gives it (a
//!    pattern naming every field, so a new field does not compile until
//!    it is reset too): nothing leaks into the next scope.

use std::cell::Cell;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::backend::{saturating_add, Clock};
use crate::cancelled::Times;
use crate::context::{ContextData, OperationContext, OperationStatus, Progress};
use crate::panic;
use crate::sync::{lock, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::token::Cause;
use crate::{CancelReason, CancellationToken, Cancelled, GraceOutcome};

static NEXT_OPERATION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many ids a thread takes from the global counter at a time, so that
/// threads cancelling many scopes at once do not fight over one counter.
const ID_BLOCK: u64 = 1024;

/// A process-unique operation id.
pub(super) fn next_operation_id() -> u64 {
    thread_local! {
        static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let from_block = IDS.try_with(|ids| {
        let (next, end) = ids.get();
        if next < end {
            ids.set((next + 1, end));
            next
        } else {
            let start = NEXT_OPERATION_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            ids.set((start + 1, start + ID_BLOCK));
            start
        }
    });
    from_block.unwrap_or_else(|_| NEXT_OPERATION_ID.fetch_add(1, Ordering::Relaxed))
}

/// Why a hold (`hold.rs`) holds its scopes open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HoldKind {
    /// A [`shield`](crate::shield): cleanup that outer cancellation cannot
    /// interrupt.
    Shield,
    /// A task group draining its children (in its grace, if it has one).
    Grace,
}

/// One hold of `kind` in [`ScopeShared`]'s `holds` word.
fn hold_unit(kind: HoldKind) -> u64 {
    match kind {
        HoldKind::Shield => 1,
        HoldKind::Grace => 1 << 32,
    }
}

/// State shared by a running scope, its handles and the code inside it.
pub(crate) struct ScopeShared {
    pub(crate) token: CancellationToken,
    /// 0 until someone asks: most scopes never need an id.
    id: AtomicU64,
    status: AtomicU8,
    /// A checkpoint inside the body returned the cancellation.
    pub(super) observed: AtomicBool,
    /// Holds on this scope (`hold.rs`), one 32-bit count per [`HoldKind`]
    /// in one word: shields in the low half, task groups draining in the
    /// high half.
    holds: AtomicU64,
    /// Scopes running inside this one's body right now.
    pub(super) nested: AtomicUsize,
    pub(super) deadline_generation: AtomicU64,
    /// Set when the scope starts inside another.
    pub(super) parent: OnceLock<Parent>,
    /// `Clock` as a number, 0 until the scope starts.
    pub(super) clock: AtomicU8,
    /// Name, deadline, timestamps, progress and metadata: locked when the
    /// scope starts and finishes, and when somebody reads them.
    pub(super) data: Mutex<ContextData>,
    // --- registry hook: checkpoints that returned the cancellation ---
    #[cfg(feature = "registry")]
    pub(super) checkpoints_after_cancel: std::sync::atomic::AtomicU32,
}

/// The scope a scope started inside.
pub(crate) struct Parent {
    pub(crate) scope: Arc<ScopeShared>,
    /// The scope started inside a shield: it has its parent for its context
    /// (parent id) only, neither its cancellation nor its deadlines.
    pub(crate) shielded: bool,
}

impl ScopeShared {
    pub(super) fn new() -> Self {
        ScopeShared::with_token(CancellationToken::new())
    }

    /// A new state around `token`, fresh and not shared.
    pub(super) fn with_token(token: CancellationToken) -> Self {
        ScopeShared {
            token,
            id: AtomicU64::new(0),
            status: AtomicU8::new(OperationStatus::Pending.as_u8()),
            observed: AtomicBool::new(false),
            holds: AtomicU64::new(0),
            nested: AtomicUsize::new(0),
            deadline_generation: AtomicU64::new(0),
            parent: OnceLock::new(),
            clock: AtomicU8::new(0),
            data: Mutex::new(ContextData::default()),
            #[cfg(feature = "registry")]
            checkpoints_after_cancel: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Makes the state of a finished scope that nobody else holds as good
    /// as new, for the scope-state pool (see `pool.rs`): `false`, leaving
    /// it to be dropped, if its token is still held elsewhere.
    pub(super) fn reset(&mut self) -> bool {
        if !self.token.reset_if_unique() {
            return false;
        }
        // Every field back to what `with_token` gives it, in place (the
        // token is kept, reset above). The pattern names every field: a
        // field added later does not compile here until it is reset too.
        let ScopeShared {
            token: _,
            id,
            status,
            observed,
            holds,
            nested,
            deadline_generation,
            parent,
            clock,
            data,
            #[cfg(feature = "registry")]
            checkpoints_after_cancel,
        } = self;
        id.store(0, Ordering::Relaxed);
        status.store(OperationStatus::Pending.as_u8(), Ordering::Relaxed);
        observed.store(false, Ordering::Relaxed);
        holds.store(0, Ordering::Relaxed);
        nested.store(0, Ordering::Relaxed);
        deadline_generation.store(0, Ordering::Relaxed);
        *parent = OnceLock::new();
        clock.store(0, Ordering::Relaxed);
        *crate::sync::get_mut(data) = ContextData::default();
        #[cfg(feature = "registry")]
        checkpoints_after_cancel.store(0, Ordering::Relaxed);
        true
    }

    pub(crate) fn id(&self) -> u64 {
        match self.id.load(Ordering::Acquire) {
            0 => {
                let fresh = next_operation_id();
                match self
                    .id
                    .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => fresh,
                    Err(assigned) => assigned,
                }
            }
            assigned => assigned,
        }
    }

    /// Gives a new state the id its scope was known by before the state
    /// existed (`lazy.rs`).
    #[cfg(any(feature = "tracing", feature = "registry"))]
    pub(super) fn assign_id(&self, id: u64) {
        self.id.store(id, Ordering::Release);
    }

    /// Counts a hold of `kind` on this scope (`hold.rs`).
    pub(super) fn add_hold(&self, kind: HoldKind) {
        self.holds.fetch_add(hold_unit(kind), Ordering::AcqRel);
    }

    /// Releases a hold of `kind` counted by [`add_hold`](Self::add_hold).
    pub(super) fn release_hold(&self, kind: HoldKind) {
        self.holds.fetch_sub(hold_unit(kind), Ordering::AcqRel);
    }

    /// `true` while a hold of `kind` holds this scope open.
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    pub(crate) fn is_held_by(&self, kind: HoldKind) -> bool {
        let holds = self.holds.load(Ordering::Acquire);
        let count = match kind {
            HoldKind::Shield => holds & u64::from(u32::MAX),
            HoldKind::Grace => holds >> 32,
        };
        count > 0
    }

    /// How many holds of any kind hold this scope open.
    pub(crate) fn hold_count(&self) -> usize {
        let holds = self.holds.load(Ordering::Acquire);
        ((holds & u64::from(u32::MAX)) + (holds >> 32)) as usize
    }

    /// The scope this one started inside, if any, shield or not.
    pub(crate) fn parent(&self) -> Option<&Arc<ScopeShared>> {
        self.parent.get().map(|parent| &parent.scope)
    }

    /// This scope and the scopes whose cancellation and deadlines reach it,
    /// from the innermost outwards: each one's parent, up to the first
    /// scope that started inside a shield (its parent is not in the chain).
    pub(crate) fn chain(self: &Arc<Self>) -> impl Iterator<Item = &Arc<ScopeShared>> {
        std::iter::successors(Some(self), |scope| {
            scope
                .parent
                .get()
                .filter(|parent| !parent.shielded)
                .map(|parent| &parent.scope)
        })
    }

    /// The earliest deadline of this scope's [`chain`](Self::chain).
    pub(crate) fn effective_deadline(self: &Arc<Self>) -> Option<Instant> {
        self.chain().filter_map(|scope| scope.deadline()).min()
    }

    /// How long the scopes around this one (its [`chain`](Self::chain)
    /// without itself) let a grace period of this one run: each one's
    /// grace end once it is cancelled, before that its deadline plus its
    /// own grace period (a grace never outlives an enclosing scope).
    pub(super) fn grace_limit_from_outside(self: &Arc<Self>) -> Option<Instant> {
        self.chain()
            .skip(1)
            .filter_map(|scope| {
                let data = lock(&scope.data);
                match data.extra.as_ref().and_then(|extra| extra.grace) {
                    Some((_, Some(end))) => Some(end),
                    grace => {
                        let period = grace.map_or(Duration::ZERO, |(period, _)| period);
                        data.deadline
                            .map(|deadline| saturating_add(deadline, period))
                    }
                }
            })
            .min()
    }

    /// The end of this scope's grace period, which starts at `now` if it
    /// has not started yet (unclipped; `None` if the scope has none).
    pub(super) fn start_grace(&self, now: Instant) -> Option<Instant> {
        let mut data = lock(&self.data);
        let (period, end) = data.extra.as_mut()?.grace.as_mut()?;
        Some(*end.get_or_insert_with(|| saturating_add(now, *period)))
    }

    /// The grace of this scope's parent, if a layer holds it (a task
    /// group, `CancelScope::held_grace`): started at `now` if nobody has
    /// started it yet — the parent's and its children's grace is one,
    /// started by the first to see the cancellation — and its end, at
    /// which that layer ends what is left.
    pub(super) fn held_grace_of_parent(&self, now: Instant) -> Option<Instant> {
        let parent = self.parent.get().filter(|parent| !parent.shielded)?;
        let mut data = lock(&parent.scope.data);
        let extra = data.extra.as_mut().filter(|extra| extra.grace_held)?;
        let (period, end) = extra.grace.as_mut()?;
        Some(*end.get_or_insert_with(|| saturating_add(now, *period)))
    }

    /// The scope's grace does not apply to its cancellation (its policy's
    /// start rule): it has none, as far as anyone can tell.
    pub(super) fn refuse_grace(&self) {
        if let Some(extra) = lock(&self.data).extra.as_mut() {
            extra.grace = None;
        }
    }

    pub(crate) fn status(&self) -> OperationStatus {
        OperationStatus::from_u8(self.status.load(Ordering::Acquire))
            .expect("the status holds only what `set_status` stores")
    }

    pub(crate) fn set_status(&self, status: OperationStatus) {
        self.status.store(status.as_u8(), Ordering::Release);
    }

    /// Keeps `text` as the failed operation's error (the registry shows it).
    pub(crate) fn record_error_text(&self, text: String) {
        lock(&self.data)
            .extra
            .get_or_insert_with(Default::default)
            .error = Some(text);
    }

    /// The clock of the backend the scope runs on (detected now if it has
    /// not started).
    fn clock(&self) -> Clock {
        Clock::from_number(self.clock.load(Ordering::Acquire)).unwrap_or_else(Clock::detect)
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        lock(&self.data).deadline
    }

    pub(super) fn set_deadline(&self, deadline: Option<Instant>) {
        lock(&self.data).deadline = deadline;
        self.deadline_generation.fetch_add(1, Ordering::AcqRel);
        self.token.wake_owner();
    }

    /// The shared timer found this scope's registered deadline passed:
    /// cancel the scope if the clock says so, unless the deadline moved
    /// meanwhile, in which case the scope registers the new one when it is
    /// polled.
    pub(crate) fn deadline_reached(&self) {
        if self.token.is_cancelled() {
            // The end of its grace period (or a deadline that no longer
            // matters): the scope reads the clock itself when woken.
            self.token.wake_owner();
            return;
        }
        let reached = self
            .deadline()
            .is_some_and(|deadline| self.clock().now() >= deadline);
        if reached {
            self.token.cancel_cause(Cause::new(CancelReason::Timeout));
        } else {
            // Its entry left the shard: make the scope register again.
            self.deadline_generation.fetch_add(1, Ordering::AcqRel);
            self.token.wake_owner();
        }
    }

    /// Cancels every scope of the [`chain`](Self::chain) whose deadline has
    /// passed; `true` if this scope is cancelled afterwards.
    pub(crate) fn enforce_deadlines(self: &Arc<Self>) -> bool {
        let mut now = None;
        for current in self.chain() {
            if let Some(deadline) = current.deadline() {
                let now = *now.get_or_insert_with(|| current.clock().now());
                if now >= deadline {
                    current
                        .token
                        .cancel_cause(Cause::new(CancelReason::Timeout));
                }
            }
        }
        self.token.is_cancelled()
    }

    /// The outcome rule (see [`CancelScope::try_run`](crate::CancelScope::try_run)):
    /// `true` if an `Err` the code of this scope returned is the scope's
    /// cancellation — the code saw it (a checkpoint, a cancellation-aware
    /// wait or a nested scope inside it returned it), or the error is a
    /// [`Cancelled`] (`error_is_cancelled`). Any other `Err` is the code's
    /// own failure, cancelled scope or not. Groups, supervision and the
    /// scope's own status all classify with this one test.
    pub(crate) fn err_is_cancellation(&self, error_is_cancelled: bool) -> bool {
        error_is_cancelled || self.observed.load(Ordering::Acquire)
    }

    /// This scope ended with `cancelled`, handed to the code that awaited
    /// it, which runs in its parent: if the cancellation came from the
    /// parent, that code saw the parent's cancellation (as a checkpoint
    /// would have shown it), and an `Err` it returns for it is the
    /// parent's cancellation too.
    pub(crate) fn pass_cancellation_up(&self, cancelled: &Cancelled) {
        if !cancelled.reason().is_from_parent() {
            return;
        }
        if let Some(parent) = self.parent.get().filter(|parent| !parent.shielded) {
            parent.scope.observed.store(true, Ordering::Release);
        }
    }

    /// The error describing this scope's cancellation, as a checkpoint
    /// inside it saw it: marks the cancellation as observed.
    pub(crate) fn observe_cancellation(&self) -> Cancelled {
        self.observed.store(true, Ordering::Release);
        // --- registry hook: count checkpoints since the cancel ---
        #[cfg(feature = "registry")]
        self.checkpoints_after_cancel
            .fetch_add(1, Ordering::Relaxed);
        self.cancelled_error()
    }

    pub(super) fn cancelled_error(&self) -> Cancelled {
        // The token's cause, shared: the error reads its reason and
        // message from it when asked.
        let cause = self
            .token
            .recorded_shared_cause()
            .unwrap_or_else(|| std::sync::Arc::new(Cause::new(CancelReason::Manual)));
        let (name, started, has_grace) = {
            let data = lock(&self.data);
            let has_grace = data
                .extra
                .as_ref()
                .is_some_and(|extra| extra.grace.is_some());
            (data.name.clone(), data.started, has_grace)
        };
        // The instants only: the error works its durations out when read.
        let times = started.map(|started| Times {
            started,
            ended: self.clock().now(),
            asked: cause.at,
        });
        // Inside a scope with a grace period, the body may still clean up;
        // the scope sets the final outcome when it ends.
        let grace = match has_grace {
            true => GraceOutcome::InGrace,
            false => GraceOutcome::NoGrace,
        };
        Cancelled::of_scope(cause, name, self.id(), times, grace)
    }

    pub(crate) fn report_progress(&self, progress: Progress) {
        let callbacks = {
            let mut data = lock(&self.data);
            let extra = data.extra.get_or_insert_with(Default::default);
            extra.progress = Some(progress.clone());
            extra.progress_callbacks.clone()
        };
        for callback in callbacks {
            // A panicking progress handler must not unwind into the body
            // that reported progress.
            let _ = panic::contain("an on_progress callback", || callback(&progress));
        }
    }

    pub(super) fn context(&self) -> OperationContext {
        let now = self.clock().now();
        let status = self.status();
        let reason = self.token.recorded_cause().map(|cause| cause.reason);
        let parent_id = self.parent().map(|parent| parent.id());
        lock(&self.data).snapshot(self.id(), parent_id, status, reason, now)
    }
}
