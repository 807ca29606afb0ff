//! `CancellationToken`: a cheap, thread-safe cancellation flag with reasons,
//! waiters, callbacks and parent/child trees.
//!
//! This module is the public API; its guards are in `guard.rs` and its
//! futures in `future.rs`; the engine — the node, its listeners and the
//! cancel protocol with its invariants — is in [`node`]; the conversions to
//! and from `tokio_util` tokens are in `tokio_util.rs` (feature
//! `tokio-util`).

mod future;
mod guard;
mod listeners;
mod node;
#[cfg(feature = "tokio-util")]
mod tokio_util;

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::task::{Context, Poll, Waker};

pub use future::{
    RunUntilCancelled, RunUntilCancelledOwned, WaitForCancellation, WaitForCancellationOwned,
};
pub use guard::{CallbackGuard, DropGuard, DropGuardRef};
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

    /// A token linked to every one of `parents`: cancelled as soon as any
    /// of them is, with reason [`CancelReason::Parent`] carrying that
    /// parent's reason (and its message), as a [`child`](Self::child) is.
    /// Cancelling it leaves the parents alone.
    ///
    /// Like a child, it stays registered with each parent only while a
    /// clone of it is alive: dropping the last clone unlinks it from all
    /// of them. A parent already cancelled cancels it at once; with no
    /// parents it is a plain new token.
    ///
    /// ```
    /// use cancelable::{CancellationToken, CancelReason};
    ///
    /// let shutdown = CancellationToken::new();
    /// let request = CancellationToken::new();
    /// let work = CancellationToken::linked([&shutdown, &request]);
    ///
    /// request.cancel_with(CancelReason::Manual, "client went away");
    /// assert!(work.is_cancelled());
    /// assert_eq!(work.reason(), Some(CancelReason::Parent(Box::new(CancelReason::Manual))));
    /// assert_eq!(work.message().as_deref(), Some("client went away"));
    /// assert!(!shutdown.is_cancelled());
    /// ```
    pub fn linked<'a>(parents: impl IntoIterator<Item = &'a CancellationToken>) -> Self {
        let parents: Vec<&Arc<TokenInner>> = parents.into_iter().map(|p| &p.inner).collect();
        CancellationToken {
            inner: TokenInner::new_linked(&parents),
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

    /// [`recorded_cause`](Self::recorded_cause) shared with the token, not
    /// copied: what a scope's [`Cancelled`] keeps (its reason and message
    /// read from it when asked for).
    pub(crate) fn recorded_shared_cause(&self) -> Option<std::sync::Arc<Cause>> {
        self.inner.recorded_shared_cause()
    }

    /// When the cancel that cancelled this token was asked for (the real
    /// clock), once a cause is recorded.
    #[cfg(feature = "registry")]
    pub(crate) fn cancelled_at(&self) -> Option<std::time::Instant> {
        self.inner.recorded_at()
    }

    /// [`recorded_cause`](Self::recorded_cause)`.is_some()`, without
    /// copying the cause.
    pub(crate) fn has_recorded_cause(&self) -> bool {
        self.inner.has_recorded_cause()
    }

    /// `Err(Cancelled)` if the token is cancelled, `Ok(())` otherwise.
    pub fn check(&self) -> Result<(), Cancelled> {
        match self.inner.shared_cause() {
            None => Ok(()),
            Some(cause) => Err(Cancelled::of_cause(cause)),
        }
    }

    /// The error for this token's cancellation as soon as a cancel has
    /// recorded its cause — possibly before the flag reads as cancelled
    /// (while the children are being cancelled).
    pub(crate) fn recorded_cancellation(&self) -> Option<Cancelled> {
        self.recorded_shared_cause().map(Cancelled::of_cause)
    }

    /// The error for the cancellation of a token known to be cancelled:
    /// its recorded cause, or `Manual` if none is recorded. The one way
    /// the crate turns a token into a `Cancelled` (a scope adds its own
    /// details, see `ScopeShared::cancelled_error`).
    pub(crate) fn cancellation(&self) -> Cancelled {
        self.recorded_cancellation()
            .unwrap_or_else(|| Cancelled::new(CancelReason::Manual))
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

    /// The number of live child tokens, linked tokens and scopes registered
    /// with this token.
    ///
    /// **Diagnostics only** (leak checks in tests, metrics): the count is a
    /// snapshot that other threads may change at once, so never base a
    /// decision on it. It returns to zero once every child has been
    /// dropped or the token is cancelled.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let parent = CancellationToken::new();
    /// let child = parent.child();
    /// assert_eq!(parent.child_count(), 1);
    /// drop(child);
    /// assert_eq!(parent.child_count(), 0);
    /// ```
    pub fn child_count(&self) -> usize {
        self.inner.child_count()
    }

    /// A scope's waiter on `self`, its key held by the scope (`None`
    /// until registered): `Ready` once cancelled, otherwise registered (or
    /// kept, its waker swapped for this poll's if it changed) to wake
    /// `cx`'s task at the cancel. What [`cancelled`](Self::cancelled)
    /// does, for a scope without shared state watching its token source
    /// (`scope/lazy.rs`); [`child_count`](Self::child_count) counts it as
    /// a linked scope.
    pub(crate) fn poll_scope_waiter(
        &self,
        key: &mut Option<usize>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        self.inner.poll_waiter(key, cx, true)
    }

    /// Removes the waiter `key` of [`poll_scope_waiter`](Self::poll_scope_waiter).
    pub(crate) fn drop_waiter(&self, key: usize) {
        self.inner.unregister(key);
    }

    /// Links an existing token under `self`, as `child()` does for a new
    /// one; the link lasts until the returned value is dropped. `link`
    /// says which reason the child is cancelled with.
    pub(crate) fn attach(&self, child: &CancellationToken, link: Link) -> Option<ChildLink> {
        self.inner.attach(&child.inner, link)
    }

    /// `true` if this is the only handle to the token and nothing links
    /// to it (no parent lists it as a child): nobody else can cancel it or
    /// wake its owner. Once `true`, it stays so until this handle is
    /// cloned or linked; every cancel made through a handle dropped before
    /// is visible afterwards.
    #[inline]
    pub(crate) fn is_unshared(&self) -> bool {
        let unshared = Arc::strong_count(&self.inner) == 1 && Arc::weak_count(&self.inner) == 0;
        if unshared {
            // The other handles were dropped with a release decrement:
            // see their writes (a cancel) before acting on the count.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        }
        unshared
    }

    /// Resets the token to a fresh, uncancelled one if this is its only
    /// handle (no clone, no child link, no waiter holds it): `false`, and
    /// nothing changed, otherwise. For the scope-state pool.
    pub(crate) fn reset_if_unique(&mut self) -> bool {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.reset();
                true
            }
            None => false,
        }
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

    /// A guard that cancels this token (reason [`CancelReason::Manual`])
    /// when dropped, unless [disarmed](DropGuard::disarm) first: ties a
    /// token's life to a value, so work spawned with a clone stops when
    /// the owner goes away, even by unwinding.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let watcher = token.clone();
    /// {
    ///     let _guard = token.drop_guard();
    /// }
    /// assert!(watcher.is_cancelled());
    /// ```
    pub fn drop_guard(self) -> DropGuard {
        DropGuard { token: Some(self) }
    }

    /// Like [`drop_guard`](Self::drop_guard), but borrows the token.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let guard = token.drop_guard_ref();
    /// guard.disarm();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn drop_guard_ref(&self) -> DropGuardRef<'_> {
        DropGuardRef { token: Some(self) }
    }

    /// Runs `future` until it completes (`Some(output)`) or the token is
    /// cancelled (`None`, and `future` is dropped), as tokio-util's method
    /// of the same name does:
    ///
    /// * a token already cancelled when the returned future is first
    ///   polled gives `None` without polling `future` at all;
    /// * after that, `future` is polled before the token is checked: when
    ///   both are ready at once, the output wins.
    ///
    /// Cancel-safe if `future` is.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// # futures::executor::block_on(async {
    /// let token = CancellationToken::new();
    /// assert_eq!(token.run_until_cancelled(async { 42 }).await, Some(42));
    ///
    /// token.cancel();
    /// let never = token.run_until_cancelled(async { unreachable!("not polled") });
    /// assert_eq!(never.await, None::<()>);
    /// # });
    /// ```
    pub fn run_until_cancelled<F: Future>(&self, future: F) -> RunUntilCancelled<'_, F> {
        RunUntilCancelled {
            future,
            cancelled: self.cancelled(),
            started: false,
        }
    }

    /// Like [`run_until_cancelled`](Self::run_until_cancelled), but owns
    /// the token, so the future is `'static` when `future` is.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    ///
    /// # futures::executor::block_on(async {
    /// let token = CancellationToken::new();
    /// let run = token.clone().run_until_cancelled_owned(std::future::pending::<()>());
    /// token.cancel();
    /// assert_eq!(run.await, None);
    /// # });
    /// ```
    pub fn run_until_cancelled_owned<F: Future>(self, future: F) -> RunUntilCancelledOwned<F> {
        RunUntilCancelledOwned {
            future,
            cancelled: self.cancelled_owned(),
            started: false,
        }
    }
}

/// Identity: two handles are equal when they are clones of one token (a
/// child or a linked token is a different token).
///
/// ```
/// use cancelable::CancellationToken;
///
/// let token = CancellationToken::new();
/// assert_eq!(token, token.clone());
/// assert_ne!(token, token.child());
/// assert_ne!(token, CancellationToken::new());
/// ```
impl PartialEq for CancellationToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for CancellationToken {}

/// Hashes the identity, consistent with [`PartialEq`]: clones hash alike.
/// Cancelling never changes the hash, so tokens are sound keys of a
/// `HashSet` or `HashMap` (clippy's `mutable_key_type` lint, which sees
/// the interior mutability, can be allowed for them).
impl Hash for CancellationToken {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.inner).hash(state);
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
