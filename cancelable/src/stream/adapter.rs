//! [`Cancellable`]: the adapter that ends a stream at its cancellation
//! and keeps what a dropped collect gathered.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::stream::FusedStream;
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::context::Progress;
use crate::token::CancellationToken;
use crate::wait::Watch;
use crate::Cancelled;

use super::YIELD_EVERY;

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
    /// nothing it pulled; see the [module docs](crate::stream).
    ///
    /// It yields the inner stream's items and ends (`None`) when the inner
    /// stream ends or when the cancellation shows, whichever comes first;
    /// [`cancellation`](Self::cancellation) tells which.
    #[must_use = "streams do nothing unless polled"]
    #[project = CancellableProj]
    pub struct Cancellable<S: Stream> {
        #[pin]
        pub(super) stream: S,
        pub(super) watch: Watch,
        pub(super) end: End,
        // Items pulled and not handed out yet: gathered by a collect that
        // has not finished (or was dropped).
        pub(super) held: VecDeque<S::Item>,
        // Items bounded collects counted and did not keep, in all.
        pub(super) discarded: u64,
        pub(super) progress: Option<Counter>,
    }
}

impl<S: Stream> Cancellable<S> {
    pub(super) fn new(stream: S, watch: Watch) -> Self {
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
    /// use cancelable::CancelScope;
    /// use cancelable::stream::CancellableStream;
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
    /// [module docs](crate::stream)) are dropped with it: use
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
    pub(super) fn outcome(&self) -> (Option<Cancelled>, bool) {
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
    /// Pulls into `held` until the stream ends, keeping at most `keep`
    /// items if given (and counting the others as discarded); counts the
    /// items pulled in `taken`.
    pub(super) fn poll_gather(
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
