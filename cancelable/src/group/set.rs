//! The `start_soon` children a group polls ([`LocalSet`]): the poll side
//! of the group's run queue (its rules in `local.rs`).

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
    /// polled in the next pass, in the order they started (`local.rs`, invariant 3).
    pub(crate) fn take_in(&mut self, incoming: Incoming) {
        let first = self.batch.len();
        for child in incoming {
            let key = self.children.vacant_key();
            if let Some(local) = child.local() {
                local.set_key(key);
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
            // A stale key names an ended child, or none (`local.rs`, invariant 2).
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
            if child.local().is_some_and(|local| local.requeue()) {
                self.batch.push(key);
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
