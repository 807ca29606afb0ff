//! The `start_soon` children a group polls ([`LocalSet`]), and how a
//! child's wake reaches it ([`Local`]): the group's own run queue, in
//! place of a `FuturesUnordered` (which would allocate a task of its own
//! per child, around the child's node).
//!
//! The set keeps each child's owner (`node.rs`) in a slab, by key. A
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
//! Safe code: the node's owner polls the child (`node.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use slab::Slab;

use super::incoming::Incoming;
use super::node::Owned;
use super::state::{lock, GroupShared};
use crate::spare;

/// Sets' buffers kept per thread (`spare.rs`): a group of many children
/// takes its slab and lists at the size the last one grew them to, rather
/// than growing its own by doublings.
const SPARE_SETS: usize = 8;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Buffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A set's slab, its batch and its group's `ready` list, emptied.
type Buffers = (Slab<Owned>, Vec<usize>, Vec<usize>);

/// A `start_soon` child's place in its group's set: where its wake
/// queues it.
pub(crate) struct Local {
    group: Arc<GroupShared>,
    /// Its key in the set, given when the group picks it up (before its
    /// first poll, so before anyone has its waker).
    key: AtomicUsize,
    /// Its key is in the group's `ready` list, or it is about to be polled.
    queued: AtomicBool,
}

impl Local {
    /// The place of a new child of `group` (queued: its first poll comes).
    pub(crate) fn new(group: &Arc<GroupShared>) -> Self {
        Local {
            group: group.clone(),
            key: AtomicUsize::new(0),
            queued: AtomicBool::new(true),
        }
    }

    /// The child's waker: queues it, unless it is queued already, and
    /// wakes the group's task.
    #[inline]
    pub(crate) fn wake(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            lock(&self.group.ready).push(self.key.load(Ordering::Relaxed));
            self.group.waker.wake();
        }
    }

    /// Right before the child is polled: a wake from now on queues it
    /// again (invariant 1).
    #[inline]
    pub(crate) fn unqueue(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

/// The `start_soon` children the group polls.
pub(crate) struct LocalSet {
    group: Arc<GroupShared>,
    children: Slab<Owned>,
    /// The keys of this pass: the children just picked up, then those
    /// woken (taken from the group's `ready` list).
    batch: Vec<usize>,
}

impl LocalSet {
    /// The set of `group`, its buffers (and its group's `ready` list)
    /// from the thread's spares if it has some.
    pub(crate) fn new(group: &Arc<GroupShared>) -> Self {
        let (children, batch, ready) = spare::take(&SPARE).unwrap_or_default();
        if ready.capacity() > 0 {
            *lock(&group.ready) = ready;
        }
        LocalSet {
            group: group.clone(),
            children,
            batch,
        }
    }

    /// Takes the children of `incoming` in (most recent first); they are
    /// polled in the next pass, in the order they started (invariant 3).
    pub(crate) fn take_in(&mut self, incoming: Incoming) {
        let first = self.batch.len();
        for child in incoming {
            let key = self.children.vacant_key();
            if let Some(local) = child.local() {
                local.key.store(key, Ordering::Relaxed);
            }
            self.children.insert(child);
            self.batch.push(key);
        }
        self.batch[first..].reverse();
    }

    /// One pass: polls once each child picked up or woken since the last
    /// pass; those woken during it are polled in the next one (the group's
    /// task is woken for them).
    pub(crate) fn poll(&mut self) {
        {
            let mut ready = lock(&self.group.ready);
            if self.batch.is_empty() {
                std::mem::swap(&mut self.batch, &mut ready);
            } else {
                self.batch.append(&mut ready);
            }
        }
        for key in self.batch.drain(..) {
            // A stale key names an ended child, or none (invariant 2).
            let Some(child) = self.children.get_mut(key) else {
                continue;
            };
            if let Poll::Ready(()) = child.poll_local() {
                // Dropped here: its node goes with its last reference.
                self.children.remove(key);
            }
        }
    }

    /// Queues every child for the next pass: the group's token was
    /// cancelled, which its lazy children watch without a waiter of their
    /// own (`scope::seam::woken_by_parent`).
    pub(crate) fn wake_all(&mut self) {
        for (key, child) in self.children.iter() {
            if let Some(local) = child.local() {
                if !local.queued.swap(true, Ordering::AcqRel) {
                    self.batch.push(key);
                }
            }
        }
    }

    /// Drops every child (each reports its end, cancelled, if it had not
    /// ended).
    pub(crate) fn clear(&mut self) {
        self.batch.clear();
        self.children.clear();
    }
}

impl Drop for LocalSet {
    /// Drops what is left (as [`clear`](LocalSet::clear)) and keeps the
    /// buffers, emptied, for the thread's next group; a wake after this
    /// queues into a fresh list.
    fn drop(&mut self) {
        self.clear();
        let mut ready = std::mem::take(&mut *lock(&self.group.ready));
        ready.clear();
        let children = std::mem::take(&mut self.children);
        let batch = std::mem::take(&mut self.batch);
        spare::keep(&SPARE, (children, batch, ready), SPARE_SETS);
    }
}
