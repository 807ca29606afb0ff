//! A cancelled scope's grace period, as its driver runs it: whether one
//! applies to the cancellation, when it is over, and the end after it.

use std::sync::Arc;

use super::super::deadlines::{Shard, Target};
use super::super::GraceStart;
use super::{lent_back, Driver, Stage};
use crate::context::OperationStatus;
use crate::{Cancelled, GraceOutcome};

impl Driver {
    /// For a cancelled scope: `true` if it has a grace period that applies
    /// to its cancellation (the policy's start rule, decided once).
    pub(super) fn grace_applies(&mut self) -> bool {
        if !self.grace || self.policy.starts_on() == GraceStart::Any {
            return self.grace;
        }
        let shared = lent_back(&self.shared);
        let from_parent = shared
            .token
            .recorded_cause()
            .is_some_and(|cause| cause.reason.is_from_parent());
        if from_parent {
            self.policy = self.policy.start(GraceStart::Any);
            self.grace_from_parent = true;
        } else {
            // Its own cancellation: dropped at once, as without a grace.
            self.grace = false;
            shared.refuse_grace();
        }
        from_parent
    }

    /// For a cancelled scope with a grace period: starts the grace period
    /// the first time, and tells whether it is over (its end passed, an
    /// enclosing scope's limit passed, or the signal that cancelled the
    /// scope arrived again). Otherwise makes sure the deadline shard wakes
    /// the scope at the end.
    pub(super) fn grace_is_over(&mut self) -> bool {
        let Stage::Running(armed) = &mut self.stage else {
            unreachable!("started before")
        };
        let shared = lent_back(&self.shared);
        let now = armed.backend.clock().now();
        let Some(own_end) = shared.start_grace(now) else {
            return true;
        };
        let end = match shared.grace_limit_from_outside() {
            Some(limit) => limit.min(own_end),
            None => own_end,
        };
        // The parent's grace, held by the layer that cancelled it (a task
        // group): one grace for it and its children — those with a grace of
        // their own included, started by the first to see the cancellation
        // — each of which ends itself at its end, as at its own.
        let from_parent = self.grace_from_parent
            || shared
                .token
                .recorded_cause()
                .is_some_and(|cause| cause.reason.is_from_parent());
        let held = from_parent
            .then(|| shared.held_grace_of_parent(now))
            .flatten();
        let end = held.map_or(end, |held| held.min(end));
        if now >= end
            || armed
                .sources
                .as_ref()
                .is_some_and(|sources| sources.signalled_again())
        {
            armed.grace_timer = None;
            return true;
        }
        if armed
            .grace_timer
            .as_ref()
            .is_none_or(|timer| timer.0 != end || !timer.1.is_live())
        {
            armed.grace_timer = None;
            let registration =
                Shard::current(armed.backend).register(end, Target::Scope(Arc::downgrade(shared)));
            armed.grace_timer = Some(Box::new((end, registration)));
        }
        false
    }

    /// The grace period ran out: the scope ends with its cancellation, and
    /// its body is dropped with the scope future.
    pub(super) fn drop_after_grace(&mut self) -> Cancelled {
        let cancelled = self
            .shared()
            .cancelled_error()
            .with_grace_outcome(GraceOutcome::DroppedAfterGrace);
        self.finish(OperationStatus::Cancelled, Some(&cancelled));
        cancelled
    }
}
