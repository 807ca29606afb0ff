//! `CancellationToken`: a cheap, thread-safe cancellation flag with reasons,
//! waiters, callbacks and parent/child trees.
//!
//! This module is the public API and its guards and futures; the engine —
//! the node, its listeners and the cancel protocol with its invariants — is
//! in [`node`]; the conversions to and from `tokio_util` tokens are in
//! `tokio_util.rs` (feature `tokio-util`).

mod node;
#[cfg(feature = "tokio-util")]
mod tokio_util;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

pub(crate) use node::{Callback, Cause, ChildLink, Link, TokenInner};

use crate::sync::Arc;
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
        CancellationToken {
            inner: self.inner.new_child(),
        }
    }

    /// Cancels the token with reason [`CancelReason::Manual`].
    ///
    /// Returns `true` if this call cancelled it, `false` if it was already
    /// cancelled (the first reason is kept).
    pub fn cancel(&self) -> bool {
        self.inner.cancel(Cause::new(CancelReason::Manual))
    }

    /// Cancels the token with `reason` and a message for logs and errors
    /// (an empty message is recorded as none).
    ///
    /// Returns `true` if this call cancelled it; only the first reason and
    /// message are kept.
    pub fn cancel_with(&self, reason: CancelReason, message: impl Into<String>) -> bool {
        self.inner
            .cancel(Cause::with_message(reason, message.into()))
    }

    pub(crate) fn cancel_cause(&self, cause: Cause) -> bool {
        self.inner.cancel(cause)
    }

    /// `true` once the token is cancelled. One atomic load, no lock.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
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
        CallbackGuard {
            registration: self
                .inner
                .add_callback(callback)
                .map(|key| (self.inner.clone(), key)),
        }
    }

    /// The number of live child tokens and scopes linked to this token.
    ///
    /// Meant for diagnostics and tests: it returns to zero once every child
    /// has been dropped or the token is cancelled.
    pub fn child_count(&self) -> usize {
        self.inner.child_count()
    }

    /// Links an existing token under `self`, as `child()` does for a new
    /// one; the link lasts until the returned value is dropped. `link`
    /// says which reason the child is cancelled with.
    pub(crate) fn attach(&self, child: &CancellationToken, link: Link) -> Option<ChildLink> {
        self.inner.attach(&child.inner, link)
    }

    /// Registers the waker of the scope that owns this token.
    #[inline]
    pub(crate) fn register_owner(&self, waker: &Waker) {
        self.inner.register_owner(waker);
    }

    /// Wakes the scope that owns this token (used when its deadline moves).
    pub(crate) fn wake_owner(&self) {
        self.inner.wake_owner();
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
        this.token.inner.poll_waiter(&mut this.key, cx)
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
        this.token.inner.poll_waiter(&mut this.key, cx)
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
