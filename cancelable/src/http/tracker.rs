//! The handlers a graceful shutdown started, counted until they end —
//! including those that run on in a task of their own after their client
//! left ([`DisconnectMode::Detach`](super::DisconnectMode::Detach) and
//! [`Notify`](super::DisconnectMode::Notify)), which no connection of the
//! server accounts for.
#![cfg_attr(not(feature = "axum"), allow(dead_code))]

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;

/// Counts the handlers of the request scopes of one
/// [`GracefulShutdown`](super::GracefulShutdown)'s layers.
#[derive(Default)]
pub(crate) struct Tracker {
    open: AtomicUsize,
    /// Once the shutdown started, handlers that end are counted by how.
    counting: AtomicBool,
    finished: AtomicUsize,
    cancelled: AtomicUsize,
    /// The shutdown waiting for the last handler.
    idle: AtomicWaker,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the tracker counted since the shutdown started.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) finished: usize,
    pub(crate) cancelled: usize,
    pub(crate) running: usize,
}

impl Tracker {
    /// A handler starts: tracked until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> Tracked {
        self.open.fetch_add(1, Ordering::AcqRel);
        Tracked {
            tracker: self.clone(),
            finished: false,
        }
    }

    /// From now on, handlers that end are counted.
    pub(crate) fn start_counting(&self) {
        self.counting.store(true, Ordering::SeqCst);
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            finished: self.finished.load(Ordering::SeqCst),
            cancelled: self.cancelled.load(Ordering::SeqCst),
            running: self.open.load(Ordering::SeqCst),
        }
    }

    /// Ready once no handler runs (one waiter at a time: the shutdown).
    pub(crate) fn idle(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.open.load(Ordering::SeqCst) == 0 {
                return Poll::Ready(());
            }
            self.idle.register(cx.waker());
            if self.open.load(Ordering::SeqCst) == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// One running handler. Dropped when the handler ended, however: with its
/// own output ([`finish`](Self::finish)), or cancelled, or dropped.
pub(crate) struct Tracked {
    tracker: Arc<Tracker>,
    finished: bool,
}

impl Tracked {
    /// The handler ended; `finished` when its own output is the answer.
    pub(crate) fn finish(mut self, finished: bool) {
        self.finished = finished;
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let tracker = &self.tracker;
        if tracker.counting.load(Ordering::SeqCst) {
            let count = match self.finished {
                true => &tracker.finished,
                false => &tracker.cancelled,
            };
            count.fetch_add(1, Ordering::SeqCst);
        }
        if tracker.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            tracker.idle.wake();
        }
    }
}
