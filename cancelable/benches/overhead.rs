//! Scope overhead, checkpoint cost and token contention, side by side with
//! what a user would write by hand. See BENCHMARKS.md for the table.
//!
//! Every measurement loops inside one executor run (`iter_custom`), so the
//! figures exclude the cost of entering the executor.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cancelable::{checkpoint, CancelScope, CancellationToken, Cancelled};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "common/mod.rs"]
mod common;
use common::{pend_once, per_iteration, Backend};

const FIVE_SECONDS: Duration = Duration::from_secs(5);

/// About 20 µs of work with three awaits in between.
async fn realistic_body() -> u64 {
    let mut acc = 0u64;
    for _ in 0..3 {
        let until = Instant::now() + Duration::from_micros(6_666);
        let until = until - Duration::from_micros(6_666) + Duration::from_nanos(6_666);
        while Instant::now() < until {
            acc = black_box(acc.wrapping_add(1));
        }
        pend_once().await;
    }
    acc
}

/// The hand-written peer: `tokio::time::timeout` on tokio, a select with an
/// `async-io` timer elsewhere.
async fn peer_timeout<F: Future + Unpin>(backend: Backend, body: F) -> Option<F::Output> {
    if backend.is_tokio() {
        tokio::time::timeout(FIVE_SECONDS, body).await.ok()
    } else {
        match futures::future::select(body, async_io::Timer::after(FIVE_SECONDS)).await {
            futures::future::Either::Left((output, _)) => Some(output),
            futures::future::Either::Right(_) => None,
        }
    }
}

async fn scoped<T>(body: impl Future<Output = T>) -> Result<T, Cancelled> {
    CancelScope::new().timeout(FIVE_SECONDS).run(body).await
}

fn scope_overhead(c: &mut Criterion) {
    for backend in Backend::ALL {
        let mut group = c.benchmark_group(format!("scope_overhead/{}", backend.name()));
        group.bench_function("bare body", |b| per_iteration(b, backend, pend_once));
        group.bench_function("cancelable scope, timeout 5s", |b| {
            per_iteration(b, backend, || async { scoped(pend_once()).await.unwrap() })
        });
        group.bench_function("cancelable scope, no source", |b| {
            per_iteration(b, backend, || async {
                CancelScope::new().run(pend_once()).await.unwrap()
            })
        });
        group.bench_function("hand-written timeout", |b| {
            per_iteration(b, backend, move || async move {
                peer_timeout(backend, Box::pin(pend_once())).await.unwrap()
            })
        });
        group.finish();
    }
}

fn realistic(c: &mut Criterion) {
    for backend in [Backend::TokioCurrentThread, Backend::Smol] {
        let mut group = c.benchmark_group(format!("realistic_body/{}", backend.name()));
        group.bench_function("bare body", |b| per_iteration(b, backend, realistic_body));
        group.bench_function("cancelable scope, timeout 5s", |b| {
            per_iteration(b, backend, || async {
                scoped(realistic_body()).await.unwrap()
            })
        });
        group.finish();
    }
}

fn cancel_point(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel_point");
    let per_call = |make_scope: fn() -> Option<CancelScope>| {
        move |iters: u64| {
            let scope = make_scope();
            futures::executor::block_on(async move {
                let body = async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(checkpoint().await).unwrap();
                    }
                    start.elapsed()
                };
                match scope {
                    Some(scope) => scope.run(body).await.unwrap(),
                    None => body.await,
                }
            })
        }
    };
    group.bench_function("checkpoint, scope without deadline", |b| {
        b.iter_custom(per_call(|| Some(CancelScope::new())))
    });
    group.bench_function("checkpoint, scope with deadline", |b| {
        b.iter_custom(per_call(|| {
            Some(CancelScope::new().timeout(Duration::from_secs(3600)))
        }))
    });
    group.bench_function("checkpoint, outside any scope", |b| {
        b.iter_custom(per_call(|| None))
    });
    group.bench_function("loop baseline: await of a ready future", |b| {
        b.iter_custom(|iters| {
            futures::executor::block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(std::future::ready(Ok::<(), Cancelled>(())).await).unwrap();
                }
                start.elapsed()
            })
        })
    });
    let token = tokio_util::sync::CancellationToken::new();
    group.bench_function("tokio_util CancellationToken::is_cancelled", |b| {
        b.iter(|| black_box(black_box(&token).is_cancelled()))
    });
    let (handle, _registration) = futures::future::AbortHandle::new_pair();
    group.bench_function("futures AbortHandle::is_aborted", |b| {
        b.iter(|| black_box(black_box(&handle).is_aborted()))
    });
    let ours = CancellationToken::new();
    group.bench_function("cancelable CancellationToken::is_cancelled", |b| {
        b.iter(|| black_box(black_box(&ours).is_cancelled()))
    });
    group.finish();
}

/// Measures `op` on this thread while another thread runs it in a loop.
fn contended(iters: u64, op: impl Fn() + Sync) -> Duration {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                op();
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        let elapsed = start.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        elapsed
    })
}

fn token_contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("token");
    let ours = CancellationToken::new();
    let theirs = tokio_util::sync::CancellationToken::new();
    group.bench_function("cancelable is_cancelled, 2 threads", |b| {
        b.iter_custom(|iters| {
            contended(iters, || {
                black_box(black_box(&ours).is_cancelled());
            })
        })
    });
    group.bench_function("tokio_util is_cancelled, 2 threads", |b| {
        b.iter_custom(|iters| {
            contended(iters, || {
                black_box(black_box(&theirs).is_cancelled());
            })
        })
    });
    group.bench_function("cancelable child create+drop", |b| {
        b.iter(|| drop(black_box(ours.child())))
    });
    group.bench_function("tokio_util child_token create+drop", |b| {
        b.iter(|| drop(black_box(theirs.child_token())))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config(1200, 20);
    targets = scope_overhead, realistic, cancel_point, token_contention
}
criterion_main!(benches);
