//! A scope's configuration, as the builder fills it and the driver reads
//! it at the start: [`Config`], and the [`Extras`] (callbacks, metadata,
//! grace, registration) that few scopes have, boxed — and the per-thread
//! pool those boxes come from and go back to (as `pool.rs` keeps scope
//! states).

use std::borrow::Cow;
use std::cell::RefCell;
#[cfg(feature = "registry")]
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "registry")]
use super::ScopeShared;
use super::{pool, GracePolicy};
#[cfg(feature = "registry")]
use crate::backend::Clock;
#[cfg(feature = "registry")]
use crate::context::OperationStatus;
use crate::context::{Metadata, OperationContext, ProgressCallback};
use crate::signal::SecondSignal;
use crate::source::Source;
use crate::{CancellationToken, Cancelled};

/// A callback run once when the scope ends.
pub(super) type Callback<T> = Box<dyn FnOnce(&T) + Send>;

#[derive(Default)]
pub(super) struct Config {
    pub(super) name: Option<Cow<'static, str>>,
    pub(super) deadline: Option<Instant>,
    pub(super) timeout: Option<Duration>,
    /// The first source, when it is a plain token (the common case): kept
    /// apart, so that `sources` allocates only for scopes with more.
    pub(super) first_token: Option<CancellationToken>,
    /// The other sources, in the order they were added.
    pub(super) sources: Vec<Source>,
    /// Which cancellations start the grace; what a late value becomes.
    pub(super) grace_policy: GracePolicy,
    /// A task group's `start_soon` child, which its group polls again
    /// when the group's token is cancelled: lazy, it watches that token
    /// without a waiter of its own (`lazy.rs`, `seam::woken_by_parent`).
    pub(super) woken_by_parent: bool,
    /// Boxed: most scopes have none of it, and the builder and the scope
    /// future move `Config` around by value.
    pub(super) extras: Option<Box<Extras>>,
}

#[derive(Default)]
pub(super) struct Extras {
    pub(super) metadata: Metadata,
    pub(super) on_progress: Vec<ProgressCallback>,
    pub(super) on_cancel: Vec<Callback<Cancelled>>,
    pub(super) on_complete: Vec<Callback<OperationContext>>,
    pub(super) on_error: Vec<Callback<OperationContext>>,
    // --- registry hook: what `register()` / `key(..)` asked for, then,
    // once started, the scope's place in the registry; dropping it (the
    // scope finished, or its future was dropped mid-run) leaves the live
    // set. Registered scopes always have extras: the future stays as small
    // as an unregistered one's. The scope knows it only as a `StartHook`:
    // the registry depends on the scope, not the other way round ---
    #[cfg(feature = "registry")]
    pub(super) registration: HookSlot,
    // --- context completion: `on_start` callbacks ---
    pub(super) on_start: Vec<Callback<OperationContext>>,
    /// The grace period (`None`: none, or a zero one).
    pub(super) grace: Option<Duration>,
    /// The grace is given by a layer that holds the scope open itself (a
    /// task group): recorded, never applied by the driver.
    pub(super) grace_held: bool,
    /// What a second signal does (`None`: the default, `Exit`).
    pub(super) second_signal: Option<SecondSignal>,
}

/// Where a scope keeps its [`StartHook`], if it has one.
#[cfg(feature = "registry")]
pub(crate) type HookSlot = Option<Box<dyn StartHook>>;

/// Crate-internal: something a scope carries from its configuration into
/// its run, told when the scope starts and dropped when it ends (finished,
/// or its future dropped mid-run) before the user callbacks run. The
/// operations registry's registration is one.
#[cfg(feature = "registry")]
pub(crate) trait StartHook: std::any::Any + Send {
    /// The scope started: `shared` is running, on `clock`, since `started`.
    fn start(&mut self, shared: &Arc<ScopeShared>, clock: Clock, started: Instant);
    /// The scope started without shared state (`lazy.rs`): operation `id`,
    /// `name` (taken if the hook takes the scope), on `clock` since
    /// `started`, until `deadline`. Returns the
    /// token the scope watches as its token source, which becomes its
    /// state's token if the state is made ([`state`](Self::state)); `None`:
    /// the hook is done with the scope.
    fn start_lazy(&mut self, start: LazyStart<'_>) -> Option<CancellationToken>;
    /// The state of a scope started lazy: made once, by the first to ask
    /// (the scope, or whoever the hook shows the scope to).
    fn state(&self) -> Option<Arc<ScopeShared>>;
    /// [`state`](Self::state), if made already.
    fn made(&self) -> Option<Arc<ScopeShared>>;
    /// The id a scope started lazy is known by.
    fn id(&self) -> Option<u64>;
    /// The name of a scope started lazy, which the hook keeps.
    fn name(&self) -> Option<Cow<'static, str>>;
    /// The scope finished (before its user callbacks run): the hook is
    /// done. A hook dropped instead — its scope's future dropped mid-run,
    /// or never started — is just dropped.
    fn end(self: Box<Self>);
    /// A scope started lazy finished without taking its state: how.
    fn end_lazy(self: Box<Self>, end: LazyEnd<'_>);
    /// The hook as `Any`, for its owner to read back its own type.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// What a scope that starts without shared state tells its hook
/// ([`StartHook::start_lazy`]).
#[cfg(feature = "registry")]
pub(crate) struct LazyStart<'a> {
    pub(crate) id: u64,
    /// Taken if the hook takes the scope.
    pub(crate) name: &'a mut Option<Cow<'static, str>>,
    pub(crate) clock: Clock,
    /// On `clock`.
    pub(crate) started: Instant,
    pub(crate) deadline: Option<Instant>,
}

/// How a registered scope that never made its shared state ended
/// ([`StartHook::end_lazy`]).
#[cfg(feature = "registry")]
pub(crate) struct LazyEnd<'a> {
    pub(crate) status: OperationStatus,
    /// On the scope's clock.
    pub(crate) ended: Instant,
    /// Its cancellation, if it ended cancelled.
    pub(crate) cancelled: Option<&'a Cancelled>,
    /// The text of the body's own error, if it failed and kept it.
    pub(crate) error: Option<String>,
}

impl Config {
    pub(super) fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(take_extras)
    }
}

impl Extras {
    /// `true` if the scope has nothing here but a registration: it may
    /// start without shared state (`lazy.rs`), the registry told of it
    /// through [`StartHook::start_lazy`].
    #[cfg(feature = "registry")]
    pub(super) fn registration_only(&self) -> bool {
        self.registration.is_some()
            && self.no_callbacks_or_metadata()
            && self.grace.is_none()
            && !self.grace_held
            && self.second_signal.is_none()
    }

    /// `true` if no callback and no metadata is kept here.
    fn no_callbacks_or_metadata(&self) -> bool {
        self.on_progress.is_empty()
            && self.on_cancel.is_empty()
            && self.on_complete.is_empty()
            && self.on_error.is_empty()
            && self.on_start.is_empty()
            && self.metadata.as_slice().is_empty()
    }

    /// Back to the default, for reuse (`recycle_extras`). What the
    /// start and the finish took out is empty already: only the callbacks
    /// that did not run (`on_cancel` of a scope that completed...) are
    /// dropped here.
    pub(super) fn empty(&mut self) {
        let anything_left = !self.no_callbacks_or_metadata();
        // The pattern names every field: a field added later does not
        // compile here until it is emptied too.
        let Extras {
            metadata,
            on_progress,
            on_cancel,
            on_complete,
            on_error,
            #[cfg(feature = "registry")]
            registration,
            on_start,
            grace,
            grace_held,
            second_signal,
        } = self;
        if anything_left {
            *metadata = Metadata::default();
            on_progress.clear();
            on_cancel.clear();
            on_complete.clear();
            on_error.clear();
            on_start.clear();
        }
        #[cfg(feature = "registry")]
        {
            *registration = None;
        }
        *grace = None;
        *grace_held = false;
        *second_signal = None;
    }
}

thread_local! {
    // Boxed: the box is the scope's `extras`, reused whole.
    #[allow(clippy::vec_box)]
    static EXTRAS: RefCell<Vec<Box<Extras>>> = const { RefCell::new(Vec::new()) };
}

/// An empty `Extras` for a scope's configuration: a pooled one if the
/// thread has any. Registered scopes, request scopes (metadata, grace) and
/// task-group children (the group's grace) all have extras: the box is
/// taken here and handed back at the scope's finish instead of being
/// allocated and freed by each.
pub(super) fn take_extras() -> Box<Extras> {
    EXTRAS
        .try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Hands back the extras of a scope that finished (its callbacks run):
/// emptied, and kept if the pool has room.
pub(super) fn recycle_extras(mut extras: Box<Extras>) {
    extras.empty();
    let _ = EXTRAS.try_with(move |pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < pool::CAPACITY {
            pool.push(extras);
        }
    });
}
