//! A task group's second signal: with
//! [`TaskGroup::on_second_signal(SecondSignal::EndGrace)`](crate::group::TaskGroup::on_second_signal),
//! a second arrival of a signal the group listens for (given with
//! [`TaskGroup::on_signal`](crate::group::TaskGroup::on_signal)) ends the group's
//! grace period at once, as it ends a scope's: what is left of the body and
//! the children is dropped, spawned children are aborted.
//!
//! The group's scope has no grace period of its own (the group holds it
//! open while it drains), so the group watches the signals itself: a
//! listener per signal, delivering into the group's token (a first arrival
//! cancels it as the group's own source does; a later one only wakes the
//! group), asked whether a signal reached it twice.

use std::sync::Arc;

use super::state::GroupShared;
use crate::signal::SecondSignal;
use crate::source::dispatcher::{listen, SignalGuard};
use crate::source::Sink;

/// The listeners of a group that ends its grace period on a second signal.
pub(crate) struct SecondWatch(Vec<SignalGuard>);

impl SecondWatch {
    /// Starts watching, if the group ends its grace period on a second
    /// signal. A listener that cannot be installed is left out: the
    /// group's own source reports that failure.
    pub(crate) fn start(shared: &Arc<GroupShared>) -> Option<SecondWatch> {
        if shared.second_signal != SecondSignal::EndGrace
            || shared.grace.is_none()
            || shared.signals.is_empty()
        {
            return None;
        }
        let token = &shared.scope.cancel_token();
        let guards = shared
            .signals
            .iter()
            .filter_map(|&signal| {
                listen(signal, Sink::Token(token.clone()), SecondSignal::EndGrace).ok()
            })
            .collect();
        Some(SecondWatch(guards))
    }

    /// `true` once a signal reached the group a second time.
    pub(crate) fn fired(&self) -> bool {
        self.0.iter().any(SignalGuard::reached_again)
    }
}
