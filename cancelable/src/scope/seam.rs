//! The seams the layers (task groups, services, the registry) use to reach
//! a scope's machinery: the only crate-internal door into `scope/` besides
//! the public API and [`hold`](super::hold). Each is named for what a layer
//! needs, takes a [`ScopeHandle`], a token or the registry's
//! `ScopeView` (never a `ScopeShared`), and
//! keeps the scope's invariants (`state.rs`) on its side of the door: a
//! later split of the layers into crates would make this a
//! `#[doc(hidden)]` public module, nothing more.
//!
//! `cancelable/tests/module_graph.rs` checks that the layers name no
//! private part of the scope or the token.

use std::borrow::Cow;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::deadlines::{Registration, Shard, Target};
use super::{slot, ScopeHandle, ScopeShared};
use crate::backend::{Backend, Clock};
use crate::context::OperationStatus;
use crate::sync::{lock, Ordering};
use crate::{CancelReason, CancellationToken, Cancelled};

/// The end of a grace a layer holds (`CancelScope::held_grace`: a task
/// group draining): its instant, and its entry in the thread's deadline
/// shard — the timer of every scope's deadline and grace — which wakes
/// the scope's owner (the task polling the layer) once the clock reads at
/// or past it. Dropping it removes the entry.
pub(crate) struct HeldGraceEnd {
    at: Instant,
    _entry: Registration,
}

impl HeldGraceEnd {
    /// `true` once `now` is at or past the end.
    pub(crate) fn is_over(&self, now: Instant) -> bool {
        now >= self.at
    }
}

/// Starts `scope`'s held grace at `now` if nobody has started it yet (a
/// scope inside may have: the scopes whose grace is the held one's, the
/// group's children, start it on their first sight of the cancellation)
/// and registers its end (unclipped; `None` if the scope has no grace) for
/// the layer that holds the scope open. The scopes inside end themselves
/// at that end, through their own drivers. For a cancelled scope only: the
/// entry, once due, wakes the owner of a cancelled scope (`deadline_reached`).
pub(crate) fn held_grace_end(scope: &ScopeHandle, now: Instant) -> Option<HeldGraceEnd> {
    let at = scope.shared.start_grace(now)?;
    let clock = Clock::from_number(scope.shared.clock.load(Ordering::Acquire))
        .unwrap_or_else(Clock::detect);
    let entry = Shard::current(Backend::of_clock(clock))
        .register(at, Target::Scope(Arc::downgrade(&scope.shared)));
    Some(HeldGraceEnd { at, _entry: entry })
}

/// How many holds (`hold.rs`), of any kind, hold `scope` open.
pub(crate) fn hold_count(scope: &ScopeHandle) -> usize {
    scope.shared.hold_count()
}

/// `true` once a cancel of `token` has recorded its cause — possibly
/// before its flag reads as cancelled (cause before flag, `token/node.rs`).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn cancel_recorded(token: &CancellationToken) -> bool {
    token.has_recorded_cause()
}

/// [`cancel_recorded`] for `scope`'s token.
pub(crate) fn scope_cancel_recorded(scope: &ScopeHandle) -> bool {
    scope.shared.token.has_recorded_cause()
}

/// `true` if the cancellation `token` recorded is a failure (reason
/// [`CancelReason::Error`]) rather than a cancel.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn cancelled_by_error(token: &CancellationToken) -> Option<Cancelled> {
    token
        .recorded_shared_cause()
        .filter(|cause| matches!(cause.reason, CancelReason::Error(_)))
        .map(Cancelled::of_cause)
}

/// Keeps `text` as `scope`'s error (the registry shows it): a layer that
/// saw the operation fail in a way the scope could not (a handler's panic).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn record_error_text(scope: &ScopeHandle, text: String) {
    scope.shared.record_error_text(text);
}

/// The error describing `scope`'s cancellation as code inside it saw it:
/// marks the cancellation as observed (the outcome rule, `state.rs`).
pub(crate) fn observe_cancellation(scope: &ScopeHandle) -> Cancelled {
    scope.shared.observe_cancellation()
}

/// The outcome rule for an `Err` of code in `scope`
/// ([`ScopeShared::err_is_cancellation`](super::ScopeShared::err_is_cancellation)).
pub(crate) fn err_is_cancellation(scope: &ScopeHandle, error_is_cancelled: bool) -> bool {
    scope.shared.err_is_cancellation(error_is_cancelled)
}

/// Hands `scope`'s cancellation to the code around it, as a nested scope
/// that ended with it does (for a layer that ends a scope's run itself:
/// a task group).
pub(crate) fn pass_cancellation_up(scope: &ScopeHandle, cancelled: &Cancelled) {
    scope.shared.pass_cancellation_up(cancelled);
}

/// Writes the final status of a scope whose end a layer decides (a task
/// group's scope: invariant 1 of `state.rs`).
pub(crate) fn set_final_status(scope: &ScopeHandle, status: OperationStatus) {
    scope.shared.set_status(status);
}

/// [`CancelScope::metadata`](super::CancelScope::metadata) with a key
/// known at compile time and a value that may be (a layer's metadata):
/// neither is copied, and the builder is written in place, not moved
/// through a by-value setter.
#[cfg(all(feature = "tower", feature = "registry"))]
pub(crate) fn static_metadata(
    scope: &mut super::CancelScope,
    key: &'static str,
    value: Cow<'static, str>,
) {
    scope.config.extras().metadata.insert_static(key, value);
}

/// Marks `scope` as a task group's `start_soon` child, which its group
/// polls again as soon as the group's token is cancelled (`group/local.rs`):
/// started lazy, the scope then watches its parent's token at each pend
/// without registering a waiter on it (`lazy.rs`).
#[inline]
pub(crate) fn woken_by_parent(scope: &mut super::CancelScope) {
    scope.config.woken_by_parent = true;
}

/// Registers `waker` — the task polling a layer that holds `scope` open
/// (a task group draining) — as the owner of `scope`'s token, before the
/// layer checks what a wake of the owner would signal (a second signal
/// that ends the grace, `group/second.rs`; the held grace's end,
/// [`held_grace_end`]): a wake between that check and
/// the driver's own registration at its pend is then not lost.
pub(crate) fn register_owner(scope: &ScopeHandle, waker: &std::task::Waker) {
    scope.shared.token.register_owner(waker);
}

/// `scope`'s name, without building its whole context.
pub(crate) fn name(scope: &ScopeHandle) -> Option<Cow<'static, str>> {
    lock(&scope.shared.data).name.clone()
}

/// The scope the code polled now runs in, if any.
pub(crate) fn current() -> Option<ScopeHandle> {
    slot::current_shared().map(|shared| ScopeHandle { shared })
}

/// Polls with `scope` as the current scope (a task group polling a child
/// spawned onto an executor, so that the child's scope starts inside the
/// group's).
pub(crate) fn enter<R>(scope: &ScopeHandle, poll: impl FnOnce() -> R) -> R {
    slot::enter_shared(&scope.shared, poll)
}

/// `true` if `scope` has its shared state already (a handle or the
/// registry asked for it before the run).
pub(crate) fn has_state(scope: &super::CancelScope) -> bool {
    scope.shared.get().is_some()
}

/// A fresh state for a scope that has not started, for the scope's run to
/// adopt at its start (`ScopeTryRun::adopt`): what `CancelScope::handle`
/// makes before a run, made by whoever needs it first (a group child's
/// handle, once its scope is in the child's run).
pub(crate) fn new_state() -> ScopeHandle {
    ScopeHandle {
        shared: super::pool::take(),
    }
}

/// The error of a scope run dropped before its end without shared state
/// (a group's child, `lazy.rs`), running inside `parent`: its parent's
/// cancellation as its linked token would have recorded it
/// (`Parent(reason)`), else a manual cancel — what an unnamed scope's
/// state would have given but its times, which only the state keeps.
pub(crate) fn dropped_without_state(parent: &ScopeHandle) -> Cancelled {
    match parent.shared.token.recorded_shared_cause() {
        Some(cause) => Cancelled::of_cause(cause.shared_for_child()),
        None => Cancelled::new(CancelReason::Manual),
    }
}

/// A scope known without keeping it alive: a scope that nothing else
/// observes spares a clock read when it ends.
#[derive(Clone)]
pub(crate) struct WeakScope(Weak<ScopeShared>);

impl WeakScope {
    /// The scope `scope` will run, known without making a handle to it (no
    /// strong reference taken and dropped): a task group's child, whose
    /// handle reaches its scope only while it exists. Makes the scope's
    /// shared state now if nothing has yet (a group's child has a parent,
    /// so its start would make it anyway).
    pub(crate) fn of(scope: &super::CancelScope) -> WeakScope {
        WeakScope(Arc::downgrade(scope.shared.get_or_init(super::pool::take)))
    }

    /// The scope of `scope`, known without keeping it alive.
    pub(crate) fn of_handle(scope: &ScopeHandle) -> WeakScope {
        WeakScope(Arc::downgrade(&scope.shared))
    }

    /// The scope, while it exists.
    pub(crate) fn upgrade(&self) -> Option<ScopeHandle> {
        self.0.upgrade().map(|shared| ScopeHandle { shared })
    }

    /// `true` while the scope exists.
    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// The registry's seam: a registered scope as the registry sees it, handed
/// to it by the scope at its start ([`RegistryHook::start`]) or taken when
/// a key is claimed before the start ([`key_holder`]). The registry keeps
/// it in its records and reads the scope through these methods only: it
/// names no private type of `scope/` or `token/` (checked by
/// `cancelable/tests/module_graph.rs`).
#[cfg(feature = "registry")]
#[derive(Clone)]
pub(crate) struct ScopeView(Arc<ScopeShared>);

#[cfg(feature = "registry")]
impl ScopeView {
    /// The scope's id.
    pub(crate) fn id(&self) -> u64 {
        self.0.id()
    }

    /// The scope's status.
    pub(crate) fn status(&self) -> OperationStatus {
        self.0.status()
    }

    /// The scope's token.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.0.token
    }

    /// The id of the scope it runs inside, if any.
    pub(crate) fn parent_id(&self) -> Option<u64> {
        self.0.parent().map(|parent| parent.id())
    }

    /// The ids of the scopes it runs inside, innermost first.
    pub(crate) fn ancestor_ids(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::successors(self.0.parent(), |scope| scope.parent()).map(|scope| scope.id())
    }

    /// The deadline that applies to the scope: its own or an enclosing
    /// one's, whichever is first (a shield stops the walk).
    pub(crate) fn effective_deadline(&self) -> Option<Instant> {
        self.0.effective_deadline()
    }

    /// `true` while a hold of `kind` keeps the scope open.
    pub(crate) fn is_held_by(&self, kind: super::hold::HoldKind) -> bool {
        self.0.is_held_by(kind)
    }

    /// Why the scope's token was cancelled and with what message, once a
    /// cancel recorded it; `None` while not cancelled.
    pub(crate) fn cancel_cause(&self) -> Option<(CancelReason, Option<Arc<str>>)> {
        cancel_cause(&self.0.token)
    }

    /// The scope's context data (name, deadline, timestamps, progress,
    /// metadata), locked: hold it briefly, never across user code.
    pub(crate) fn context_data(
        &self,
    ) -> impl std::ops::DerefMut<Target = crate::context::ContextData> + '_ {
        lock(&self.0.data)
    }

    /// How many checkpoints inside the scope returned its cancellation.
    pub(crate) fn checkpoints_since_cancel(&self) -> u32 {
        self.0
            .checkpoints_after_cancel
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A registered scope that started without shared state (`lazy.rs`), as
/// the registry keeps it: what it shows of the operation, and the token
/// through which it cancels it — the scope's token source while it has no
/// state, and that state's own token once made. The state, made from it
/// ([`ScopeView::made_from`]) by whoever needs it first (a reader of the
/// registry, or the code inside the scope asking for its scope), is the
/// state the scope would have had from its start (`lazy.rs`, invariant 2).
#[cfg(feature = "registry")]
pub(crate) struct LazySeed {
    pub(crate) id: u64,
    pub(crate) name: Option<Cow<'static, str>>,
    /// On the scope's clock, which the registry keeps beside it.
    pub(crate) started: Instant,
    pub(crate) deadline: Option<Instant>,
    token: CancellationToken,
}

#[cfg(feature = "registry")]
pub(crate) use super::config::{LazyEnd, LazyStart};

#[cfg(feature = "registry")]
impl LazySeed {
    /// The seed of operation `id`, with a fresh token.
    pub(crate) fn new(
        id: u64,
        name: Option<Cow<'static, str>>,
        started: Instant,
        deadline: Option<Instant>,
    ) -> LazySeed {
        LazySeed {
            id,
            name,
            started,
            deadline,
            token: CancellationToken::new(),
        }
    }

    /// The token the registry cancels the scope through.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Makes the token as new for the thread's next lazy scope, if nobody
    /// else holds it (the scope, its state, a clone): `false` otherwise,
    /// and the seed is then dropped.
    pub(crate) fn reset_token(&mut self) -> bool {
        self.token.reset_if_unique()
    }
}

#[cfg(feature = "registry")]
impl ScopeView {
    /// The running state of the lazy scope `seed` (on `clock`), made now:
    /// its token is the seed's, so that a cancel through either reaches
    /// the scope, which watches that token until it takes the state.
    pub(crate) fn made_from(seed: &LazySeed, clock: Clock) -> ScopeView {
        let mut state = ScopeShared::with_token(seed.token.clone());
        let data = crate::sync::get_mut(&mut state.data);
        data.started = Some(seed.started);
        data.name = seed.name.clone();
        data.deadline = seed.deadline;
        state.assign_id(seed.id);
        state.clock.store(clock.number(), Ordering::Release);
        state.set_status(OperationStatus::Running);
        ScopeView(Arc::new(state))
    }
}

/// Why `token` was cancelled and with what message, once a cancel
/// recorded it; `None` while not cancelled.
#[cfg(feature = "registry")]
pub(crate) fn cancel_cause(token: &CancellationToken) -> Option<(CancelReason, Option<Arc<str>>)> {
    if !token.is_cancelled() {
        return None;
    }
    token
        .recorded_cause()
        .map(|cause| (cause.reason, cause.message))
}

/// When `token` was cancelled (the real clock), once a cancel recorded
/// it; `None` while not cancelled.
#[cfg(feature = "registry")]
pub(crate) fn cancelled_at(token: &CancellationToken) -> Option<Instant> {
    if !token.is_cancelled() {
        return None;
    }
    token.cancelled_at()
}

/// What the registry carries in a registered scope: told when the scope
/// starts, with the scope's [`ScopeView`], the clock it keeps time on and
/// its start — or, for a scope that starts without shared state, with
/// what it shows of it ([`start_lazy`](Self::start_lazy)); ended when the
/// scope finishes (before its user callbacks). Every `RegistryHook` is
/// the scope's [`StartHook`](super::StartHook), which the scope knows; the
/// registry knows only this.
#[cfg(feature = "registry")]
pub(crate) trait RegistryHook: std::any::Any + Send {
    /// The scope started: `scope` is running, on `clock`, since `started`.
    fn start(&mut self, scope: ScopeView, clock: crate::seam::time::ScopeClock, started: Instant);
    /// The scope started without shared state (`start`: operation id,
    /// name — taken, if the hook registers the scope —, clock, start and
    /// deadline). Returns the token the
    /// scope watches as its token source (the registry cancels the scope
    /// through it, and it becomes the state's token if the state is made),
    /// or `None` if the hook does not register the scope after all.
    fn start_lazy(&mut self, start: LazyStart<'_>) -> Option<CancellationToken>;
    /// The state of a scope started lazy, made now from what
    /// [`start_lazy`](Self::start_lazy) kept unless a reader made it
    /// first: the code inside the scope asked for its scope.
    fn state(&self) -> Option<ScopeView>;
    /// [`state`](Self::state) if somebody made it already.
    fn made(&self) -> Option<ScopeView>;
    /// The id of the scope started lazy, given to
    /// [`start_lazy`](Self::start_lazy).
    fn id(&self) -> Option<u64>;
    /// The name of the scope started lazy, taken by
    /// [`start_lazy`](Self::start_lazy).
    fn name(&self) -> Option<Cow<'static, str>>;
    /// The scope finished (before its user callbacks run). A hook dropped
    /// instead — its scope's future dropped mid-run, or never started —
    /// is just dropped.
    fn end(self: Box<Self>);
    /// A scope started lazy finished without taking its state: how.
    fn end_lazy(self: Box<Self>, end: LazyEnd<'_>);
}

#[cfg(feature = "registry")]
impl<H: RegistryHook> super::StartHook for H {
    fn start(&mut self, shared: &Arc<ScopeShared>, clock: crate::backend::Clock, started: Instant) {
        RegistryHook::start(self, ScopeView(shared.clone()), clock, started);
    }

    fn start_lazy(&mut self, start: LazyStart<'_>) -> Option<CancellationToken> {
        RegistryHook::start_lazy(self, start)
    }

    fn state(&self) -> Option<Arc<ScopeShared>> {
        RegistryHook::state(self).map(|view| view.0)
    }

    fn made(&self) -> Option<Arc<ScopeShared>> {
        RegistryHook::made(self).map(|view| view.0)
    }

    fn id(&self) -> Option<u64> {
        RegistryHook::id(self)
    }

    fn name(&self) -> Option<Cow<'static, str>> {
        RegistryHook::name(self)
    }

    fn end(self: Box<Self>) {
        RegistryHook::end(self);
    }

    fn end_lazy(self: Box<Self>, end: LazyEnd<'_>) {
        RegistryHook::end_lazy(self, end);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Where a registered scope keeps its hook, and its name: what
/// `CancelScope::register_in` fills in. Makes no state: a scope with
/// nothing else may start without one (`lazy.rs`, invariant 3).
#[cfg(feature = "registry")]
pub(crate) fn hook_slot(
    scope: &mut super::CancelScope,
) -> (&mut super::HookSlot, Option<&Cow<'static, str>>) {
    let config = &mut scope.config;
    let extras = config.extras.get_or_insert_with(super::config::take_extras);
    (&mut extras.registration, config.name.as_ref())
}

/// [`hook_slot`] with the scope's view, for `CancelScope::key`: the key's
/// holder is known before the scope starts.
#[cfg(feature = "registry")]
pub(crate) fn key_holder(
    scope: &mut super::CancelScope,
) -> (ScopeView, &mut super::HookSlot, Option<&Cow<'static, str>>) {
    let (shared, name, slot) = scope.registration();
    (ScopeView(shared.clone()), slot, name)
}

/// How many deadline driver tasks run on `runtime` (`deadlines/`: one per
/// thread and runtime on which a scope deadline or grace was registered,
/// alive as long as the runtime): for the testing kit.
#[cfg(feature = "testing")]
pub(crate) fn deadline_drivers(runtime: tokio::runtime::Id) -> usize {
    super::deadlines::drivers_on(runtime)
}
