//! The `start_soon` children a group has accepted and not yet picked up:
//! a list linked through the children's own boxes, so that queuing a child
//! allocates nothing (no vector to grow by doublings as a burst of
//! children starts).
//!
//! Each `start_soon` child is boxed once, in a [`LocalNode`]: the child and
//! room for the next node of the list. The group's state keeps the list's
//! head ([`Incoming`]); the group's future takes the whole list under the
//! lock and moves the children, in the order they started, into the set it
//! polls. Safe code only: the link is a box the node owns, outside the
//! pinned child.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// A `start_soon` child, boxed once, as the group queues and polls it.
pub(crate) type LocalChild = Pin<Box<LocalNode<dyn Future<Output = ()> + Send>>>;

pin_project! {
    /// A child and its link in the group's incoming list: the link comes
    /// first, so that it is a field of the node whatever the child
    /// (`LocalNode<dyn Future>`), read without a call through the child's
    /// vtable.
    pub(crate) struct LocalNode<C: ?Sized> {
        next: Option<LocalChild>,
        #[pin]
        pub(crate) child: C,
    }
}

impl<C> LocalNode<C> {
    pub(crate) fn new(child: C) -> Self {
        LocalNode { next: None, child }
    }
}

impl<C: Future<Output = ()> + ?Sized> Future for LocalNode<C> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().child.poll(cx)
    }
}

/// The children started and not yet picked up, most recent first.
#[derive(Default)]
pub(crate) struct Incoming {
    head: Option<LocalChild>,
}

impl Incoming {
    /// Queues `child` (no allocation: the link is in its box).
    #[inline]
    pub(crate) fn push(&mut self, mut child: LocalChild) {
        *child.as_mut().project().next = self.head.take();
        self.head = Some(child);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// The same children in the other order: the list taken from the
    /// group's state (most recent first) becomes the order they started.
    pub(crate) fn reversed(self) -> Incoming {
        let mut reversed = Incoming::default();
        for child in self {
            reversed.push(child);
        }
        reversed
    }
}

/// The children, each taken out of the list, from its head.
impl Iterator for Incoming {
    type Item = LocalChild;

    #[inline]
    fn next(&mut self) -> Option<LocalChild> {
        let mut child = self.head.take()?;
        self.head = child.as_mut().project().next.take();
        Some(child)
    }
}

impl Drop for Incoming {
    /// One child at a time: a long list is not dropped by recursion.
    fn drop(&mut self) {
        while self.next().is_some() {}
    }
}
