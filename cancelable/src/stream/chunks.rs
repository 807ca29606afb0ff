//! [`ChunksTimeout`]: batches of a size or a time, whichever comes first.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::stream::FusedStream;
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::backend::{Backend, Timer};

pin_project! {
    /// The stream returned by [`CancellableStream::chunks_timeout`].
    #[must_use = "streams do nothing unless polled"]
    pub struct ChunksTimeout<S: Stream> {
        #[pin]
        pub(super) stream: S,
        pub(super) size: usize,
        pub(super) timeout: Duration,
        pub(super) batch: Vec<S::Item>,
        // Armed when the first item of a batch arrives.
        pub(super) timer: Option<(Timer, bool)>,
        pub(super) ended: bool,
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
