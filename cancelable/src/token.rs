//! `CancellationToken`: a cheap, thread-safe cancellation flag with reasons,
//! waiters, callbacks and parent/child trees.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc as StdArc;
#[cfg(feature = "tokio-util")]
use std::sync::{Mutex as StdMutex, PoisonError};
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
    /// The `tokio_util` token every conversion of this token is a child of,
    /// made by the first conversion (see `TokenInner::tokio_util_root`).
    #[cfg(feature = "tokio-util")]
    tokio_util: Option<tokio_util::sync::CancellationToken>,
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
                #[cfg(feature = "tokio-util")]
                tokio_util: None,
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

// Conversions to and from `tokio_util` tokens.
//
// To: each token keeps at most one `tokio_util` token, its *root*, made by
// the first conversion and cancelled by one cancel callback; a conversion
// is a child of the root. tokio-util detaches a child from its parent when
// the child's last handle is dropped, so conversions that come and go leave
// nothing behind, and cancelling one leaves the root and the others alone.
//
// From: tokio-util offers no callback, only futures. The new token keeps
// `cancelled_owned()` of theirs in a `ForeignLink`, polled with a waker made
// from the link itself: tokio-util wakes it when theirs is cancelled (after
// releasing its locks, as tokio does with every waker), and waking it polls
// the future again and, once it is ready, cancels our token. No task and no
// thread is involved, and any executor (or none) works. The link lives as
// long as an `on_cancel` callback of our token: when our token is cancelled
// or dropped, the callback drops the future, which unregisters its waker
// from their token and releases our handle of it.
//
// Deadlock safety: locks are taken in one order only. Our token's lock,
// then tokio-util's (a root is made, cloned and, for a cancelled token,
// cancelled under ours: nobody can wait on it yet, so nothing runs). The
// link's lock, then tokio-util's (their future is polled and dropped under
// it). No lock of ours is ever taken under theirs: tokio-util wakes and
// drops wakers only after releasing its locks, and our callbacks, which
// drop the link's future, run with no lock of ours held.

#[cfg(feature = "tokio-util")]
impl TokenInner {
    /// The `tokio_util` token that conversions of this token are children
    /// of, made (and linked by one cancel callback) on first use.
    fn tokio_util_root(&self) -> tokio_util::sync::CancellationToken {
        let mut state = lock(&self.state);
        if let Some(root) = &state.tokio_util {
            return root.clone();
        }
        let root = tokio_util::sync::CancellationToken::new();
        if self.cancelled.load(Ordering::Acquire) {
            // Cancelled before anyone can see it, so that every conversion
            // of a cancelled token is cancelled; nobody waits on a token
            // this new, so cancelling it under our lock runs nothing.
            root.cancel();
        } else {
            // Also right while a cancel is in progress: it collects the
            // listeners registered meanwhile when it publishes the flag.
            let target = root.clone();
            state
                .listeners
                .insert(Listener::Callback(Box::new(move |_| {
                    target.cancel();
                })));
        }
        state.tokio_util = Some(root.clone());
        root
    }
}

#[cfg(feature = "tokio-util")]
impl CancellationToken {
    /// A `tokio_util` token that is cancelled when this one is.
    ///
    /// * Cancelling `self` cancels every token converted from it, on the
    ///   thread that cancels `self`, before that `cancel` returns. A token
    ///   already cancelled converts into a cancelled one.
    /// * Cancelling a converted token cancels that one (and its own
    ///   children) only: `self` and its other conversions are left alone.
    /// * `tokio_util` tokens carry no reason or message: ask `self` for
    ///   [`reason`](Self::reason) and [`message`](Self::message).
    ///
    /// Converting is cheap and leaves nothing behind: every conversion is a
    /// child of a single `tokio_util` token kept with `self` and cancelled
    /// by a single cancel callback, and a dropped conversion detaches from
    /// it. No task watches the token.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let converted = token.to_tokio_util();
    /// token.cancel();
    /// assert!(converted.is_cancelled());
    /// ```
    pub fn to_tokio_util(&self) -> tokio_util::sync::CancellationToken {
        self.inner.tokio_util_root().child_token()
    }
}

#[cfg(feature = "tokio-util")]
impl From<CancellationToken> for tokio_util::sync::CancellationToken {
    /// Same as [`CancellationToken::to_tokio_util`].
    fn from(token: CancellationToken) -> Self {
        token.to_tokio_util()
    }
}

#[cfg(feature = "tokio-util")]
impl From<tokio_util::sync::CancellationToken> for CancellationToken {
    /// A new token that is cancelled, with reason [`CancelReason::Manual`],
    /// when `token` is.
    ///
    /// * The reason is `Manual` because a `tokio_util` token is cancelled
    ///   by a call to its `cancel()` (or its parent's) in user code; it is
    ///   the reason a scope linked to such a token reports too. There is
    ///   no message.
    /// * Our token is cancelled on the thread that cancels `token`, before
    ///   that `cancel` returns, so its [`on_cancel`](Self::on_cancel)
    ///   callbacks run there. A `token` already cancelled converts into a
    ///   cancelled token.
    /// * Cancelling the new token (or dropping it) leaves `token` alone.
    /// * No task or thread watches `token`, on any executor or with none:
    ///   the new token is linked to `token` through a waker registered with
    ///   it. The link, which holds a handle of `token`, lasts until the new
    ///   token is cancelled or dropped (with its clones and children), and
    ///   nothing of it remains then.
    ///
    /// ```
    /// use cancelable::{CancelReason, CancellationToken};
    ///
    /// let theirs = tokio_util::sync::CancellationToken::new();
    /// let ours = CancellationToken::from(theirs.clone());
    /// theirs.cancel();
    /// assert!(ours.is_cancelled());
    /// assert_eq!(ours.reason(), Some(CancelReason::Manual));
    /// ```
    fn from(token: tokio_util::sync::CancellationToken) -> Self {
        let ours = CancellationToken::new();
        if token.is_cancelled() {
            ours.cancel();
            return ours;
        }
        let link = StdArc::new(ForeignLink {
            token: Arc::downgrade(&ours.inner),
            waiting: StdMutex::new(Some(Box::pin(token.cancelled_owned()))),
        });
        // `ours` is new and not cancelled: the callback is registered, and
        // it drops the watch (ending the link) when it runs or is dropped
        // with `ours`.
        let watch = ForeignWatch(link.clone());
        ours.on_cancel_cause(Box::new(move |_| drop(watch)))
            .detach();
        // The first poll registers the waker, or finds `token` cancelled
        // meanwhile and cancels `ours` now.
        link.poll_foreign();
        ours
    }
}

/// The link from a `tokio_util` token to a token converted from it; it is
/// also the waker their token wakes.
#[cfg(feature = "tokio-util")]
struct ForeignLink {
    /// Weak: the link must not keep our token alive.
    token: Weak<TokenInner>,
    /// Waits for their token; `None` once the link has ended.
    waiting: StdMutex<Option<Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>>>,
}

#[cfg(feature = "tokio-util")]
impl ForeignLink {
    /// Polls the wait for their token; cancels ours once it is over.
    ///
    /// Polling under the lock is safe: their future does not wake its own
    /// waker while being polled, so `poll_foreign` is not entered again on
    /// this thread; a wake from another thread waits for the lock and polls
    /// again, so no wake-up is lost.
    fn poll_foreign(self: &StdArc<Self>) {
        let waker = Waker::from(self.clone());
        let finished = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(future) = waiting.as_mut() else {
                return;
            };
            if future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
            {
                return;
            }
            waiting.take()
        };
        // Dropped outside the lock: it releases our handle of their token.
        drop(finished);
        if let Some(ours) = self.token.upgrade() {
            ours.cancel(Cause {
                reason: CancelReason::Manual,
                message: None,
            });
        }
    }
}

#[cfg(feature = "tokio-util")]
impl std::task::Wake for ForeignLink {
    fn wake(self: StdArc<Self>) {
        self.poll_foreign();
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        self.poll_foreign();
    }
}

/// Ends a [`ForeignLink`] when dropped: held by a cancel callback of our
/// token, so it is dropped when our token is cancelled or dropped. Dropping
/// the wait unregisters its waker (the link itself) from their token,
/// which breaks the only cycle the link is part of.
#[cfg(feature = "tokio-util")]
struct ForeignWatch(StdArc<ForeignLink>);

#[cfg(feature = "tokio-util")]
impl Drop for ForeignWatch {
    fn drop(&mut self) {
        let waiting = self
            .0
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(waiting);
    }
}
