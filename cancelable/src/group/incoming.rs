//! The `start_soon` children a group has accepted and not yet picked up:
//! a list linked through the children's own boxes, so that queuing a child
//! allocates nothing (no vector to grow by doublings as a burst of
//! children starts).
//!
//! Each `start_soon` child is allocated once, in its node (`node.rs`): the
//! child, the slot it shares with its handle, and room for the next node
//! of the list, reached through the node's one owner. The group's state
//! keeps the list's head ([`Incoming`]); the group's future takes the
//! whole list under the lock and moves the children into the set it
//! polls, which polls them first in the order they started (`local.rs`). Safe code only: the link is reached
//! through `&mut` on the owner (`Owned::next_mut`).

use super::node::Owned;

/// A `start_soon` child, as the group queues and polls it: its node's
/// owner (`node.rs`).
pub(crate) type LocalChild = Owned;

/// The children started and not yet picked up, most recent first.
#[derive(Default)]
pub(crate) struct Incoming {
    head: Option<LocalChild>,
}

impl Incoming {
    /// Queues `child` (no allocation: the link is in its node).
    #[inline]
    pub(crate) fn push(&mut self, mut child: LocalChild) {
        *child.next_mut() = self.head.take();
        self.head = Some(child);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }
}

/// The children, each taken out of the list, from its head.
impl Iterator for Incoming {
    type Item = LocalChild;

    #[inline]
    fn next(&mut self) -> Option<LocalChild> {
        let mut child = self.head.take()?;
        self.head = child.next_mut().take();
        Some(child)
    }
}

impl Drop for Incoming {
    /// One child at a time: a long list is not dropped by recursion.
    fn drop(&mut self) {
        while self.next().is_some() {}
    }
}
