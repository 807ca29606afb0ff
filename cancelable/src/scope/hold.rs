//! Holding a scope open after its cancellation: the one primitive behind
//! [`shield`](crate::shield) and a task group's drain.
//!
//! A cancelled scope drops its body at its current await, unless something
//! holds it: a [`Hold`] counts itself in the state of each scope it holds
//! while it lives, and the driver, finding its scope cancelled and held,
//! keeps polling the body and ends with the scope's reason once the body
//! returns (see `driver.rs`). A scope's own grace needs no hold: the driver
//! polls its body through the grace by itself (see `grace.rs`).
//!
//! # Kinds
//!
//! A hold says why it holds ([`HoldKind`]), so that the registry reports
//! a shielded operation as shielded and one held open while a task group
//! in it drains (its grace) as in its grace. The driver treats both alike.
//!
//! # The wake-on-release rule
//!
//! Releasing a hold always wakes the owner of every scope it held: a scope
//! cancelled while it was held ends at its next poll; one that is not
//! cancelled polls once more. There is no other rule (the wake costs a
//! poll, a missed one would leave a cancelled scope waiting forever).

use std::sync::Arc;

use super::slot;
use super::state::ScopeShared;

/// Why a [`Hold`] holds its scopes open (defined with the counts it
/// names, in `state.rs`).
pub(crate) use super::state::HoldKind;

/// Holds scopes open after their cancellation while it lives.
pub(crate) struct Hold {
    scopes: Vec<Arc<ScopeShared>>,
    kind: HoldKind,
}

impl Hold {
    /// Holds the current scope and the scopes around it up to the nearest
    /// shield: those whose cancellation reaches the code here.
    pub(crate) fn chain(kind: HoldKind) -> Hold {
        Hold::scopes(slot::current_chain(), kind)
    }

    /// Holds `scopes`.
    fn scopes(scopes: Vec<Arc<ScopeShared>>, kind: HoldKind) -> Hold {
        for scope in &scopes {
            scope.add_hold(kind);
        }
        Hold { scopes, kind }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        for scope in self.scopes.drain(..) {
            scope.release_hold(self.kind);
            // The one wake-on-release rule (module docs).
            scope.token.wake_owner();
        }
    }
}
