//! Small waiting helpers of the node.

use std::future::Future;
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::seam::time::{self, Timer};

/// A value set once and awaited by anyone.
pub(crate) struct Oneshot<T> {
    state: Mutex<(Option<T>, Vec<Waker>)>,
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot {
            state: Mutex::new((None, Vec::new())),
        }
    }
}

impl<T: Clone> Oneshot<T> {
    /// Sets the value unless set already.
    pub(crate) fn set(&self, value: T) {
        let mut state = crate::sync::lock(&self.state);
        if state.0.is_none() {
            state.0 = Some(value);
            for waker in state.1.drain(..) {
                waker.wake();
            }
        }
    }

    pub(crate) async fn wait(&self) -> T {
        std::future::poll_fn(|cx| {
            let mut state = crate::sync::lock(&self.state);
            match &state.0 {
                Some(value) => Poll::Ready(value.clone()),
                None => {
                    state.1.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// `future`'s output, or `None` if `limit` passes first (on the process
/// clock, which the testing kit's manual clock drives).
pub(crate) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut timer = Timer::after(limit);
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.poll_fired(cx).map(|()| None)
    })
    .await
}

/// A count of ignored payloads and a warning about them at most once a
/// second (a flood of garbage does not flood the log).
#[derive(Default)]
pub(crate) struct Notices {
    count: std::sync::atomic::AtomicU64,
    /// When the last warning went out, and the count then.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Notices {
    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn warn(&self, node: &str, what: std::fmt::Arguments<'_>) {
        let count = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut last = crate::sync::lock(&self.last);
        let now = time::now();
        let since = match *last {
            Some((at, _)) if now.duration_since(at) < Duration::from_secs(1) => return,
            Some((_, then)) => count - then - 1,
            None => 0,
        };
        *last = Some((now, count));
        drop(last);
        super::log_warn!(
            "cancelable node {:?} {} ({} more since the last warning, {} in all)",
            node,
            what,
            since,
            count
        );
    }
}
