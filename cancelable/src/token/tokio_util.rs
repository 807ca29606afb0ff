//! Conversions to and from `tokio_util` tokens (feature `tokio-util`).
//!
//! To: each token keeps at most one `tokio_util` token, its *root*, made by
//! the first conversion and cancelled by one cancel callback; a conversion
//! is a child of the root. tokio-util detaches a child from its parent when
//! the child's last handle is dropped, so conversions that come and go leave
//! nothing behind, and cancelling one leaves the root and the others alone.
//!
//! From: tokio-util offers no callback, only futures. The new token keeps
//! `cancelled_owned()` of theirs in a `ForeignLink`, polled with a waker made
//! from the link itself: tokio-util wakes it when theirs is cancelled (after
//! releasing its locks, as tokio does with every waker), and waking it polls
//! the future again and, once it is ready, cancels our token. No task and no
//! thread is involved, and any executor (or none) works. The link lives as
//! long as an `on_cancel` callback of our token: when our token is cancelled
//! or dropped, the callback drops the future, which unregisters its waker
//! from their token and releases our handle of it.
//!
//! Deadlock safety: locks are taken in one order only. Our token's lock,
//! then tokio-util's (a root is made, cloned and, for a cancelled token,
//! cancelled under ours: nobody can wait on it yet, so nothing runs). The
//! link's lock, then tokio-util's (their future is polled and dropped under
//! it). No lock of ours is ever taken under theirs: tokio-util wakes and
//! drops wakers only after releasing its locks, and our callbacks, which
//! drop the link's future, run with no lock of ours held.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::task::{Context, Waker};

use super::node::{Cause, Listener, TokenInner};
use super::CancellationToken;
use crate::sync::{lock, Arc, Weak};
use crate::CancelReason;

impl TokenInner {
    /// The `tokio_util` token that conversions of this token are children
    /// of, made (and linked by one cancel callback) on first use.
    fn tokio_util_root(&self) -> ::tokio_util::sync::CancellationToken {
        let mut state = lock(&self.state);
        if let Some(root) = &state.tokio_util {
            return root.clone();
        }
        let root = ::tokio_util::sync::CancellationToken::new();
        if self.is_cancelled() {
            // Cancelled before anyone can see it, so that every conversion
            // of a cancelled token is cancelled; nobody waits on a token
            // this new, so cancelling it under our lock runs nothing.
            root.cancel();
        } else {
            // Also right while a cancel is in progress: it collects the
            // listeners registered meanwhile when it publishes the flag
            // (invariant 3 of the engine, `node.rs`).
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

#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
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
    pub fn to_tokio_util(&self) -> ::tokio_util::sync::CancellationToken {
        self.inner.tokio_util_root().child_token()
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
impl From<CancellationToken> for ::tokio_util::sync::CancellationToken {
    /// Same as [`CancellationToken::to_tokio_util`].
    fn from(token: CancellationToken) -> Self {
        token.to_tokio_util()
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
impl From<::tokio_util::sync::CancellationToken> for CancellationToken {
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
    fn from(token: ::tokio_util::sync::CancellationToken) -> Self {
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
struct ForeignLink {
    /// Weak: the link must not keep our token alive.
    token: Weak<TokenInner>,
    /// Waits for their token; `None` once the link has ended.
    waiting: StdMutex<Option<Pin<Box<::tokio_util::sync::WaitForCancellationFutureOwned>>>>,
}

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
            let mut waiting = crate::sync::lock(&self.waiting);
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
            ours.cancel(Cause::new(CancelReason::Manual));
        }
    }
}

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
struct ForeignWatch(StdArc<ForeignLink>);

impl Drop for ForeignWatch {
    fn drop(&mut self) {
        let waiting = crate::sync::lock(&self.0.waiting).take();
        drop(waiting);
    }
}
