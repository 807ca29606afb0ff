//! Task groups, side by side with what a user would write by hand:
//!
//! * **cancel 10,000 pending children**: from the cancel until every child
//!   has exited and the group returned. Ours (`spawn` on tokio
//!   multi-thread, `start_soon` on smol and `block_on`) beside a
//!   `tokio::task::JoinSet` + tokio-util token (tokio multi-thread) and a
//!   `FuturesUnordered` + tokio-util token (smol, `block_on`).
//! * **per-child cost**: starting a child that completes at once and
//!   running it to its end, `start_soon` beside a bare `FuturesUnordered`
//!   push of the same body.
//!
//! `cargo bench -p cancelable --bench group`

use std::future::{pending, Future};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::group::TaskGroup;
use cancelable::Cancelled;
use criterion::{criterion_group, criterion_main, Criterion};
use futures::stream::{FuturesUnordered, StreamExt};

#[path = "common/mod.rs"]
mod common;
use common::{pend_once, Backend};

const CHILDREN: usize = 10_000;

/// Where a measurement runs: a backend of the shared runner, or
/// `futures::executor::block_on`.
#[derive(Clone, Copy)]
enum Runner {
    Backend(Backend),
    BlockOn,
}

impl Runner {
    fn name(self) -> &'static str {
        match self {
            Runner::Backend(backend) => backend.name(),
            Runner::BlockOn => "block_on",
        }
    }

    fn run<F>(self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Runner::Backend(backend) => backend.run(work),
            Runner::BlockOn => futures::executor::block_on(work),
        }
    }
}

/// Ours: a group with `CHILDREN` pending children, cancelled once all
/// pend; the time from the cancel until the group returned.
async fn group_cancel(spawned: bool) -> Duration {
    let cancelled_at = Arc::new(Mutex::new(None));
    let mark = cancelled_at.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let outcome = TaskGroup::new()
        .run(|group| async move {
            for _ in 0..CHILDREN {
                let started = started.clone();
                let child = async move {
                    started.fetch_add(1, Ordering::Relaxed);
                    pending::<()>().await;
                    Ok::<_, Cancelled>(())
                };
                if spawned {
                    group.spawn(child).expect("on tokio");
                } else {
                    group.start_soon(child);
                }
            }
            while started.load(Ordering::Relaxed) < CHILDREN {
                pend_once().await;
            }
            *mark.lock().unwrap() = Some(Instant::now());
            group.cancel();
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        })
        .await;
    black_box(outcome.unwrap_err());
    let cancelled_at = cancelled_at.lock().unwrap().expect("cancelled");
    cancelled_at.elapsed()
}

/// The tokio peer: a `JoinSet` of tasks waiting on a tokio-util token.
async fn join_set_cancel() -> Duration {
    let token = tokio_util::sync::CancellationToken::new();
    let started = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CHILDREN {
        let token = token.clone();
        let started = started.clone();
        set.spawn(async move {
            started.fetch_add(1, Ordering::Relaxed);
            token.cancelled().await;
        });
    }
    while started.load(Ordering::Relaxed) < CHILDREN {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    token.cancel();
    while set.join_next().await.is_some() {}
    start.elapsed()
}

/// The executor-neutral peer: a `FuturesUnordered` of futures waiting on a
/// tokio-util token.
async fn futures_unordered_cancel() -> Duration {
    let token = tokio_util::sync::CancellationToken::new();
    let mut set = FuturesUnordered::new();
    for _ in 0..CHILDREN {
        let token = token.clone();
        set.push(async move { token.cancelled_owned().await });
    }
    // Poll every child once so that all pend.
    assert!(futures::poll!(set.next()).is_pending());
    let start = Instant::now();
    token.cancel();
    while set.next().await.is_some() {}
    start.elapsed()
}

fn cancel_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel 10k pending children");
    let tokio_mt = Runner::Backend(Backend::TokioMultiThread);
    group.bench_function(format!("cancelable spawn/{}", tokio_mt.name()), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| tokio_mt.run(group_cancel(true))).sum())
    });
    group.bench_function(
        format!("tokio JoinSet + tokio-util token/{}", tokio_mt.name()),
        |b| b.iter_custom(|iters| (0..iters).map(|_| tokio_mt.run(join_set_cancel())).sum()),
    );
    for runner in [tokio_mt, Runner::Backend(Backend::Smol), Runner::BlockOn] {
        group.bench_function(format!("cancelable start_soon/{}", runner.name()), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| runner.run(group_cancel(false))).sum())
        });
        group.bench_function(
            format!("FuturesUnordered + tokio-util token/{}", runner.name()),
            |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| runner.run(futures_unordered_cancel()))
                        .sum()
                })
            },
        );
    }
    group.finish();
}

/// Children started and run to their end per measurement.
const BATCH: u64 = 1_000;

fn per_child(c: &mut Criterion) {
    let mut group = c.benchmark_group("per child: start and finish");
    for runner in [
        Runner::BlockOn,
        Runner::Backend(Backend::TokioCurrentThread),
    ] {
        group.bench_function(format!("cancelable start_soon/{}", runner.name()), |b| {
            b.iter_custom(|iters| {
                runner.run(async move {
                    let start = Instant::now();
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(BATCH);
                        left -= batch;
                        TaskGroup::new()
                            .run(|group| async move {
                                for n in 0..batch {
                                    group.start_soon(
                                        async move { Ok::<_, Cancelled>(black_box(n)) },
                                    );
                                }
                                Ok::<_, Cancelled>(())
                            })
                            .await
                            .unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(format!("FuturesUnordered push/{}", runner.name()), |b| {
            b.iter_custom(|iters| {
                runner.run(async move {
                    let start = Instant::now();
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(BATCH);
                        left -= batch;
                        let mut set = FuturesUnordered::new();
                        for n in 0..batch {
                            set.push(async move { Ok::<_, Cancelled>(black_box(n)) });
                        }
                        while let Some(output) = set.next().await {
                            black_box(output.unwrap());
                        }
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(
            format!("FuturesUnordered push, boxed/{}", runner.name()),
            |b| {
                b.iter_custom(|iters| {
                    runner.run(async move {
                        let start = Instant::now();
                        let mut left = iters;
                        while left > 0 {
                            let batch = left.min(BATCH);
                            left -= batch;
                            let mut set = FuturesUnordered::<
                                std::pin::Pin<Box<dyn Future<Output = u64> + Send>>,
                            >::new();
                            for n in 0..batch {
                                set.push(Box::pin(async move { black_box(n) }));
                            }
                            while let Some(output) = set.next().await {
                                black_box(output);
                            }
                        }
                        start.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config(1500, 10);
    targets = cancel_all, per_child
}
criterion_main!(benches);
