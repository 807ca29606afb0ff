//! A small per-thread pool of scope states: a scope that ends with nobody
//! else holding its state (no handle, no child, no timer entry, no clone of
//! its token) hands it back here, reset, and the next `CancelScope::new`
//! on the thread takes it instead of allocating.
//!
//! A scope's state and its token are two allocations that every scope
//! makes and frees; nested scopes and task-group children start and end
//! by the thousand on one thread. Reuse is only ever of a state proven
//! unique (`Arc::get_mut` on the state and on its token): no stale handle,
//! weak pointer or waiter can observe it being reused.

use std::cell::RefCell;
use std::sync::Arc;

use super::state::ScopeShared;
use crate::spare;

/// How many states a thread keeps: enough for scopes nested a few deep
/// and for a loop of sibling scopes, little memory when idle.
pub(super) const CAPACITY: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Arc<ScopeShared>>> = const { RefCell::new(Vec::new()) };
}

/// A fresh scope state: a pooled one if the thread has any.
#[inline]
pub(super) fn take() -> Arc<ScopeShared> {
    spare::take(&POOL).unwrap_or_else(|| Arc::new(ScopeShared::new()))
}

/// Hands back the state of a scope that ended: kept, reset, if nobody
/// else holds it and the pool has room; dropped otherwise.
#[inline]
pub(super) fn recycle(mut shared: Arc<ScopeShared>) {
    let Some(state) = Arc::get_mut(&mut shared) else {
        return;
    };
    if !state.reset() {
        return;
    }
    spare::keep(&POOL, shared, CAPACITY);
}
