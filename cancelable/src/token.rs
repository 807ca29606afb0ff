//! `CancellationToken`: a cheap, thread-safe cancellation flag with reasons,
//! waiters, callbacks and parent/child trees.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

use atomic_waker::AtomicWaker;
use slab::Slab;

use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering, Weak};
use crate::{CancelReason, Cancelled};

/// A cancellation token: clone it, hand it to any task or thread, and
/// cancel everything that watches it.
///
/// * `cancel()` and [`cancel_with`](Self::cancel_with) work from any thread
///   or task; the first reason recorded wins.
/// * [`is_cancelled`](Self::is_cancelled) is one atomic load, no lock.
/// * [`cancelled`](Self::cancelled) is a future that completes once the
///   token is cancelled; every waiter is woken exactly once.
/// * [`child`](Self::child) makes a token that is cancelled with its parent
///   (reason [`CancelReason::Parent`]) but can be cancelled alone; dropping
///   the last clone of a child detaches it from its parent.
///
/// ```
/// use cancelable::{CancellationToken, CancelReason};
///
/// let parent = CancellationToken::new();
/// let child = parent.child();
/// std::thread::spawn(move || parent.cancel()).join().unwrap();
/// assert!(child.is_cancelled());
/// assert_eq!(child.reason(), Some(CancelReason::Parent(Box::new(CancelReason::Manual))));
/// ```
#[derive(Clone)]
pub struct CancellationToken {
    inner: Arc<TokenInner>,
}

pub(crate) struct TokenInner {
    cancelled: AtomicBool,
    /// The waker of the scope that owns this token, if any: cheaper to
    /// update on every poll than an entry in `listeners`.
    owner: AtomicWaker,
    state: Mutex<TokenState>,
    /// Keeps this token registered with its parent; dropping it detaches.
    _parent: Option<ChildLink>,
}

struct TokenState {
    // Boxed: only cancelled tokens have one, and every token has the slot.
    cause: Option<Box<Cause>>,
    listeners: Slab<Listener>,
}

/// The reason and message recorded by the first cancel.
#[derive(Clone, Debug)]
pub(crate) struct Cause {
    pub(crate) reason: CancelReason,
    pub(crate) message: Option<StdArc<str>>,
}

pub(crate) type Callback = Box<dyn FnOnce(&Cause) + Send>;

enum Listener {
    Waker(Option<Waker>),
    /// A child token: cancelled with `Parent(reason)`, or with the same
    /// reason when `transparent` (a scope linked to a token source).
    Child(Weak<TokenInner>, bool),
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
        if state.cause.is_none()
            && matches!(state.listeners.get(self.key), Some(Listener::Child(..)))
        {
            state.listeners.remove(self.key);
        }
    }
}

impl TokenInner {
    fn new(parent: Option<ChildLink>) -> Self {
        TokenInner {
            cancelled: AtomicBool::new(false),
            owner: AtomicWaker::new(),
            state: Mutex::new(TokenState {
                cause: None,
                listeners: Slab::new(),
            }),
            _parent: parent,
        }
    }

    fn cause(&self) -> Option<Cause> {
        if !self.cancelled.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.state).cause.as_deref().cloned()
    }

    /// The recorded cause even while the flag is not yet published (a
    /// cancel is cancelling the children): used when linking new children,
    /// which must not miss a cancel in progress.
    fn recorded_cause(&self) -> Option<Cause> {
        lock(&self.state).cause.as_deref().cloned()
    }

    /// Records `cause` if no cause is recorded yet, cancels every child,
    /// publishes the flag, then wakes every waiter and runs every callback.
    ///
    /// Children are cancelled *before* the flag is published: whoever sees
    /// this token cancelled (a scope woken by it, a checkpoint) also sees
    /// its whole subtree cancelled, so nested scopes polled in reaction end
    /// with their `Parent` reason instead of still pending. Listeners that
    /// register while the children are being cancelled are collected when
    /// the flag is published, under the lock, so none is lost.
    fn cancel(&self, cause: Cause) -> bool {
        if self.cancelled.load(Ordering::Acquire) {
            return false;
        }
        let early = {
            let mut state = lock(&self.state);
            if state.cause.is_some() {
                return false;
            }
            state.cause = Some(Box::new(cause.clone()));
            std::mem::take(&mut state.listeners)
        };
        let mut to_notify = Vec::new();
        cancel_children(early, &cause, &mut to_notify);
        let late = {
            let state = &mut *lock(&self.state);
            self.cancelled.store(true, Ordering::Release);
            std::mem::take(&mut state.listeners)
        };
        cancel_children(late, &cause, &mut to_notify);
        self.owner.wake();
        for listener in to_notify {
            match listener {
                Listener::Waker(Some(waker)) => waker.wake(),
                Listener::Callback(callback) => run_callback(callback, &cause),
                Listener::Waker(None) | Listener::Child(..) => {}
            }
        }
        true
    }

    /// Registers `listener` unless the token is already cancelled, in which
    /// case the listener is handed back together with the cause.
    fn register(&self, listener: Listener) -> Result<usize, (Listener, Cause)> {
        let mut state = lock(&self.state);
        if self.cancelled.load(Ordering::Acquire) {
            let cause = state
                .cause
                .as_deref()
                .cloned()
                .expect("a cause is recorded before the flag is set");
            return Err((listener, cause));
        }
        Ok(state.listeners.insert(listener))
    }

    fn unregister(&self, key: usize) {
        if self.cancelled.load(Ordering::Acquire) {
            return;
        }
        let mut state = lock(&self.state);
        // Once a cancel has begun, keys may belong to the slab it took:
        // leave everything to the cancel, which drains what is left.
        if state.cause.is_none() && state.listeners.contains(key) {
            state.listeners.remove(key);
        }
    }
}

/// Cancels the children among `listeners` and keeps the others for notifying.
fn cancel_children(listeners: Slab<Listener>, cause: &Cause, others: &mut Vec<Listener>) {
    let mut child_cause = None;
    for (_, listener) in listeners {
        match listener {
            Listener::Child(child, transparent) => {
                if let Some(child) = child.upgrade() {
                    child.cancel(if transparent {
                        cause.clone()
                    } else {
                        child_cause
                            .get_or_insert_with(|| Cause {
                                reason: cause.reason.for_child(),
                                message: cause.message.clone(),
                            })
                            .clone()
                    });
                }
            }
            other => others.push(other),
        }
    }
}

/// Runs a cancel callback; a panic in user code is contained so that the
/// remaining callbacks, waiters and children are still served.
fn run_callback(callback: Callback, cause: &Cause) {
    if catch_unwind(AssertUnwindSafe(|| callback(cause))).is_err() {
        #[cfg(feature = "tracing")]
        tracing::error!(reason = %cause.reason, "a cancel callback panicked; the panic was contained");
    }
}

impl CancellationToken {
    /// A new, uncancelled token with no parent.
    pub fn new() -> Self {
        CancellationToken {
            inner: Arc::new(TokenInner::new(None)),
        }
    }

    /// A child token: cancelled when `self` is (with reason
    /// [`CancelReason::Parent`]), but cancelling it leaves `self` alone.
    ///
    /// The child stays registered with its parent only while a clone of it
    /// is alive, so children that come and go do not make the parent grow.
    pub fn child(&self) -> CancellationToken {
        let parent = &self.inner;
        let mut inherited = None;
        let child = Arc::new_cyclic(|weak: &Weak<TokenInner>| {
            let link = match parent.register(Listener::Child(weak.clone(), false)) {
                Ok(key) => Some(ChildLink {
                    parent: parent.clone(),
                    key,
                }),
                Err((_, cause)) => {
                    inherited = Some(cause);
                    None
                }
            };
            TokenInner::new(link)
        });
        // The parent was cancelled before we registered, or while the child
        // was still being built (its weak pointer could not be upgraded
        // then): copy the cause in both cases.
        if let Some(cause) = inherited.or_else(|| parent.recorded_cause()) {
            child.cancel(Cause {
                reason: cause.reason.for_child(),
                message: cause.message,
            });
        }
        CancellationToken { inner: child }
    }

    /// Cancels the token with reason [`CancelReason::Manual`].
    ///
    /// Returns `true` if this call cancelled it, `false` if it was already
    /// cancelled (the first reason is kept).
    pub fn cancel(&self) -> bool {
        self.inner.cancel(Cause {
            reason: CancelReason::Manual,
            message: None,
        })
    }

    /// Cancels the token with `reason` and a message for logs and errors
    /// (an empty message is recorded as none).
    ///
    /// Returns `true` if this call cancelled it; only the first reason and
    /// message are kept.
    pub fn cancel_with(&self, reason: CancelReason, message: impl Into<String>) -> bool {
        let message = message.into();
        self.inner.cancel(Cause {
            reason,
            message: (!message.is_empty()).then(|| StdArc::from(message)),
        })
    }

    pub(crate) fn cancel_cause(&self, cause: Cause) -> bool {
        self.inner.cancel(cause)
    }

    /// `true` once the token is cancelled. One atomic load, no lock.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// The reason the token was cancelled, or `None` while it is not.
    pub fn reason(&self) -> Option<CancelReason> {
        self.inner.cause().map(|cause| cause.reason)
    }

    /// The message given with the cancellation, if any.
    pub fn message(&self) -> Option<String> {
        self.inner
            .cause()
            .and_then(|cause| cause.message.map(|message| message.to_string()))
    }

    /// The cause, as soon as a cancel has recorded it — possibly before the
    /// flag reads as cancelled (while the children are being cancelled).
    pub(crate) fn recorded_cause(&self) -> Option<Cause> {
        self.inner.recorded_cause()
    }

    /// `Err(Cancelled)` if the token is cancelled, `Ok(())` otherwise.
    pub fn check(&self) -> Result<(), Cancelled> {
        match self.inner.cause() {
            None => Ok(()),
            Some(cause) => Err(Cancelled::new(cause.reason).with_message(cause.message)),
        }
    }

    /// A future that completes when the token is cancelled (at once if it
    /// already is).
    pub fn cancelled(&self) -> WaitForCancellation<'_> {
        WaitForCancellation {
            token: self,
            key: None,
        }
    }

    /// Like [`cancelled`](Self::cancelled), but owns a clone of the token,
    /// so the future is `'static`.
    pub fn cancelled_owned(self) -> WaitForCancellationOwned {
        WaitForCancellationOwned {
            token: self,
            key: None,
        }
    }

    /// Runs `callback` when the token is cancelled, on the thread that
    /// cancels it, with the reason. If the token is already cancelled the
    /// callback runs now, before this returns.
    ///
    /// The callback stays registered while the returned guard lives;
    /// call [`CallbackGuard::detach`] to keep it for the token's lifetime.
    /// A panicking callback is contained: other callbacks still run and the
    /// token stays usable.
    pub fn on_cancel<F>(&self, callback: F) -> CallbackGuard
    where
        F: FnOnce(&CancelReason) + Send + 'static,
    {
        self.on_cancel_cause(Box::new(move |cause: &Cause| callback(&cause.reason)))
    }

    /// [`on_cancel`](Self::on_cancel) for callbacks that also want the message.
    pub(crate) fn on_cancel_cause(&self, callback: Callback) -> CallbackGuard {
        match self.inner.register(Listener::Callback(callback)) {
            Ok(key) => CallbackGuard {
                registration: Some((self.inner.clone(), key)),
            },
            Err((listener, cause)) => {
                if let Listener::Callback(callback) = listener {
                    run_callback(callback, &cause);
                }
                CallbackGuard { registration: None }
            }
        }
    }

    /// The number of live child tokens and scopes linked to this token.
    ///
    /// Meant for diagnostics and tests: it returns to zero once every child
    /// has been dropped or the token is cancelled.
    pub fn child_count(&self) -> usize {
        lock(&self.inner.state)
            .listeners
            .iter()
            .filter(|(_, listener)| matches!(listener, Listener::Child(..)))
            .count()
    }

    /// Links an existing token under `self`, as `child()` does for a new
    /// one; the link lasts until the returned value is dropped. A
    /// `transparent` child is cancelled with `self`'s own reason rather
    /// than `Parent(reason)`.
    pub(crate) fn attach(&self, child: &CancellationToken, transparent: bool) -> Option<ChildLink> {
        // `child` is alive, so a cancel that takes this registration reaches
        // it; a parent already cancelled hands its cause back instead.
        match self
            .inner
            .register(Listener::Child(Arc::downgrade(&child.inner), transparent))
        {
            Ok(key) => Some(ChildLink {
                parent: self.inner.clone(),
                key,
            }),
            Err((_, cause)) => {
                child.inner.cancel(if transparent {
                    cause
                } else {
                    Cause {
                        reason: cause.reason.for_child(),
                        message: cause.message,
                    }
                });
                None
            }
        }
    }

    /// Registers the waker of the scope that owns this token.
    #[inline]
    pub(crate) fn register_owner(&self, waker: &Waker) {
        self.inner.owner.register(waker);
    }

    /// Wakes the scope that owns this token (used when its deadline moves).
    pub(crate) fn wake_owner(&self) {
        self.inner.owner.wake();
    }

    /// `true` if both handles refer to the same token.
    pub fn same_as(&self, other: &CancellationToken) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Default for CancellationToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .field("reason", &self.reason())
            .finish()
    }
}

/// Keeps an [`on_cancel`](CancellationToken::on_cancel) callback registered;
/// dropping it unregisters the callback if it has not run yet.
#[must_use = "dropping the guard unregisters the callback at once; call `.detach()` to keep it"]
pub struct CallbackGuard {
    registration: Option<(Arc<TokenInner>, usize)>,
}

impl CallbackGuard {
    /// Keeps the callback registered for as long as the token lives.
    pub fn detach(mut self) {
        self.registration = None;
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        if let Some((token, key)) = self.registration.take() {
            token.unregister(key);
        }
    }
}

impl fmt::Debug for CallbackGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackGuard")
            .field("registered", &self.registration.is_some())
            .finish()
    }
}

/// Shared poll logic of the two waiting futures.
fn poll_cancelled(
    token: &CancellationToken,
    key: &mut Option<usize>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if token.is_cancelled() {
        return Poll::Ready(());
    }
    let mut state = lock(&token.inner.state);
    if token.inner.cancelled.load(Ordering::Acquire) {
        return Poll::Ready(());
    }
    let cancelling = state.cause.is_some();
    match key.and_then(|key| state.listeners.get_mut(key)) {
        // While a cancel is in progress our key may point into the slab it
        // took: register afresh, the cancel collects it when it publishes.
        Some(Listener::Waker(slot)) if !cancelling => match slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        },
        _ => {
            *key = Some(
                state
                    .listeners
                    .insert(Listener::Waker(Some(cx.waker().clone()))),
            )
        }
    }
    Poll::Pending
}

fn drop_waiter(token: &CancellationToken, key: Option<usize>) {
    if let Some(key) = key {
        token.inner.unregister(key);
    }
}

/// Future returned by [`CancellationToken::cancelled`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitForCancellation<'a> {
    token: &'a CancellationToken,
    key: Option<usize>,
}

impl Future for WaitForCancellation<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        poll_cancelled(this.token, &mut this.key, cx)
    }
}

impl Drop for WaitForCancellation<'_> {
    fn drop(&mut self) {
        drop_waiter(self.token, self.key);
    }
}

impl fmt::Debug for WaitForCancellation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellation")
            .finish_non_exhaustive()
    }
}

/// Future returned by [`CancellationToken::cancelled_owned`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitForCancellationOwned {
    token: CancellationToken,
    key: Option<usize>,
}

impl Future for WaitForCancellationOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        poll_cancelled(&this.token, &mut this.key, cx)
    }
}

impl Drop for WaitForCancellationOwned {
    fn drop(&mut self) {
        drop_waiter(&self.token, self.key);
    }
}

impl fmt::Debug for WaitForCancellationOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellationOwned")
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tokio-util")]
impl CancellationToken {
    /// A `tokio_util` token that is cancelled when this one is.
    ///
    /// The link is a cancel callback on `self`: no task watches the token.
    pub fn to_tokio_util(&self) -> tokio_util::sync::CancellationToken {
        let linked = tokio_util::sync::CancellationToken::new();
        let target = linked.clone();
        self.on_cancel(move |_| target.cancel()).detach();
        linked
    }
}

#[cfg(feature = "tokio-util")]
impl From<CancellationToken> for tokio_util::sync::CancellationToken {
    fn from(token: CancellationToken) -> Self {
        token.to_tokio_util()
    }
}
