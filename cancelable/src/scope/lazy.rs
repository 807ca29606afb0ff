//! A running scope that has no shared state yet ([`LazyScope`]): what it
//! needs to make that state when something outside its future asks for it.
//!
//! Most scopes are reached by nothing but their own body: no handle, no
//! token handed out, no parent (but a task group's, for its children), no
//! source besides a deadline and one token, no callback, no registration. Such a scope keeps what it knows
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
//! A task group's child (a *detached* scope, `Driver::detach`, unnamed,
//! without a token source, started right inside its group's scope, not
//! shielded) is lazy with a parent: its parent's token is watched as a
//! token source's is (read in place by the checkpoints, a waiter at a
//! pend — none for a `start_soon` child, which its group polls again as
//! soon as its token is cancelled: `seam::woken_by_parent`), the parent's chain's deadlines are checked by the checkpoints'
//! slow path as a nested scope's are, and it counts in its parent's
//! `nested` while it runs ([`NestedIn`]). Found cancelled by its parent at
//! a pend, it ends with `Parent(the parent's reason)`, as the linked token
//! of its state would have; its end is not passed up (detached).
//!
//! # Invariants
//!
//! 1. **Nothing but its deadline, its token source and (a group's child)
//!    its parent can cancel a lazy scope**, and each is read in place. It
//!    has no token anybody else holds; its deadline is checked by the
//!    checkpoints and, once it pends, by its driver when the shard's entry
//!    wakes it; its token source or parent's token (never both) by the
//!    checkpoints' hot path and, at a pend, by its driver, woken by the
//!    waiter. So a lazy scope's end is unobservable but for its result: no
//!    status, end time or callback to record, and no cancellation to pass
//!    up (a scope with a parent is lazy only when detached).
//! 2. **The state made is the state the scope would have had**: its start
//!    time, name, deadline, clock and (if already assigned) id are moved
//!    into it, its token is linked under its token source (cancelled with
//!    its cause if it fired) or its parent's (`Parent` link), its parent
//!    recorded, and its status is `Running`.
//! 3. **A registered lazy scope is reached through its registration.**
//!    A scope with nothing but a registration in its extras (no parent,
//!    no token source, no state made before its start) starts lazy too:
//!    its registration keeps what the registry shows of it (id, name —
//!    moved there —, start, deadline, clock: `seam::LazySeed`) and a token the registry
//!    cancels it through, which the scope watches as its token source —
//!    read in place by the checkpoints, and at a pend as that token's
//!    owner, not through a waiter: the token is this scope's alone, and
//!    the owner's protocol is every scope with state's (its waker
//!    registered, then the flag read; a cancel sets the flag, then wakes
//!    the owner). Its state is made once, from that seed, by whichever
//!    asks first — a reader of the registry or the code inside
//!    (`StartHook::state`, one `OnceLock`) — with that token as its own,
//!    so a cancel before, during or after the making reaches the scope
//!    through the one token it watches: no cancel is lost
//!    (`tests/tests/registry_lazy.rs` races them across threads on every
//!    backend). A scope that ends without taking
//!    its state tells its registration how (`StartHook::end_lazy`), and
//!    writes its final status into the state if a reader made it. One
//!    departure from invariant 2: a registry cancel and a passed
//!    deadline, both unseen when the state is made, end the scope with
//!    the cancel's reason, whichever came first.

use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::sync::{Arc, OnceLock};
use std::task::Context;
use std::time::Instant;

use super::pool;
use super::state::{Parent, ScopeShared};
use super::Extras;
use crate::backend::Backend;
use crate::cancelled::Times;
use crate::context::OperationStatus;
use crate::sync::Ordering;
use crate::token::{Cause, ChildLink, Link};
use crate::{CancelReason, CancellationToken, Cancelled, GraceOutcome};

/// `LazyScope::source_waiter` when no waiter is registered (a slab key
/// never reaches it).
pub(super) const NO_WAITER: u32 = u32::MAX;

/// `LazyScope::source_waiter` of a task group's `start_soon` child, which
/// registers no waiter on its parent's token: its group polls it again
/// when that token is cancelled (`seam::woken_by_parent`; a slab key never
/// reaches it either).
pub(super) const WOKEN_BY_PARENT: u32 = u32::MAX - 1;

/// `LazyScope::source_waiter` of a registered scope, which watches its
/// registration's token as that token's owner, with no waiter (invariant
/// 3): one comparison tells such a scope on every path.
pub(super) const REGISTERED: u32 = u32::MAX - 2;

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
    /// Its name — or, for a registered scope, whose registration keeps its
    /// name, its extras (see [`Named`]).
    pub(super) name: Named,
    /// Assigned at the start when a `tracing` span names the scope.
    #[cfg(feature = "tracing")]
    pub(super) id: u64,
    /// The shared state, once the code inside asked the slot for it
    /// (`slot.rs`, invariant 2); the driver takes it after the poll.
    pub(super) made: Option<Arc<ScopeShared>>,
    /// Its token source (`CancelScope::token`) — or, for a group's child,
    /// its parent's token — until the state is made.
    pub(super) source: Option<CancellationToken>,
    /// Its waiter's key on `source` once it pended, or [`NO_WAITER`], or
    /// [`WOKEN_BY_PARENT`] (a plain 32-bit key, not an `Option<usize>`:
    /// the running state's room is the limit; read and written through
    /// `waiter_key` / `set_waiter_key`).
    pub(super) source_waiter: u32,
    /// Its state's token linked under `source` — or, for a group's child,
    /// under its parent's — once the state is made; the driver moves it
    /// into the running state.
    pub(super) source_link: Option<ChildLink>,
    /// The scope it runs in, for a task group's child (module docs): its
    /// token is the `source` watched; the driver moves it into the running
    /// state.
    pub(super) parent: Option<NestedIn>,
}

/// [`LazyScope::source_fired`] for a registered scope: its registration's
/// token, watched as its owner. Out of line: most lazy scopes are not
/// registered.
#[cfg(feature = "registry")]
#[inline(never)]
fn owner_fired(source: &CancellationToken, cx: &mut Context<'_>) -> bool {
    if source.is_cancelled() {
        return true;
    }
    source.register_owner(cx.waker());
    source.is_cancelled()
}

/// A lazy scope's name, or a registered scope's extras: one or the other,
/// in the room of the name (a registered scope's name is kept by its
/// registration, which the registry shows).
pub(super) enum Named {
    Name(Option<Cow<'static, str>>),
    /// A registered scope's extras, which hold nothing but its
    /// registration (`Extras::registration_only`): the hook through which
    /// the registry cancels it (`source` is the hook's token) and makes its
    /// state (invariant 3). Not dropped with the scope's other fields:
    /// [`LazyScope`]'s `Drop` drops them, for a registered scope only.
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    Registered(ManuallyDrop<Box<Extras>>),
}

impl Named {
    /// The name, taken (`None` for a registered scope: its registration
    /// keeps it).
    #[inline]
    pub(super) fn take(&mut self) -> Option<Cow<'static, str>> {
        match self {
            Named::Name(name) => name.take(),
            Named::Registered(_) => None,
        }
    }

    /// A registered scope's extras, taken.
    pub(super) fn take_extras(&mut self) -> Option<Box<Extras>> {
        match std::mem::replace(self, Named::Name(None)) {
            Named::Registered(extras) => Some(ManuallyDrop::into_inner(extras)),
            name => {
                *self = name;
                None
            }
        }
    }
}

/// Counts a running scope in its parent's `nested` while it lives.
pub(super) struct NestedIn(pub(super) Arc<ScopeShared>);

impl NestedIn {
    pub(super) fn new(parent: &Arc<ScopeShared>) -> Self {
        NestedIn::of(parent.clone())
    }

    /// [`new`](Self::new) with the parent's reference moved in.
    pub(super) fn of(parent: Arc<ScopeShared>) -> Self {
        parent.nested.fetch_add(1, Ordering::AcqRel);
        NestedIn(parent)
    }
}

impl Drop for NestedIn {
    fn drop(&mut self) {
        self.0.nested.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for LazyScope {
    fn drop(&mut self) {
        self.release_source();
        // Dropped mid-run: its registration leaves the registry.
        #[cfg(feature = "registry")]
        if self.is_registered() {
            drop(self.name.take_extras());
        }
    }
}

impl LazyScope {
    /// The shared state the scope would have had from its start
    /// (invariant 2); the name moves into it.
    pub(super) fn make_shared(&mut self) -> Arc<ScopeShared> {
        // A registered scope's state is made once, from what its
        // registration keeps, by the first to ask: its token is the token
        // source watched, which needs no link (invariant 3).
        #[cfg(feature = "registry")]
        if let Some(shared) = self.hook().and_then(|hook| hook.state()) {
            self.release_source();
            return shared;
        }
        let mut shared = pool::take();
        match Arc::get_mut(&mut shared) {
            Some(state) => {
                let data = crate::sync::get_mut(&mut state.data);
                data.started = Some(self.started);
                data.name = self.name.take();
                data.deadline = self.deadline;
                if let Some(parent) = &self.parent {
                    state.parent = OnceLock::from(Parent {
                        scope: parent.0.clone(),
                        shielded: false,
                    });
                }
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
        if let Some(watched) = &self.source {
            // Its deadline passed before its source (or parent) fired, both
            // unseen: the first to fire cancels the scope.
            let deadline_first = self.deadline.is_some()
                && watched.is_cancelled()
                && watched
                    .recorded_shared_cause()
                    .is_some_and(|cause| self.deadline_came_first(&cause));
            if deadline_first {
                shared.token.cancel_cause(Cause::new(CancelReason::Timeout));
            }
            // Linked as a running scope's first token source, or its
            // parent, is: cancelled now, with its cause, if it was.
            // Each link kind named where it is attached: `attach` stays
            // specialised for the one a call site uses.
            self.source_link = match self.parent.is_some() {
                true => watched.attach(&shared.token, Link::Parent),
                false => watched.attach(&shared.token, Link::Transparent),
            };
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
    /// link, if made, watches it from then on. A group's child's parent
    /// stays, for the running state.
    #[inline]
    pub(super) fn release_source(&mut self) {
        if let Some(source) = self.source.take() {
            if let Some(key) = self.waiter_key() {
                source.drop_waiter(key);
                self.source_waiter = NO_WAITER;
            }
        }
    }

    /// Its waiter's key on `source`, once it pended.
    #[inline]
    pub(super) fn waiter_key(&self) -> Option<usize> {
        (self.source_waiter < REGISTERED).then_some(self.source_waiter as usize)
    }

    /// `true` for a task group's `start_soon` child, whose group polls it
    /// again when its parent's token is cancelled: it watches that token
    /// at each pend without a waiter (`seam::woken_by_parent`).
    #[inline]
    pub(super) fn woken_by_parent(&self) -> bool {
        self.source_waiter == WOKEN_BY_PARENT
    }

    /// `true` for a registered scope (invariant 3), from its start to its
    /// end (its extras, once taken, are gone from `beside`).
    #[cfg(feature = "registry")]
    #[inline(always)]
    pub(super) fn is_registered(&self) -> bool {
        self.source_waiter == REGISTERED
    }

    /// Keeps its waiter's key (`None`: none registered). Kept in 32 bits,
    /// so that a group's child's parent fits in the running state's room
    /// (`LazyRun` no larger than `Armed`): a key is an index among the
    /// token's listeners alive at once, which memory bounds far below
    /// `u32::MAX`. A key that did not fit would be forgotten, not cut:
    /// the next pend registers another waiter for the same task, and the
    /// forgotten one wakes it too, once, at the cancel. For the same
    /// reason a key never reaches [`REGISTERED`].
    #[inline]
    pub(super) fn set_waiter_key(&mut self, key: Option<usize>) {
        self.source_waiter = key
            .and_then(|key| u32::try_from(key).ok())
            .filter(|&key| key < REGISTERED)
            .unwrap_or(NO_WAITER);
    }

    /// At a pend: `true` if its token source (a group's child: its parent)
    /// is cancelled; otherwise its task is woken at the cancel — by a
    /// waiter on the source (`Listener::Scope`) or, for a registered
    /// scope, whose source is its registration's token and nobody else's
    /// scope's, as that token's owner (the flag read after the waker is
    /// registered: the cancel sets the flag, then wakes the owner).
    #[inline(always)]
    pub(super) fn source_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        // A group's `start_soon` child: its group polls it again when its
        // token is cancelled (`seam::woken_by_parent`), no waiter needed.
        if self.woken_by_parent() {
            return source.is_cancelled();
        }
        #[cfg(feature = "registry")]
        if self.is_registered() {
            return owner_fired(source, cx);
        }
        let mut key = self.waiter_key();
        let cancelled = source.poll_scope_waiter(&mut key, cx).is_ready();
        self.set_waiter_key(key);
        cancelled
    }

    /// `true` if its token source (a group's child: its parent) is
    /// cancelled (the checkpoints' hot path).
    #[inline]
    pub(super) fn cancelled_by_source(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// `true` if its parent is cancelled once the deadlines of the
    /// parent's chain are enforced (the checkpoints' slow path, as for a
    /// nested scope with state).
    pub(super) fn parent_cancelled_now(&self) -> bool {
        self.parent
            .as_ref()
            .is_some_and(|parent| parent.0.enforce_deadlines())
    }

    /// The error of a scope that ends cancelled without shared state (its
    /// token source cancelled, or its deadline passed, seen at a pend):
    /// the error its state would have given — the token's cause (shared)
    /// or `Timeout`, its name, an id, its times — made from what the
    /// future keeps. Nothing else can observe its end (invariant 1).
    pub(super) fn cancelled_error(&mut self) -> Cancelled {
        self.cancelled_error_at(now_on(self.backend))
    }

    /// [`cancelled_error`](Self::cancelled_error), ended at `ended`.
    #[inline(always)]
    pub(super) fn cancelled_error_at(&mut self, ended: Instant) -> Cancelled {
        let from_parent = self.parent.is_some();
        let cause = self
            .source
            .as_ref()
            .and_then(CancellationToken::recorded_shared_cause)
            .filter(|cause| !self.deadline_came_first(cause))
            // Through its parent: `Parent(reason)`, as its state's token,
            // linked under the parent's, would have recorded it.
            .map(|cause| match from_parent {
                true => cause.shared_for_child(),
                false => cause,
            })
            .unwrap_or_else(|| Arc::new(Cause::new(CancelReason::Timeout)));
        let times = Times {
            started: self.started,
            ended,
            asked: cause.at,
        };
        let (id, name) = self.id_and_name();
        Cancelled::of_scope(cause, name, id, Some(times), GraceOutcome::NoGrace)
    }

    /// The id and name the scope's error carries: a registered scope's are
    /// its registration's (one look at the name's room tells it).
    #[inline(always)]
    fn id_and_name(&mut self) -> (u64, Option<Cow<'static, str>>) {
        let name = match &mut self.name {
            Named::Name(name) => name.take(),
            #[cfg(feature = "registry")]
            Named::Registered(extras) => {
                let hook = extras.registration.as_deref();
                let id = hook.and_then(|hook| hook.id());
                let name = hook.and_then(|hook| hook.name());
                return (id.unwrap_or_else(super::state::next_operation_id), name);
            }
            #[cfg(not(feature = "registry"))]
            Named::Registered(_) => None,
        };
        #[cfg(feature = "tracing")]
        if self.id != 0 {
            return (self.id, name);
        }
        (super::state::next_operation_id(), name)
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
