//! The token engine: one node of a cancellation tree, its listeners, and
//! the cancel protocol. [`CancellationToken`](super::CancellationToken) is a
//! handle to a node.
//!
//! A node holds the `cancelled` flag (read without a lock), the waker of
//! the scope that owns it, and under its lock the recorded [`Cause`] and a
//! slab of listeners: waiters' wakers, child nodes (held weakly) and cancel
//! callbacks. Cancelling records the cause, cancels the children, publishes
//! the flag, then wakes the waiters and runs the callbacks.
//!
//! # Invariants
//!
//! 1. **Cause before flag.** The cause is recorded under the lock before
//!    the flag is published (`Release`); whoever reads the flag set
//!    (`Acquire`) finds a cause. Only the first cancel records one: later
//!    cancels return `false` and change nothing.
//! 2. **Children before flag.** A cancel takes the listeners, cancels every
//!    child among them, and only then publishes the flag: whoever sees a
//!    token cancelled (a scope woken by it, a checkpoint) also sees its
//!    whole subtree cancelled, so nested scopes polled in reaction end with
//!    their `Parent` reason instead of still pending.
//! 3. **Late-listener sweep.** A listener registered while the children are
//!    being cancelled (cause recorded, flag not yet published) lands in the
//!    fresh slab, which the cancel takes again when it publishes the flag,
//!    under the lock: none is lost. A registration checks the flag under
//!    the lock, so it is either swept or handed back with the cause.
//! 4. **Key validity during a cancel.** A listener key names an entry of
//!    the live slab only while no cause is recorded. Once a cancel has
//!    begun, a key may point into the slab the cancel took: unregistering
//!    (a callback guard, a dropped waiter, a child link) then leaves the
//!    entry to the cancel, and a waiter polled again registers afresh.
//! 5. **A new child never misses a cancel in progress.** Linking a child
//!    reads the *recorded* cause after registering, not only the flag, so a
//!    cancel that took the listeners before the child was registered (or
//!    before its weak pointer could be upgraded) still reaches it.
//!
//! # Deadlock safety
//!
//! * At most one node's lock is held at a time: a cancel releases its lock
//!   before it cancels the children and takes it again to publish the
//!   flag; linking registers with the parent, then cancels the child, one
//!   lock after the other.
//! * No user code runs under a node's lock: wakers are woken and callbacks
//!   run after the lock is released (a panicking callback is contained,
//!   see [`crate::panic`]); a listener removed by unregistering is dropped
//!   after the lock is released too.
//! * Foreign locks: tokio-util's lock may be taken under ours, never ours
//!   under theirs (see [`super::tokio_util`]).

use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;

use super::listeners::Listeners;
use crate::panic;
pub(crate) use crate::reason::Cause;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering, Weak};

/// The largest listener slab a reset node keeps (see [`TokenInner::reset`]).
const KEPT_LISTENER_CAPACITY: usize = 16;

pub(crate) struct TokenInner {
    pub(super) cancelled: AtomicBool,
    /// The waker of the scope that owns this token, if any: cheaper to
    /// update on every poll than an entry in `listeners`.
    owner: AtomicWaker,
    pub(super) state: Mutex<TokenState>,
    /// Keeps this token registered with its parents (none, one, or several
    /// for a linked token); dropping it detaches from all of them. One
    /// pointer, no allocation when empty.
    _parents: Option<Box<Parents>>,
}

/// The links of a node with parents, held for their `Drop` (see
/// [`ChildLink`]): one allocation for one parent as for several, and a
/// child token's one link boxed without going through a list.
pub(super) enum Parents {
    One(#[allow(dead_code)] ChildLink),
    Many(#[allow(dead_code)] Box<[ChildLink]>),
}

pub(super) struct TokenState {
    // Behind a pointer: only cancelled tokens have one, and every token has
    // the slot. Shared: the children of a cancelled node are cancelled with
    // one cause between them (see `cancel_children`), not one each.
    cause: Option<StdArc<Cause>>,
    pub(super) listeners: Listeners<Listener>,
    /// The `tokio_util` token every conversion of this token is a child of,
    /// made by the first conversion (see `super::tokio_util`).
    #[cfg(feature = "tokio-util")]
    pub(super) tokio_util: Option<::tokio_util::sync::CancellationToken>,
}

pub(crate) type Callback = Box<dyn FnOnce(&Cause) + Send>;

/// How a parent's cancellation reaches a linked child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// With [`CancelReason::Parent`](crate::CancelReason::Parent) carrying
    /// the parent's reason: a child token, a scope started inside another.
    Parent,
    /// With the parent's own reason and message: a scope linked to a token
    /// source, which reports the token's reason as its own.
    Transparent,
}

impl Link {
    /// The cause a child linked this way records when its parent was
    /// cancelled with `cause`: the parent's own (transparent), or
    /// `Parent(reason)`, made once and shared by all the parent's children
    /// (`Cause::shared_for_child`), never one allocation each.
    #[inline]
    fn cause_from(self, cause: &StdArc<Cause>) -> StdArc<Cause> {
        match self {
            Link::Transparent => cause.clone(),
            Link::Parent => cause.shared_for_child(),
        }
    }
}

pub(super) enum Listener {
    Waker(Option<Waker>),
    /// The waker of a scope without shared state watching this token as
    /// its source (`scope/lazy.rs`): a waker, counted as a linked scope
    /// by `child_count`.
    Scope(Option<Waker>),
    /// A linked child, held weakly: its `ChildLink` unregisters it.
    Child(Weak<TokenInner>, Link),
    Callback(Callback),
}

/// A child's registration in its parent; removes itself when dropped.
pub(crate) struct ChildLink {
    parent: Arc<TokenInner>,
    key: usize,
}

impl Drop for ChildLink {
    fn drop(&mut self) {
        // A cancelled parent has handed its listeners over already: no
        // lock needed (and none taken while a cancel wakes many children).
        if self.parent.cancelled.load(Ordering::Acquire) {
            return;
        }
        let mut state = lock(&self.parent.state);
        // Invariant 4: only while no cancel has begun.
        if state.cause.is_none()
            && matches!(state.listeners.get(self.key), Some(Listener::Child(..)))
        {
            state.listeners.try_remove(self.key);
        }
    }
}

impl TokenInner {
    pub(super) fn new(parents: Option<Box<Parents>>) -> Self {
        TokenInner {
            cancelled: AtomicBool::new(false),
            owner: AtomicWaker::new(),
            state: Mutex::new(TokenState {
                cause: None,
                listeners: Listeners::default(),
                #[cfg(feature = "tokio-util")]
                tokio_util: None,
            }),
            _parents: parents,
        }
    }

    /// Makes a node nobody else holds as good as new, for reuse by the
    /// scope-state pool: no cause, no listeners, no owner waker, no parents.
    /// The `&mut` proves that no handle, child link or waiter reaches it.
    pub(super) fn reset(&mut self) {
        self.cancelled.store(false, Ordering::Relaxed);
        drop(self.owner.take());
        let state = crate::sync::get_mut(&mut self.state);
        state.cause = None;
        // Keeps a small slab's buffer, so that a reused node does not
        // allocate again for its first listeners; a large one (a node that
        // had many children) is freed rather than held by the pool.
        state.listeners.clear(KEPT_LISTENER_CAPACITY);
        #[cfg(feature = "tokio-util")]
        {
            state.tokio_util = None;
        }
        // Unregisters from the parents (there are none for a scope's token:
        // its links are kept by the scope, not by the node).
        if self._parents.is_some() {
            self._parents = None;
        }
    }

    /// A new node linked under `self` as a child ([`Link::Parent`]).
    pub(super) fn new_child(self: &Arc<Self>) -> Arc<TokenInner> {
        let mut inherited = None;
        let child = Arc::new_cyclic(|weak: &Weak<TokenInner>| {
            let link = self
                .link(weak.clone(), Link::Parent)
                .map_err(|cause| inherited = Some(cause))
                .ok();
            TokenInner::new(link.map(|link| Box::new(Parents::One(link))))
        });
        // Invariant 5: the parent was cancelled before we registered, or
        // while the child was still being built (its weak pointer could not
        // be upgraded then): cancelled with its cause in both cases.
        if let Some(cause) = inherited.or_else(|| self.recorded_shared_cause()) {
            child.cancel_shared(Link::Parent.cause_from(&cause));
        }
        child
    }

    /// A new node linked under every one of `parents` ([`Link::Parent`]):
    /// cancelled with the cause of the first of them to be cancelled.
    pub(super) fn new_linked(parents: &[&Arc<Self>]) -> Arc<TokenInner> {
        let mut inherited = None;
        let child = Arc::new_cyclic(|weak: &Weak<TokenInner>| {
            let links = parents
                .iter()
                .filter_map(|parent| {
                    parent
                        .link(weak.clone(), Link::Parent)
                        .map_err(|cause| {
                            inherited.get_or_insert(cause);
                        })
                        .ok()
                })
                .collect::<Box<[ChildLink]>>();
            TokenInner::new((!links.is_empty()).then(|| Box::new(Parents::Many(links))))
        });
        // Invariant 5, for each parent: one cancelled before we registered,
        // or while the child was being built.
        let cause = inherited.or_else(|| parents.iter().find_map(|p| p.recorded_shared_cause()));
        if let Some(cause) = cause {
            child.cancel_shared(Link::Parent.cause_from(&cause));
        }
        child
    }

    /// Links the existing node `child` under `self`; the link lasts until
    /// the returned value is dropped. A parent already cancelled cancels
    /// the child now instead.
    pub(super) fn attach(
        self: &Arc<Self>,
        child: &Arc<TokenInner>,
        link: Link,
    ) -> Option<ChildLink> {
        // `child` is alive, so a cancel that takes this registration
        // reaches it; a parent already cancelled hands its cause back.
        self.link(Arc::downgrade(child), link)
            .map_err(|cause| child.cancel_shared(link.cause_from(&cause)))
            .ok()
    }

    /// Registers `child` with `self`: the link, or the cause if `self` is
    /// already cancelled.
    fn link(
        self: &Arc<Self>,
        child: Weak<TokenInner>,
        link: Link,
    ) -> Result<ChildLink, StdArc<Cause>> {
        match self.register(Listener::Child(child, link)) {
            Ok(key) => Ok(ChildLink {
                parent: self.clone(),
                key,
            }),
            Err((_, cause)) => Err(cause),
        }
    }

    #[inline]
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// The cause, once the flag reads as cancelled.
    pub(super) fn cause(&self) -> Option<Cause> {
        if !self.is_cancelled() {
            return None;
        }
        lock(&self.state).cause.as_deref().cloned()
    }

    /// [`cause`](Self::cause) as it is recorded: shared, not copied.
    pub(super) fn shared_cause(&self) -> Option<StdArc<Cause>> {
        if !self.is_cancelled() {
            return None;
        }
        lock(&self.state).cause.clone()
    }

    /// Whether a cancel has recorded its cause, even while the flag is not
    /// yet published: [`recorded_cause`](Self::recorded_cause)`.is_some()`
    /// without copying the cause.
    pub(super) fn has_recorded_cause(&self) -> bool {
        self.is_cancelled() || lock(&self.state).cause.is_some()
    }

    /// When the recorded cause was asked for, without copying the cause.
    #[cfg(feature = "registry")]
    pub(super) fn recorded_at(&self) -> Option<std::time::Instant> {
        lock(&self.state).cause.as_ref().map(|cause| cause.at)
    }

    /// The recorded cause even while the flag is not yet published (a
    /// cancel is cancelling the children): used when linking new children,
    /// which must not miss a cancel in progress (invariant 5).
    pub(super) fn recorded_cause(&self) -> Option<Cause> {
        lock(&self.state).cause.as_deref().cloned()
    }

    /// [`recorded_cause`](Self::recorded_cause) as it is recorded: shared,
    /// not copied.
    pub(super) fn recorded_shared_cause(&self) -> Option<StdArc<Cause>> {
        lock(&self.state).cause.clone()
    }

    /// Records `cause` if no cause is recorded yet, cancels every child,
    /// publishes the flag, then wakes every waiter and runs every callback
    /// (invariants 1 to 3). `true` if this call cancelled the node.
    pub(super) fn cancel(&self, cause: Cause) -> bool {
        if self.is_cancelled() {
            return false;
        }
        self.cancel_shared(StdArc::new(cause))
    }

    /// [`cancel`](Self::cancel) with a cause that may be shared with other
    /// nodes (the siblings cancelled by one parent).
    fn cancel_shared(&self, cause: StdArc<Cause>) -> bool {
        if self.is_cancelled() {
            return false;
        }
        let early = {
            let mut state = lock(&self.state);
            if state.cause.is_some() {
                return false;
            }
            state.cause = Some(cause.clone());
            std::mem::take(&mut state.listeners)
        };
        cancel_children(&early, &cause);
        let late = {
            let state = &mut *lock(&self.state);
            self.cancelled.store(true, Ordering::Release);
            std::mem::take(&mut state.listeners)
        };
        // Registered while the children were being cancelled: rare.
        let late = (!late.is_empty()).then_some(late);
        if let Some(late) = &late {
            cancel_children(late, &cause);
        }
        self.owner.wake();
        // The others, in the order they registered: the two slabs are
        // walked again rather than copied into a list of their own.
        let notify = |listener| match listener {
            Listener::Waker(Some(waker)) | Listener::Scope(Some(waker)) => waker.wake(),
            Listener::Callback(callback) => run_callback(callback, &cause),
            Listener::Waker(None) | Listener::Scope(None) | Listener::Child(..) => {}
        };
        early.drain(notify);
        if let Some(late) = late {
            late.drain(notify);
        }
        true
    }

    /// Registers `listener` unless the token is already cancelled, in which
    /// case the listener is handed back together with the cause.
    fn register(&self, listener: Listener) -> Result<usize, (Listener, StdArc<Cause>)> {
        let mut state = lock(&self.state);
        if self.is_cancelled() {
            let cause = state
                .cause
                .clone()
                .expect("a cause is recorded before the flag is set");
            return Err((listener, cause));
        }
        Ok(state.listeners.insert(listener))
    }

    /// Registers a cancel callback, or runs it now if the token is already
    /// cancelled: the key to unregister it with, if registered.
    pub(super) fn add_callback(&self, callback: Callback) -> Option<usize> {
        match self.register(Listener::Callback(callback)) {
            Ok(key) => Some(key),
            Err((listener, cause)) => {
                if let Listener::Callback(callback) = listener {
                    run_callback(callback, &cause);
                }
                None
            }
        }
    }

    pub(super) fn unregister(&self, key: usize) {
        if self.is_cancelled() {
            return;
        }
        let removed = {
            let mut state = lock(&self.state);
            // Invariant 4: once a cancel has begun, keys may belong to the
            // slab it took: leave everything to the cancel, which drains
            // what is left.
            if state.cause.is_some() {
                return;
            }
            state.listeners.try_remove(key)
        };
        // Dropped outside the lock: a callback's captures may take locks.
        drop(removed);
    }

    /// Polls a waiter registered under `key` (none yet if `None`):
    /// `Ready` once the token is cancelled, else (re)registers the waker.
    /// `scope`: the waiter is a scope's (`Listener::Scope`).
    pub(super) fn poll_waiter(
        &self,
        key: &mut Option<usize>,
        cx: &mut Context<'_>,
        scope: bool,
    ) -> Poll<()> {
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        let mut state = lock(&self.state);
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        let cancelling = state.cause.is_some();
        match key.and_then(|key| state.listeners.get_mut(key)) {
            // Invariant 4: while a cancel is in progress our key may point
            // into the slab it took: register afresh, the cancel collects it
            // when it publishes the flag (invariant 3).
            Some(Listener::Waker(slot) | Listener::Scope(slot)) if !cancelling => match slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            },
            _ => {
                let waker = Some(cx.waker().clone());
                let listener = match scope {
                    true => Listener::Scope(waker),
                    false => Listener::Waker(waker),
                };
                *key = Some(state.listeners.insert(listener))
            }
        }
        Poll::Pending
    }

    /// The number of linked children.
    pub(super) fn child_count(&self) -> usize {
        lock(&self.state)
            .listeners
            .iter()
            .filter(|listener| matches!(listener, Listener::Child(..) | Listener::Scope(_)))
            .count()
    }

    /// Registers the waker of the scope that owns this token.
    #[inline]
    pub(super) fn register_owner(&self, waker: &Waker) {
        self.owner.register(waker);
    }

    /// Wakes the scope that owns this token.
    pub(super) fn wake_owner(&self) {
        self.owner.wake();
    }
}

/// Cancels the children among `listeners` (the others are notified after the
/// flag is published).
fn cancel_children(listeners: &Listeners<Listener>, cause: &StdArc<Cause>) {
    listeners.visit(|listener| {
        if let Listener::Child(child, link) = listener {
            if let Some(child) = child.upgrade() {
                child.cancel_shared(link.cause_from(cause));
            }
        }
    });
}

/// Runs a cancel callback; a panic in user code is contained so that the
/// remaining callbacks, waiters and children are still served.
fn run_callback(callback: Callback, cause: &Cause) {
    let _ = panic::contain("a cancel callback", || callback(cause));
}
