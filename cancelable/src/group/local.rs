//! How a `start_soon` child's wake reaches its group ([`Local`]): the
//! wake side of the group's own run queue, whose poll side is `set.rs`
//! (`LocalSet`), in place of a `FuturesUnordered` (which would allocate a
//! task of its own per child, around the child's node).
//!
//! The set (`set.rs`) keeps each child's owner (`node.rs`) in a slab, by key. A
//! child's waker is its node (made once, with it): its wake queues the
//! child's key in the group's `ready` list, once until the group polls it
//! again, and wakes the group's task. The group's poll takes the list
//! whole and polls each child named in it once; a child that ends leaves
//! the slab, and its node goes with its last reference.
//!
//! # Invariants
//!
//! 1. **A wake is never lost**: a child is marked not queued *before* it
//!    is polled ([`Local::unqueue`]), so a wake that comes after the poll
//!    looked — from any thread — finds it unqueued and queues it; a wake
//!    that finds it queued is covered by the key already in the list or in
//!    the pass running. Model-checked by loom (`cancelable/tests/loom.rs`,
//!    `group_local_wake`).
//! 2. **A key in the list may be stale** (its child ended and another took
//!    its place, or none did): the group then polls a child that was not
//!    woken, or nothing. A spurious poll is allowed to any future; no
//!    child is polled after its end (it has left the slab).
//! 3. **Children picked up together are first polled in the order they
//!    started** (`incoming.rs`): their keys are queued in that order, ahead
//!    of the woken ones.
//!
//! Safe code: the node's owner polls the child (`node.rs`); the set is
//! in `set.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Where a child's wake queues its key: its group's `ready` list, and the
/// group's task woken (implemented by the group's shared state).
pub(crate) trait RunQueue: Send + Sync {
    fn queue(&self, key: usize);
}

/// A `start_soon` child's place in its group's set: where its wake
/// queues it.
pub(crate) struct Local {
    group: Arc<dyn RunQueue>,
    /// Its key in the set, given when the group picks it up (before its
    /// first poll, so before anyone has its waker).
    key: AtomicUsize,
    /// Its key is in the group's `ready` list, or it is about to be polled.
    queued: AtomicBool,
}

impl Local {
    /// The place of a new child of `group` (queued: its first poll comes).
    pub(crate) fn new(group: Arc<dyn RunQueue>) -> Self {
        Local {
            group,
            key: AtomicUsize::new(0),
            queued: AtomicBool::new(true),
        }
    }

    /// The child's waker: queues it, unless it is queued already, and
    /// wakes the group's task.
    #[inline]
    pub(crate) fn wake(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.group.queue(self.key.load(Ordering::Relaxed));
        }
    }

    /// Queued by its group (`LocalSet::wake_all`): `true` if it was not
    /// queued already, and its key is to be polled.
    #[inline]
    pub(crate) fn requeue(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// Its key in its group's set, given when the group picks it up.
    #[inline]
    pub(crate) fn set_key(&self, key: usize) {
        self.key.store(key, Ordering::Relaxed);
    }

    /// Right before the child is polled: a wake from now on queues it
    /// again (invariant 1).
    #[inline]
    pub(crate) fn unqueue(&self) {
        self.queued.store(false, Ordering::Release);
    }
}
