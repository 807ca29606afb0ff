//! Collecting a [`Cancellable`] until its cancellation: [`Partial`],
//! [`PartialTail`] and the futures that build them.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::Cancelled;

use super::Cancellable;

impl<S: Stream + Unpin> Cancellable<S> {
    /// Gathers the stream's items until it ends or is cancelled:
    /// [`Partial`] with the items, the cancellation if any, and whether the
    /// stream completed. The inner stream stays in the adapter: take it
    /// back with [`into_inner`](Self::into_inner) to resume it.
    ///
    /// If this future is dropped before it finishes, the items it gathered
    /// stay in the adapter and come first out of the next collect or
    /// `next()`. For a stream that is always ready, it yields to the
    /// executor every 256 items, so timers on its thread can cancel it.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    /// use cancelable::stream::CancellableStream;
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let token = CancellationToken::new();
    /// let stop = token.clone();
    /// // Cancels when the third item is produced.
    /// let produced = futures::stream::iter(1..=10).inspect(move |n| {
    ///     if *n == 3 {
    ///         stop.cancel();
    ///     }
    /// });
    /// let mut numbers = produced.cancellable(&token);
    /// let partial = numbers.collect_until_cancelled().await;
    /// // The third item was pulled before the cancellation showed: kept.
    /// assert_eq!(partial.items, [1, 2, 3]);
    /// assert!(!partial.complete);
    /// assert!(partial.reason.is_some());
    ///
    /// let rest: Vec<_> = numbers.into_inner().collect().await;
    /// assert_eq!(rest, (4..=10).collect::<Vec<_>>());
    /// # });
    /// ```
    pub fn collect_until_cancelled(&mut self) -> CollectUntilCancelled<'_, S> {
        CollectUntilCancelled {
            stream: self,
            since_yield: 0,
        }
    }

    /// Like [`collect_until_cancelled`](Self::collect_until_cancelled), for
    /// streams too long to keep: counts every item and keeps the last
    /// `keep` of them ([`PartialTail`]). The others are counted in
    /// [`discarded`](Self::discarded) as they go, so that a collect dropped
    /// before it finishes loses no count either.
    ///
    /// ```
    /// use cancelable::CancellationToken;
    /// use cancelable::stream::CancellableStream;
    ///
    /// # futures::executor::block_on(async {
    /// let token = CancellationToken::new();
    /// let mut numbers = futures::stream::iter(1..=1000).cancellable(&token);
    /// let tail = numbers.collect_last_until_cancelled(3).await;
    /// assert_eq!(tail.count, 1000);
    /// assert_eq!(tail.last, [998, 999, 1000]);
    /// assert!(tail.complete);
    /// # });
    /// ```
    pub fn collect_last_until_cancelled(
        &mut self,
        keep: usize,
    ) -> CollectLastUntilCancelled<'_, S> {
        CollectLastUntilCancelled {
            stream: self,
            keep,
            since_yield: 0,
            taken: None,
        }
    }
}

/// What a stream yielded until it was cancelled or ended: the result of
/// [`Cancellable::collect_until_cancelled`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Partial<T> {
    /// Every item pulled, in order.
    pub items: Vec<T>,
    /// The cancellation that ended the stream, if it was cancelled.
    pub reason: Option<Cancelled>,
    /// `true` if the inner stream ended by itself.
    pub complete: bool,
}

/// What a long stream yielded until it was cancelled or ended: the result
/// of [`Cancellable::collect_last_until_cancelled`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PartialTail<T> {
    /// How many items this collect accounted for: those it pulled, and
    /// those an interrupted collect had left in the adapter.
    pub count: u64,
    /// The last items pulled, oldest first, at most as many as asked for.
    pub last: VecDeque<T>,
    /// The cancellation that ended the stream, if it was cancelled.
    pub reason: Option<Cancelled>,
    /// `true` if the inner stream ended by itself.
    pub complete: bool,
}

/// The future returned by [`Cancellable::collect_until_cancelled`].
#[must_use = "futures do nothing unless awaited"]
pub struct CollectUntilCancelled<'a, S: Stream> {
    pub(super) stream: &'a mut Cancellable<S>,
    pub(super) since_yield: u32,
}

impl<S: Stream + Unpin> Future for CollectUntilCancelled<'_, S> {
    type Output = Partial<S::Item>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut taken = 0;
        if this
            .stream
            .poll_gather(cx, &mut this.since_yield, &mut taken, None)
            .is_pending()
        {
            return Poll::Pending;
        }
        let (reason, complete) = this.stream.outcome();
        Poll::Ready(Partial {
            items: std::mem::take(&mut this.stream.held).into(),
            reason,
            complete,
        })
    }
}

impl<S: Stream> fmt::Debug for CollectUntilCancelled<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectUntilCancelled")
            .field("stream", &self.stream)
            .finish()
    }
}

/// The future returned by [`Cancellable::collect_last_until_cancelled`].
#[must_use = "futures do nothing unless awaited"]
pub struct CollectLastUntilCancelled<'a, S: Stream> {
    pub(super) stream: &'a mut Cancellable<S>,
    pub(super) keep: usize,
    pub(super) since_yield: u32,
    /// Items this collect accounts for, from its first poll on.
    pub(super) taken: Option<u64>,
}

impl<S: Stream + Unpin> Future for CollectLastUntilCancelled<'_, S> {
    type Output = PartialTail<S::Item>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let keep = this.keep;
        // Items an interrupted collect left in the adapter count here.
        let held = this.stream.held.len() as u64;
        let taken = this.taken.get_or_insert(held);
        if this
            .stream
            .poll_gather(cx, &mut this.since_yield, taken, Some(keep))
            .is_pending()
        {
            return Poll::Pending;
        }
        let (reason, complete) = this.stream.outcome();
        let mut last = std::mem::take(&mut this.stream.held);
        // Held items beyond `keep` (from an interrupted collect): counted,
        // not kept.
        while last.len() > keep {
            last.pop_front();
            this.stream.discarded += 1;
        }
        Poll::Ready(PartialTail {
            count: *taken,
            last,
            reason,
            complete,
        })
    }
}

impl<S: Stream> fmt::Debug for CollectLastUntilCancelled<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectLastUntilCancelled")
            .field("stream", &self.stream)
            .field("keep", &self.keep)
            .finish()
    }
}
