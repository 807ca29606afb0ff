//! One allocation per child: a [`Node`] holds what the child shares with
//! its handle (its [`Slot`]) and the child itself, pinned in place, with
//! its link in the group's incoming list (`incoming.rs`).
//!
//! The node is reference-counted: the handle ([`TaskHandle`]), a spawned
//! child's abort handle (`aborts.rs`) and the node's one [`Owned`] each
//! hold it. Only the [`Owned`] reaches the child: it polls it (the group's
//! set of `start_soon` children, or a spawned child's executor task), and
//! its drop ends it — the child reports its end, cancelled, if it had not
//! ended — so that the child is dropped when its owner is, never later
//! because a handle or an abort handle lives on. The others reach only the
//! slot.
//!
//! # Invariants
//!
//! 1. **One [`Owned`] per node**, made with it ([`new_child`]) and never
//!    copied; the child and its link are touched only through `&mut
//!    Owned` (polled, linked, disarmed) and by its drop (ended), or by the
//!    node's own drop once nothing else holds it. So no two references to
//!    them exist at once, on any thread: this is the `SAFETY:` argument of
//!    each access, and of `Node: Sync` (what is shared across threads is
//!    the slot, which is `Sync` on its own).
//! 2. **The child never moves**: it lives in the node's allocation from
//!    its construction to its drop (in place: by its owner's drop, or by
//!    the node's, whichever comes first), so it is pinned there.
//!
//! Safe code everywhere else: the handle and the abort handle read the
//! slot through a plain `Arc`, and the child's code never sees its node.
//! Tested by the task-group tests on every backend (children dropped
//! before, during and after their polls, refused, aborted, panicking, and
//! handles outliving their groups).

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::aborts::Abort;
use super::local::Local;
use super::slot::Slot;

/// A child, as its node runs it: polled with the slot it shares with its
/// handle, ended early (dropped before its end: it reports the end) or
/// disarmed (refused by its group: nothing to report).
pub(crate) trait Child<T>: Send {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, slot: &Slot<T>) -> Poll<()>;
    /// Ends the child where it is: its body is dropped, its end reported
    /// if it had not been.
    fn abandon(self: Pin<&mut Self>, slot: &Slot<T>);
    /// Forgets the end report of a child its group refused.
    fn disarm(self: Pin<&mut Self>);
}

/// A child and what it shares with its handle, in one allocation (module
/// docs). `C` is the child with its link ([`Linked`]); a handle knows the
/// node as `Node<T, dyn Send>`, which reaches the slot only.
pub(crate) struct Node<T, C: ?Sized> {
    pub(crate) slot: Slot<T>,
    /// A `start_soon` child's place in its group's set (`local.rs`): what
    /// its waker queues.
    local: Option<Local>,
    run: UnsafeCell<C>,
}

// SAFETY: the slot is `Sync` on its own (`T: Send`); `run` is reached only
// through the node's one `Owned`, by `&mut`, or by the node's drop
// (invariant 1): sharing `&Node` between threads never shares it.
#[allow(unsafe_code)]
unsafe impl<T: Send, C: ?Sized + Send> Sync for Node<T, C> {}

/// The child with its link in its group's incoming list (`incoming.rs`).
pub(crate) struct Linked<C> {
    next: Option<Owned>,
    child: C,
}

/// The one owner of a node's child (invariant 1): polls it as a future,
/// ends it when dropped. A `start_soon` child's owner keeps its waker
/// (the node itself, `local.rs`), made once with the node.
pub(crate) struct Owned {
    node: Arc<dyn Run>,
    waker: Option<Waker>,
}

/// A node as its owner reaches it, whatever its child.
trait Run: Send + Sync {
    /// # Safety
    ///
    /// Called only by the node's one [`Owned`], through `&mut` (invariant
    /// 1): nothing else refers to the child during the call.
    #[allow(unsafe_code)]
    unsafe fn poll_child(&self, cx: &mut Context<'_>) -> Poll<()>;
    /// # Safety
    ///
    /// As [`poll_child`](Run::poll_child); once, from the owner's drop.
    #[allow(unsafe_code)]
    unsafe fn end_child(&self);
    /// # Safety
    ///
    /// As [`poll_child`](Run::poll_child).
    #[allow(unsafe_code)]
    unsafe fn disarm_child(&self);
    /// Its place in its group's set, for a `start_soon` child.
    fn local(&self) -> Option<&Local>;
    /// The link in the incoming list.
    ///
    /// # Safety
    ///
    /// As [`poll_child`](Run::poll_child); the pointer is used only while
    /// the owner is borrowed mutably.
    #[allow(unsafe_code)]
    unsafe fn next(&self) -> *mut Option<Owned>;
}

/// A new child node holding `slot` and `child` (a `start_soon` child:
/// with its place in its group's set, `local`): its one owner, and the
/// node, for its handle (and a spawned child's abort handle). Inlined: the
/// child is written once, straight into the node.
#[inline(always)]
pub(crate) fn new_child<T, C>(
    slot: Slot<T>,
    child: C,
    local: Option<Local>,
) -> (Owned, Arc<Node<T, Linked<C>>>)
where
    T: Send + 'static,
    C: Child<T> + 'static,
{
    let waker_too = local.is_some();
    let node = Arc::new(Node {
        slot,
        local,
        run: UnsafeCell::new(Linked { next: None, child }),
    });
    let owned = Owned {
        node: node.clone(),
        waker: waker_too.then(|| Waker::from(node.clone())),
    };
    (owned, node)
}

/// A `start_soon` child's waker: queues it in its group's set.
impl<T, C> Wake for Node<T, Linked<C>>
where
    T: Send + 'static,
    C: Child<T> + 'static,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    #[inline]
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(local) = &self.local {
            local.wake();
        }
    }
}

/// A node without a child: the slot of a handle to a child never started.
pub(crate) fn without_child<T: Send + 'static>(slot: Slot<T>) -> Arc<Node<T, dyn Send>> {
    Arc::new(Node {
        slot,
        local: None,
        run: UnsafeCell::new(()),
    })
}

#[allow(unsafe_code)]
impl<T, C> Run for Node<T, Linked<C>>
where
    T: Send,
    C: Child<T>,
{
    unsafe fn poll_child(&self, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the caller is the one owner, borrowed mutably (invariant
        // 1): this is the only reference to the child; it never moves
        // (invariant 2), so it may be pinned.
        let child = unsafe { Pin::new_unchecked(&mut (*self.run.get()).child) };
        child.poll(cx, &self.slot)
    }

    unsafe fn end_child(&self) {
        // SAFETY: as in `poll_child`; the link is taken out first, so no
        // other child is dropped from within this one's end.
        let next = unsafe { (*self.run.get()).next.take() };
        let child = unsafe { Pin::new_unchecked(&mut (*self.run.get()).child) };
        child.abandon(&self.slot);
        drop(next);
    }

    unsafe fn disarm_child(&self) {
        // SAFETY: as in `poll_child`.
        let child = unsafe { Pin::new_unchecked(&mut (*self.run.get()).child) };
        child.disarm();
    }

    fn local(&self) -> Option<&Local> {
        self.local.as_ref()
    }

    unsafe fn next(&self) -> *mut Option<Owned> {
        // SAFETY: a pointer to a field of the cell, not a reference: the
        // caller dereferences it under its `&mut Owned`.
        unsafe { std::ptr::addr_of_mut!((*self.run.get()).next) }
    }
}

impl<T: Send, C: ?Sized + Send> Abort for Node<T, C> {
    fn abort(&self) {
        self.slot.abort();
    }
}

#[allow(unsafe_code)]
impl Owned {
    /// The link to the next child in the incoming list.
    #[inline]
    pub(crate) fn next_mut(&mut self) -> &mut Option<Owned> {
        // SAFETY: `&mut self` is the one owner borrowed mutably (invariant
        // 1), for as long as the returned reference lives.
        unsafe { &mut *self.node.next() }
    }

    /// Forgets the end report of a child its group refused (dropped next).
    pub(crate) fn disarm(&mut self) {
        // SAFETY: the one owner, borrowed mutably (invariant 1).
        unsafe { self.node.disarm_child() }
    }

    /// A `start_soon` child's place in its group's set.
    #[inline]
    pub(crate) fn local(&self) -> Option<&Local> {
        self.node.local()
    }

    /// Polls a `start_soon` child with its own waker (`local.rs`), after
    /// marking it not queued: a wake from now on queues it again.
    #[inline]
    pub(crate) fn poll_local(&mut self) -> Poll<()> {
        let Some(waker) = &self.waker else {
            return Poll::Ready(());
        };
        if let Some(local) = self.node.local() {
            local.unqueue();
        }
        let mut cx = Context::from_waker(waker);
        // SAFETY: the one owner, borrowed mutably (invariant 1).
        unsafe { self.node.poll_child(&mut cx) }
    }
}

#[allow(unsafe_code)]
impl Future for Owned {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the one owner (`Owned` is `Unpin`), borrowed mutably
        // (invariant 1).
        unsafe { self.get_mut().node.poll_child(cx) }
    }
}

#[allow(unsafe_code)]
impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the one owner, dropped: nothing else reaches the child,
        // and this is its only end (invariant 1).
        unsafe { self.node.end_child() }
    }
}
