//! The registry's seam for the cluster layer (feature `redis`): one
//! observer told synchronously of every scope that joins or leaves a
//! registry. `cancelable::remote` sets it to check its tombstones at
//! registration and to publish fresh snapshots after changes.
//!
//! **Not public API**: hidden from the docs, changed in any release
//! without notice (see `crate::seam`).

use std::sync::Arc;

use super::{Inner, Registry};
use crate::CancellationToken;

/// Told synchronously of every scope that joins a registry, after it is in
/// the live set, and of every one that leaves it, after it is out.
///
/// It runs on the registration and exit paths of every registered scope:
/// it must not block, call into the network, nor panic.
#[doc(hidden)]
pub trait JoinObserver: Send + Sync {
    /// The scope `id`, holding `key` if any, with its token, has joined.
    fn joined(&self, id: u64, key: Option<&str>, token: &CancellationToken);
    /// The scope `id` has left the live set (it finished, or its future
    /// was dropped).
    fn left(&self, id: u64);
}

impl Registry {
    /// Makes `observer` the registry's join observer: `false` (and nothing
    /// changed) if it has one already — a registry joins one cluster.
    #[doc(hidden)]
    pub fn set_join_observer(&self, observer: Arc<dyn JoinObserver>) -> bool {
        let mut slot = crate::sync::write(&self.inner.join_observer);
        if slot.is_some() {
            return false;
        }
        *slot = Some(observer);
        true
    }

    /// Removes `observer` if it is the registry's join observer (one set
    /// since by another does not go).
    #[doc(hidden)]
    pub fn clear_join_observer(&self, observer: &Arc<dyn JoinObserver>) {
        let mut slot = crate::sync::write(&self.inner.join_observer);
        if slot
            .as_ref()
            .is_some_and(|ours| Arc::ptr_eq(ours, observer))
        {
            *slot = None;
        }
    }
}

impl Inner {
    /// The join observer, if one is set.
    pub(super) fn join_observer(&self) -> Option<Arc<dyn JoinObserver>> {
        crate::sync::read(&self.join_observer).clone()
    }
}
