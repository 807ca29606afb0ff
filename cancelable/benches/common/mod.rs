//! The runtimes every benchmark runs on, shared by the bench binaries.
// Each bench binary uses part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::task::Poll;

/// An executor to run a measurement on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    TokioCurrentThread,
    TokioMultiThread,
    AsyncStd,
    Smol,
}

impl Backend {
    pub(crate) const ALL: [Backend; 4] = [
        Backend::TokioCurrentThread,
        Backend::TokioMultiThread,
        Backend::AsyncStd,
        Backend::Smol,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::TokioCurrentThread => "tokio-current-thread",
            Backend::TokioMultiThread => "tokio-multi-thread",
            Backend::AsyncStd => "async-std",
            Backend::Smol => "smol",
        }
    }

    pub(crate) fn is_tokio(self) -> bool {
        matches!(
            self,
            Backend::TokioCurrentThread | Backend::TokioMultiThread
        )
    }

    /// Runs `work` on a fresh runtime of this kind (as a spawned task where
    /// the executor has tasks) and returns its output.
    pub(crate) fn run<F>(self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Backend::TokioCurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work),
            Backend::TokioMultiThread => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(runtime.spawn(work)).unwrap()
            }
            Backend::AsyncStd => async_std::task::block_on(async_std::task::spawn(work)),
            Backend::Smol => smol::block_on(work),
        }
    }
}

/// Pends exactly once, waking itself first: the body of the overhead
/// measurements.
pub(crate) async fn pend_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
