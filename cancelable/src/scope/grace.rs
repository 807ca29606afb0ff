//! The grace: how long, and for which cancellations, a cancelled scope
//! keeps polling its body, and what a value returned within it becomes.
//! One implementation (the driver's, `driver.rs`) configured by a
//! [`GracePolicy`]; the request layer, task groups and graceful shutdown
//! all use it.

use std::time::Duration;

use super::CancelScope;
#[cfg(doc)]
use crate::{CancelReason, Cancelled};

/// Which cancellations start a scope's [grace](CancelScope::grace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GraceStart {
    /// Every cancellation: the scope's own sources, its handle, and the
    /// scopes around it (the default).
    #[default]
    Any,
    /// Only a cancellation that reaches the scope from the scope it runs
    /// in (reason [`CancelReason::Parent`]). A cancellation of its own (its
    /// sources, its handle) drops the body at once, as without a grace. A
    /// task group's children get the group's grace this way: when the
    /// group is cancelled, not when one of them is.
    FromParent,
}

/// What becomes of a value the body returns once its scope is cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GraceValue {
    /// The scope returns it: the body finished its work after all (trio's
    /// rule, the default). An `Err` returned within the grace is the
    /// cancellation's doing, and the scope ends with its `Cancelled`.
    #[default]
    Keep,
    /// The scope ends with its cancellation, whatever the body returned
    /// once the cancellation was recorded — within the grace, or in the
    /// very poll in which it arrived. What a request layer needs: a client
    /// must see the cancellation's answer (`504`, `503`), never a late
    /// `200`.
    Replace,
}

/// A scope's grace policy: which cancellations start its
/// [grace](CancelScope::grace), and whether a value the body returns
/// after the cancellation is kept or replaced by the cancellation.
///
/// The grace itself is the same under every policy: a cancelled scope
/// keeps polling its body so that checkpoints and cancellation-aware waits
/// report the cancellation and cleanup runs, up to the grace (clipped by
/// the scopes around it); when it runs out the body is dropped and the
/// scope ends with its cancellation
/// ([`GraceOutcome::DroppedAfterGrace`](crate::GraceOutcome::DroppedAfterGrace)).
///
/// | policy | starts on | a value returned after the cancellation | used by |
/// |---|---|---|---|
/// | [`GracePolicy::new()`] (default) | any cancellation | kept | [`CancelScope::grace`], `#[cancellable(grace = ..)]` |
/// | `new().value(GraceValue::Replace)` | any cancellation | replaced by the cancellation | the request layer (`http`) |
/// | `new().start(GraceStart::FromParent).value(GraceValue::Replace)` | the enclosing scope's cancellation | replaced | a task group's children |
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelReason, CancelScope, GraceOutcome, GracePolicy, GraceValue};
///
/// # futures::executor::block_on(async {
/// let scope = CancelScope::new()
///     .grace(Duration::from_secs(1))
///     .grace_policy(GracePolicy::new().value(GraceValue::Replace));
/// let handle = scope.handle();
/// let outcome = scope
///     .run(async move {
///         handle.cancel();
///         // Seen, cleaned up, and a value returned within the grace…
///         let _ = cancelable::checkpoint().await;
///         "late"
///     })
///     .await;
/// // …which the cancellation replaces.
/// let cancelled = outcome.unwrap_err();
/// assert_eq!(cancelled.reason(), &CancelReason::Manual);
/// assert_eq!(cancelled.grace_outcome(), GraceOutcome::FinishedWithinGrace);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GracePolicy {
    start: GraceStart,
    value: GraceValue,
}

impl GracePolicy {
    /// Any cancellation starts the grace; a value returned within it is
    /// kept (trio's rule).
    pub const fn new() -> Self {
        GracePolicy {
            start: GraceStart::Any,
            value: GraceValue::Keep,
        }
    }

    /// Which cancellations start the grace.
    pub const fn start(mut self, start: GraceStart) -> Self {
        self.start = start;
        self
    }

    /// What a value returned after the cancellation becomes.
    pub const fn value(mut self, value: GraceValue) -> Self {
        self.value = value;
        self
    }

    /// Which cancellations start the grace.
    pub const fn starts_on(&self) -> GraceStart {
        self.start
    }

    /// What a value returned after the cancellation becomes.
    pub const fn late_value(&self) -> GraceValue {
        self.value
    }
}

impl CancelScope {
    /// The scope's grace policy (see [`GracePolicy`]); the default is
    /// [`GracePolicy::new()`]. It applies with a [`grace`](Self::grace);
    /// [`GraceValue::Replace`] applies without one too: a body that
    /// returns in the very poll its scope is cancelled ends with the
    /// cancellation.
    pub fn grace_policy(mut self, policy: GracePolicy) -> Self {
        self.config.grace_policy = policy;
        self
    }

    /// Crate-internal seam for a layer that holds the scope open itself
    /// (a task group draining its children): records `grace` as the
    /// scope's grace — its end is the end of the graces of the scopes
    /// inside, which their drivers apply, and the registry reports it —
    /// without the driver applying it to this scope: the layer ends its
    /// own part there (`seam::held_grace_end` wakes it).
    pub(crate) fn held_grace(mut self, grace: Duration) -> Self {
        if !grace.is_zero() {
            let extras = self.config.extras();
            extras.grace = Some(grace);
            extras.grace_held = true;
        }
        self
    }
}
