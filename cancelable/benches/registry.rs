//! The registry's costs: a registered scope beside an unregistered one on
//! every backend, `cancel(id)` beside cancelling through a handle,
//! `snapshot()` of 100,000 live operations while two threads keep
//! registering, and two threads registering and finishing operations. See
//! BENCHMARKS.md for the table.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cancelable::registry::Registry;
use cancelable::{CancelReason, CancelScope, ScopeRun};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

#[path = "common/mod.rs"]
mod common;
use common::{pend_once, per_iteration, Backend};

fn registered_vs_unregistered(c: &mut Criterion) {
    for backend in Backend::ALL {
        let mut group = c.benchmark_group(format!("registry_scope/{}", backend.name()));
        group.bench_function("unregistered scope", |b| {
            per_iteration(b, backend, || async {
                CancelScope::new()
                    .name("op")
                    .run(pend_once())
                    .await
                    .unwrap()
            })
        });
        let registry = Registry::new();
        group.bench_function("registered scope", move |b| {
            let registry = registry.clone();
            per_iteration(b, backend, move || {
                let scope = CancelScope::new().name("op").register_in(&registry);
                async move { scope.run(pend_once()).await.unwrap() }
            })
        });
        group.finish();
    }
}

/// Starts a registered scope that pends forever: polled once, it is live.
fn live_scope(
    registry: &Registry,
) -> (
    u64,
    cancelable::ScopeHandle,
    Pin<Box<ScopeRun<std::future::Pending<()>>>>,
) {
    let scope = CancelScope::new().name("live").register_in(registry);
    let handle = scope.handle();
    let mut run = Box::pin(scope.run(std::future::pending::<()>()));
    let waker = futures::task::noop_waker();
    assert!(run
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    (handle.id(), handle, run)
}

fn cancel_by_id(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry_cancel");
    let registry = Registry::new();
    // 10,000 other live operations around the ones cancelled.
    let _others: Vec<_> = (0..10_000).map(|_| live_scope(&registry)).collect();
    group.bench_function("cancel(id) of a live operation", |b| {
        b.iter_batched(
            || live_scope(&registry),
            |(id, _, run)| {
                let _ = black_box(registry.cancel(id, CancelReason::Manual, "")).unwrap();
                run
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function(
        "ScopeHandle::cancel of a live operation (the cancel itself)",
        |b| {
            b.iter_batched(
                || live_scope(&registry),
                |(_, handle, run)| {
                    black_box(handle.cancel_with(CancelReason::Manual, ""));
                    run
                },
                BatchSize::SmallInput,
            )
        },
    );
    let (id, _handle, _run) = live_scope(&registry);
    let _ = registry.cancel(id, CancelReason::Manual, "").unwrap();
    group.bench_function(
        "cancel(id) of an already cancelled operation (lookup only)",
        |b| b.iter(|| black_box(registry.cancel(black_box(id), CancelReason::Manual, ""))),
    );
    group.finish();
}

/// Registers and finishes one operation with a ready body, polled by hand
/// (no executor in the measurement); `registry` `None` leaves it unregistered.
fn register_and_finish(registry: Option<&Registry>) {
    let scope = CancelScope::new().name("short");
    let scope = match registry {
        Some(registry) => scope.register_in(registry),
        None => scope,
    };
    let mut run = std::pin::pin!(scope.run(std::future::ready(())));
    let waker = futures::task::noop_waker();
    let outcome = run.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(matches!(outcome, Poll::Ready(Ok(()))));
}

/// Two threads each registering and finishing `per_thread` operations:
/// the wall time, and each thread's per-operation latencies (sampled).
fn two_threads(registry: Option<&Registry>, per_thread: u64) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let samples = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(move || {
                    let mut samples = Vec::new();
                    for n in 0..per_thread {
                        if n % 64 == 0 {
                            let at = Instant::now();
                            register_and_finish(registry);
                            samples.push(at.elapsed());
                        } else {
                            register_and_finish(registry);
                        }
                    }
                    samples
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    (start.elapsed(), samples)
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry_two_threads");
    group.sample_size(10);
    let registry = Registry::new();
    group.bench_function("register+finish, per operation per thread", |b| {
        b.iter_custom(|iters| two_threads(Some(&registry), iters).0)
    });
    group.bench_function("unregistered scope, per operation per thread", |b| {
        b.iter_custom(|iters| two_threads(None, iters).0)
    });
    group.finish();
    // The figure: 1,000,000 operations on each of 2 threads.
    for (label, registry) in [("registered", Some(&registry)), ("unregistered", None)] {
        let (wall, _) = two_threads(registry, 1_000_000);
        println!(
            "registry_two_threads/1,000,000 each, {label}: {:.0} ns per operation per thread \
             ({:.0} ns wall per operation of the 2,000,000)",
            wall.as_nanos() as f64 / 1e6,
            wall.as_nanos() as f64 / 2e6
        );
    }
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

fn snapshot_under_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry_snapshot");
    group.sample_size(10);
    let registry = Registry::new();
    let live: Vec<_> = (0..100_000).map(|_| live_scope(&registry)).collect();
    let (_, quiet) = two_threads(Some(&registry), 200_000);
    let stop = AtomicBool::new(false);
    let loaded = std::thread::scope(|s| {
        let registering = s.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.extend(two_threads(Some(&registry), 20_000).1);
            }
            samples
        });
        group.bench_function(
            "snapshot() of 100,000 live operations, 2 threads registering",
            |b| b.iter(|| black_box(registry.snapshot())),
        );
        stop.store(true, Ordering::Relaxed);
        registering.join().unwrap()
    });
    group.finish();
    assert_eq!(registry.live_count(), live.len());
    println!(
        "registry_snapshot/registration p99: {:?} without snapshots, {:?} while snapshots run",
        p99(quiet),
        p99(loaded)
    );
}

criterion_group! {
    name = benches;
    config = common::criterion_config(1500, 20);
    targets = registered_vs_unregistered, cancel_by_id, throughput, snapshot_under_load
}
criterion_main!(benches);
