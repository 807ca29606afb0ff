//! The token's futures: waiting for the cancellation
//! ([`WaitForCancellation`], [`WaitForCancellationOwned`]) and running a
//! future until it ([`RunUntilCancelled`], [`RunUntilCancelledOwned`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::CancellationToken;

fn drop_waiter(token: &CancellationToken, key: Option<usize>) {
    if let Some(key) = key {
        token.inner.unregister(key);
    }
}

/// Future returned by [`CancellationToken::cancelled`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitForCancellation<'a> {
    pub(super) token: &'a CancellationToken,
    pub(super) key: Option<usize>,
}

impl Future for WaitForCancellation<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.token.inner.poll_waiter(&mut this.key, cx, false)
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
    pub(super) token: CancellationToken,
    pub(super) key: Option<usize>,
}

impl Future for WaitForCancellationOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.token.inner.poll_waiter(&mut this.key, cx, false)
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

pin_project_lite::pin_project! {
    /// Future returned by [`CancellationToken::run_until_cancelled`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct RunUntilCancelled<'a, F> {
        #[pin]
        pub(super) future: F,
        pub(super) cancelled: WaitForCancellation<'a>,
        pub(super) started: bool,
    }
}

impl<F: Future> Future for RunUntilCancelled<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let token = this.cancelled.token;
        poll_until_cancelled(this.future, this.cancelled, token, this.started, cx)
    }
}

impl<F> fmt::Debug for RunUntilCancelled<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunUntilCancelled").finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// Future returned by [`CancellationToken::run_until_cancelled_owned`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct RunUntilCancelledOwned<F> {
        #[pin]
        pub(super) future: F,
        pub(super) cancelled: WaitForCancellationOwned,
        pub(super) started: bool,
    }
}

impl<F: Future> Future for RunUntilCancelledOwned<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let token = this.cancelled.token.clone();
        poll_until_cancelled(this.future, this.cancelled, &token, this.started, cx)
    }
}

impl<F> fmt::Debug for RunUntilCancelledOwned<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunUntilCancelledOwned")
            .finish_non_exhaustive()
    }
}

/// tokio-util's rule: cancelled at the first poll → `None`, `future`
/// never polled; afterwards `future` first, then the token.
fn poll_until_cancelled<F: Future>(
    future: Pin<&mut F>,
    cancelled: &mut (impl Future<Output = ()> + Unpin),
    token: &CancellationToken,
    started: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Option<F::Output>> {
    if !std::mem::replace(started, true) && token.is_cancelled() {
        return Poll::Ready(None);
    }
    if let Poll::Ready(output) = future.poll(cx) {
        return Poll::Ready(Some(output));
    }
    Pin::new(cancelled).poll(cx).map(|()| None)
}
