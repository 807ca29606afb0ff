//! Streams that lose nothing when they are cancelled.
//!
//! [`CancellableStream`] (implemented for every [`Stream`]) binds a stream
//! to a token ([`cancellable`](CancellableStream::cancellable)), to a scope
//! ([`within`](CancellableStream::within)) or to the current scope
//! ([`within_current`](CancellableStream::within_current)). The adapter,
//! [`Cancellable`], ends (yields `None`) once the cancellation shows, and
//! can gather what the stream yields until then
//! ([`collect_until_cancelled`](Cancellable::collect_until_cancelled)).
//!
//! # The guarantee: nothing pulled is lost
//!
//! **Every item pulled from the inner stream reaches either the consumer or
//! the partial result, exactly once** — also when the consumer drives the
//! adapter through `select!` in a loop, where the `next()` future of the
//! losing branch is dropped:
//!
//! * the adapter checks the cancellation *before* it polls the inner
//!   stream, never after: once the inner stream has handed an item over,
//!   that item is returned, even if the cancellation arrived meanwhile;
//! * `next()` futures hold no item: an item exists only in the poll that
//!   returns it;
//! * a [`collect_until_cancelled`](Cancellable::collect_until_cancelled)
//!   future keeps what it gathers *in the adapter*: dropped before it
//!   finishes, it leaves its items there, and the next collect (or the
//!   next `next()`) returns them first;
//! * [`chunks_timeout`](CancellableStream::chunks_timeout) delivers the
//!   partial batch it holds when its stream ends, cancelled or not;
//! * after the cancellation, [`into_inner`](Cancellable::into_inner)
//!   gives the inner stream back, untouched, to resume it later
//!   (use [`into_parts`](Cancellable::into_parts) if a dropped collect may
//!   have left items in the adapter).
//!
//! Items are lost only with the adapter itself, if it is dropped while it
//! holds items a dropped collect left behind, or with a chunker holding a
//! partial batch. The guarantee is checked by property tests over random
//! cancellation points on every backend.
//!
//! # Which scope, which shield
//!
//! `within(&handle)` and `cancellable(&token)` watch what they are given,
//! wherever the adapter is polled, shield or not. `within_current()` binds
//! to the current scope when it is called, as a checkpoint would: inside a
//! [`shield`](crate::shield), the cancellation the shield hides does not
//! end the stream. Outside any scope it is an error, not a silent no-op.
//!
//! ```
//! use cancelable::{CancellableStream, CancellationToken};
//! use futures::StreamExt;
//!
//! # futures::executor::block_on(async {
//! let token = CancellationToken::new();
//! let mut numbers = futures::stream::iter(1..=10).cancellable(&token);
//! assert_eq!(numbers.next().await, Some(1));
//! assert_eq!(numbers.next().await, Some(2));
//! token.cancel();
//! assert_eq!(numbers.next().await, None);
//! assert!(numbers.cancellation().is_some());
//!
//! // Nothing was lost: the rest is still there.
//! let rest: Vec<_> = numbers.into_inner().collect().await;
//! assert_eq!(rest, (3..=10).collect::<Vec<_>>());
//! # });
//! ```
//!
//! The adapter costs an atomic load per item over the bare stream.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::stream::FusedStream;
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::backend::{Backend, Timer};
use crate::context::Progress;
use crate::scope::ScopeHandle;
use crate::token::CancellationToken;
use crate::wait::Watch;
use crate::Cancelled;

/// How many items a collect gathers from an always-ready stream before it
/// yields to the executor once, so that timers and other tasks on its
/// thread run (and can cancel it).
const YIELD_EVERY: u32 = 256;

/// Cancellation for any [`Stream`]; see the [module docs](self).
pub trait CancellableStream: Stream + Sized {
    /// Ends the stream when `token` is cancelled (with the token's reason
    /// and message).
    ///
    /// ```
    /// use cancelable::{CancellableStream, CancellationToken};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let token = CancellationToken::new();
    /// token.cancel();
    /// let mut items = futures::stream::iter([1, 2]).cancellable(&token);
    /// assert_eq!(items.next().await, None);
    /// # });
    /// ```
    fn cancellable(self, token: &CancellationToken) -> Cancellable<Self> {
        Cancellable::new(self, Watch::token(token))
    }

    /// Ends the stream when the scope of `handle` is cancelled (reported
    /// as a checkpoint inside it reports it), wherever the stream is
    /// polled, shield or not.
    ///
    /// ```
    /// use cancelable::{CancellableStream, CancelScope};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let scope = CancelScope::new();
    /// let mut items = futures::stream::iter([1, 2]).within(&scope.handle());
    /// scope.handle().cancel();
    /// assert_eq!(items.next().await, None);
    /// # });
    /// ```
    fn within(self, scope: &ScopeHandle) -> Cancellable<Self> {
        Cancellable::new(self, Watch::scope(scope.shared.clone()))
    }

    /// Ends the stream when the current scope is cancelled.
    ///
    /// Binds to the scope current *now*. Inside a [`shield`](crate::shield)
    /// the cancellation the shield hides does not end the stream, as it
    /// does not fail a checkpoint there.
    ///
    /// # Errors
    ///
    /// Outside any scope there is nothing to watch: [`NotInScope`], which
    /// hands the stream back.
    ///
    /// ```
    /// use cancelable::{CancellableStream, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let outside = futures::stream::iter([1, 2]).within_current();
    /// assert!(outside.is_err());
    ///
    /// CancelScope::new()
    ///     .run(async {
    ///         let items = futures::stream::iter([1, 2]).within_current().unwrap();
    ///         # drop(items);
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    fn within_current(self) -> Result<Cancellable<Self>, NotInScope<Self>> {
        match Watch::current_now() {
            Some(watch) => Ok(Cancellable::new(self, watch)),
            None => Err(NotInScope { stream: self }),
        }
    }

    /// Groups the items in batches of `size`, or fewer when `timeout` has
    /// passed since the first item of the batch arrived, whichever comes
    /// first; when the stream ends — cancelled or not — the partial batch
    /// is delivered, not lost.
    ///
    /// A `size` of 0 counts as 1. On tokio the timeout follows tokio's
    /// clock. Apply it to a [`Cancellable`] to end the batches with the
    /// cancellation.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::{CancellableStream, CancellationToken};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let batches: Vec<Vec<u32>> = futures::stream::iter(1..=5)
    ///     .chunks_timeout(2, Duration::from_secs(1))
    ///     .collect()
    ///     .await;
    /// assert_eq!(batches, [vec![1, 2], vec![3, 4], vec![5]]);
    /// # });
    /// ```
    fn chunks_timeout(self, size: usize, timeout: Duration) -> ChunksTimeout<Self> {
        ChunksTimeout {
            stream: self,
            size: size.max(1),
            timeout,
            batch: Vec::new(),
            timer: None,
            ended: false,
        }
    }
}

impl<S: Stream> CancellableStream for S {}

/// The error of [`within_current`](CancellableStream::within_current)
/// outside any scope; it hands the stream back.
pub struct NotInScope<S> {
    stream: S,
}

impl<S> NotInScope<S> {
    /// The stream that could not be bound.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S> fmt::Debug for NotInScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotInScope").finish_non_exhaustive()
    }
}

impl<S> fmt::Display for NotInScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "`within_current()` was called outside any cancel scope, so nothing could cancel \
             the stream: call it inside `CancelScope::run` or a `#[cancellable]` function, or \
             bind the stream with `.cancellable(&token)` or `.within(&scope_handle)`",
        )
    }
}

impl<S> std::error::Error for NotInScope<S> {}

/// How a [`Cancellable`] ended, if it has.
#[derive(Debug)]
enum End {
    Running,
    Cancelled(Cancelled),
    Complete,
}

/// Progress reports every `every` items.
#[derive(Debug)]
struct Counter {
    every: u64,
    pulled: u64,
    /// The total, if the stream told it exactly when reporting began.
    total: Option<u64>,
}

pin_project! {
    /// A stream that ends when its token or scope is cancelled, and loses
    /// nothing it pulled; see the [module docs](self).
    ///
    /// It yields the inner stream's items and ends (`None`) when the inner
    /// stream ends or when the cancellation shows, whichever comes first;
    /// [`cancellation`](Self::cancellation) tells which.
    #[must_use = "streams do nothing unless polled"]
    #[project = CancellableProj]
    pub struct Cancellable<S: Stream> {
        #[pin]
        stream: S,
        watch: Watch,
        end: End,
        // Items pulled and not handed out yet: gathered by a collect that
        // has not finished (or was dropped).
        held: VecDeque<S::Item>,
        // Items bounded collects counted and did not keep, in all.
        discarded: u64,
        progress: Option<Counter>,
    }
}

impl<S: Stream> Cancellable<S> {
    fn new(stream: S, watch: Watch) -> Self {
        Cancellable {
            stream,
            watch,
            end: End::Running,
            held: VecDeque::new(),
            discarded: 0,
            progress: None,
        }
    }

    /// Reports progress every `every` items pulled (0: never) to the scope
    /// watched, or for a token-bound stream to the scope current where the
    /// stream is polled: message `"N items"`, and the fraction if the
    /// stream's `size_hint` gives its exact length now.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cancelable::{CancellableStream, CancelScope};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// CancelScope::new()
    ///     .on_progress(move |progress| sink.lock().unwrap().push(progress.message.clone()))
    ///     .run(async {
    ///         let items = futures::stream::iter(0..4).within_current().unwrap();
    ///         items.progress_every(2).collect::<Vec<_>>().await
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(*seen.lock().unwrap(), ["2 items", "4 items"]);
    /// # });
    /// ```
    pub fn progress_every(mut self, every: u64) -> Self {
        self.progress = (every > 0).then(|| {
            let pulled = self.progress.as_ref().map_or(0, |counter| counter.pulled);
            let total = match self.stream.size_hint() {
                (lower, Some(upper)) if lower == upper => Some(pulled + lower as u64),
                _ => None,
            };
            Counter {
                every,
                pulled,
                total,
            }
        });
        self
    }

    /// The cancellation that ended the stream, once it has (`None` while it
    /// runs and if the inner stream ended by itself).
    pub fn cancellation(&self) -> Option<&Cancelled> {
        match &self.end {
            End::Cancelled(cancelled) => Some(cancelled),
            End::Running | End::Complete => None,
        }
    }

    /// How many items bounded collects
    /// ([`collect_last_until_cancelled`](Self::collect_last_until_cancelled))
    /// have counted and not kept, over the adapter's life: with the items
    /// delivered and those the adapter holds, it accounts for every item
    /// pulled.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// `true` once the inner stream has ended by itself.
    pub fn is_complete(&self) -> bool {
        matches!(self.end, End::Complete)
    }

    /// The token watched, if the stream is bound to one (inside a shield,
    /// `within_current` binds to nothing).
    pub fn token(&self) -> Option<&CancellationToken> {
        self.watch.watched_token()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream; polling it directly bypasses the adapter (and its
    /// guarantee).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream, to resume it after the cancellation.
    ///
    /// Items a dropped collect left in the adapter (see the
    /// [module docs](self)) are dropped with it: use
    /// [`into_parts`](Self::into_parts) to keep them.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The items the adapter holds (left by a collect that did not finish)
    /// and the inner stream: nothing pulled is lost.
    pub fn into_parts(self) -> (Vec<S::Item>, S) {
        (self.held.into(), self.stream)
    }

    /// Pulls one item from the inner stream, unless the stream has ended or
    /// the cancellation shows; never drops an item it pulled.
    #[inline]
    fn poll_pull(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Self::poll_pull_projected(self.project(), cx)
    }

    /// The end of the stream, as a partial result's `reason` and `complete`.
    fn outcome(&self) -> (Option<Cancelled>, bool) {
        match &self.end {
            End::Cancelled(cancelled) => (Some(cancelled.clone()), false),
            End::Complete => (None, true),
            End::Running => (None, false),
        }
    }
}

impl Counter {
    #[cold]
    fn report(&self, watch: &Watch) {
        let progress = Progress::new(
            self.total
                .filter(|total| *total > 0)
                .map(|total| self.pulled as f64 / total as f64),
            format!("{} items", self.pulled),
        );
        match watch.scope_shared() {
            Some(scope) => scope.report_progress(progress),
            None => {
                crate::report_progress(progress.fraction, progress.message);
            }
        }
    }

    #[inline]
    fn tick(&mut self, watch: &Watch) {
        self.pulled += 1;
        if self.pulled.is_multiple_of(self.every) {
            self.report(watch);
        }
    }
}

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
    /// use cancelable::{CancellableStream, CancellationToken};
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
    /// use cancelable::{CancellableStream, CancellationToken};
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

    /// Pulls into `held` until the stream ends, keeping at most `keep`
    /// items if given (and counting the others as discarded); counts the
    /// items pulled in `taken`.
    fn poll_gather(
        &mut self,
        cx: &mut Context<'_>,
        since_yield: &mut u32,
        taken: &mut u64,
        keep: Option<usize>,
    ) -> Poll<()> {
        loop {
            if *since_yield == YIELD_EVERY {
                *since_yield = 0;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match Pin::new(&mut *self).poll_pull(cx) {
                Poll::Ready(Some(item)) => {
                    *since_yield += 1;
                    *taken += 1;
                    match keep {
                        None => self.held.push_back(item),
                        // Counted, not kept, as asked.
                        Some(0) => self.discarded += 1,
                        Some(keep) => {
                            if self.held.len() >= keep {
                                self.held.pop_front();
                                self.discarded += 1;
                            }
                            self.held.push_back(item);
                        }
                    }
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: Stream> Stream for Cancellable<S> {
    type Item = S::Item;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        if !this.held.is_empty() {
            return Poll::Ready(this.held.pop_front());
        }
        Self::poll_pull_projected(this, cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let held = self.held.len();
        if !matches!(self.end, End::Running) {
            return (held, Some(held));
        }
        // The cancellation can end the stream at any point.
        let (_, upper) = self.stream.size_hint();
        (held, upper.and_then(|upper| upper.checked_add(held)))
    }
}

impl<S: Stream> Cancellable<S> {
    #[inline(always)]
    fn poll_pull_projected(
        this: CancellableProj<'_, S>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<S::Item>> {
        if !matches!(this.end, End::Running) {
            return Poll::Ready(None);
        }
        this.watch.begin_pull();
        // Checked before the inner stream is polled: an item it hands over
        // is always returned. (Bound at construction: no binding to do.)
        if this.watch.is_cancelled() {
            *this.end = End::Cancelled(this.watch.error());
            return Poll::Ready(None);
        }
        let polled = this.stream.poll_next(cx);
        if polled.is_ready() {
            this.watch.end_pull();
        }
        match polled {
            Poll::Ready(Some(item)) => {
                if let Some(counter) = this.progress {
                    counter.tick(this.watch);
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                *this.end = End::Complete;
                Poll::Ready(None)
            }
            Poll::Pending => match this.watch.poll_cancelled(cx) {
                Poll::Ready(cancelled) => {
                    *this.end = End::Cancelled(cancelled);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: Stream> FusedStream for Cancellable<S> {
    fn is_terminated(&self) -> bool {
        !matches!(self.end, End::Running) && self.held.is_empty()
    }
}

impl<S: Stream> fmt::Debug for Cancellable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancellable")
            .field("watch", &self.watch)
            .field("end", &self.end)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
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
    stream: &'a mut Cancellable<S>,
    since_yield: u32,
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
    stream: &'a mut Cancellable<S>,
    keep: usize,
    since_yield: u32,
    /// Items this collect accounts for, from its first poll on.
    taken: Option<u64>,
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

pin_project! {
    /// The stream returned by [`CancellableStream::chunks_timeout`].
    #[must_use = "streams do nothing unless polled"]
    pub struct ChunksTimeout<S: Stream> {
        #[pin]
        stream: S,
        size: usize,
        timeout: Duration,
        batch: Vec<S::Item>,
        // Armed when the first item of a batch arrives.
        timer: Option<(Timer, bool)>,
        ended: bool,
    }
}

impl<S: Stream> ChunksTimeout<S> {
    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The batch gathered so far and the inner stream: nothing pulled is
    /// lost.
    pub fn into_parts(self) -> (Vec<S::Item>, S) {
        (self.batch, self.stream)
    }
}

impl<S: Stream> Stream for ChunksTimeout<S> {
    type Item = Vec<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        loop {
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    if this.batch.is_empty() {
                        arm(this.timer, *this.timeout);
                    }
                    this.batch.push(item);
                    if this.batch.len() >= *this.size {
                        return Poll::Ready(Some(take_batch(this.batch, this.timer)));
                    }
                }
                Poll::Ready(None) => {
                    *this.ended = true;
                    if this.batch.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(take_batch(this.batch, this.timer)));
                }
                Poll::Pending => break,
            }
        }
        if let Some((timer, true)) = this.timer {
            if timer.poll_fired(cx).is_ready() {
                return Poll::Ready(Some(take_batch(this.batch, this.timer)));
            }
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.ended {
            return (0, Some(0));
        }
        let (lower, upper) = self.stream.size_hint();
        let batched = self.batch.len();
        // At least the full batches; timeouts can split the items into
        // more, smaller batches, at most one per item.
        (
            lower.saturating_add(batched).div_ceil(self.size),
            upper.map(|upper| upper.saturating_add(batched)),
        )
    }
}

/// Arms the batch timer `timeout` from now (not at all if that overflows).
fn arm(timer: &mut Option<(Timer, bool)>, timeout: Duration) {
    let backend = Backend::detect();
    let Some(deadline) = backend.now().checked_add(timeout) else {
        return;
    };
    match timer {
        Some((timer, armed)) => {
            timer.reset(deadline);
            *armed = true;
        }
        None => *timer = Some((backend.timer(deadline), true)),
    }
}

fn take_batch<T>(batch: &mut Vec<T>, timer: &mut Option<(Timer, bool)>) -> Vec<T> {
    if let Some((_, armed)) = timer {
        *armed = false;
    }
    std::mem::take(batch)
}

impl<S: Stream> FusedStream for ChunksTimeout<S> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<S: Stream> fmt::Debug for ChunksTimeout<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunksTimeout")
            .field("size", &self.size)
            .field("timeout", &self.timeout)
            .field("batched", &self.batch.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
