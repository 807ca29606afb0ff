//! What the bench binaries share: the runtimes every benchmark runs on,
//! the body of the overhead measurements, the per-iteration loop, the
//! thread that cancels from outside, and the criterion settings.
// Each bench binary uses part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion};

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

/// Measures `op().await` per iteration, looping inside one run of
/// `backend`, so that entering the executor is not counted.
pub(crate) fn per_iteration<F, Fut>(b: &mut Bencher<'_>, backend: Backend, op: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future + Send,
{
    b.iter_custom(|iters| {
        let op = op.clone();
        backend.run(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(op().await);
            }
            start.elapsed()
        })
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// A persistent thread that runs cancel jobs after a short pause, so the
/// waiting side is parked by the time the cancel comes.
pub(crate) struct Canceller {
    jobs: mpsc::Sender<Job>,
}

impl Canceller {
    /// A canceller that waits `pause` before each job.
    pub(crate) fn new(pause: Duration) -> Self {
        let (jobs, incoming) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for job in incoming {
                std::thread::sleep(pause);
                job();
            }
        });
        Canceller { jobs }
    }

    /// Cancels through `cancel` soon, recording the instant just before.
    pub(crate) fn schedule(
        &self,
        cancel: impl FnOnce() + Send + 'static,
    ) -> Arc<Mutex<Option<Instant>>> {
        let sent = Arc::new(Mutex::new(None));
        let stamp = sent.clone();
        self.jobs
            .send(Box::new(move || {
                *stamp.lock().unwrap() = Some(Instant::now());
                cancel();
            }))
            .unwrap();
        sent
    }
}

/// The shortened criterion runs every bench uses (0.3 s warm-up), with
/// `measurement_ms` of measurement in `samples` samples.
pub(crate) fn criterion_config(measurement_ms: u64, samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(measurement_ms))
        .sample_size(samples)
}
