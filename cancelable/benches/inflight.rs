//! Work in flight:
//!
//! 1. what a cancellable stream adapter costs per item over the bare
//!    stream, beside `futures::StreamExt::take_until` (criterion);
//! 2. cancel() on another thread → the side awaiting `run_blocking` (whose
//!    closure never checks) returns, p50 and p99 on each runtime, beside a
//!    tokio-util token in a select with `tokio::task::spawn_blocking`
//!    (tokio) or `blocking::unblock` (elsewhere).
//!
//! `cargo bench -p cancelable --bench inflight` (`-- --quick` for a short
//! run: criterion's quick mode, and fewer latency samples).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cancelable::blocking::run_blocking;
use cancelable::stream::CancellableStream;
use cancelable::{CancelScope, CancellationToken};
use criterion::{BenchmarkId, Criterion, Throughput};
use futures::stream::{self, Stream, StreamExt};

#[path = "common/mod.rs"]
mod common;
use common::{Backend, Canceller};

/// Items per stream run: the adapter's construction is amortised away.
const ITEMS: u64 = 10_000;

/// Polls an always-ready stream to its end, summing its items.
fn drain<S: Stream<Item = u64>>(stream: S) -> u64 {
    let mut stream = std::pin::pin!(stream);
    let mut cx = Context::from_waker(Waker::noop());
    let mut sum = 0u64;
    while let Poll::Ready(Some(item)) = stream.as_mut().poll_next(&mut cx) {
        sum = sum.wrapping_add(black_box(item));
    }
    sum
}

fn items() -> impl Stream<Item = u64> + Unpin {
    stream::iter(0..black_box(ITEMS))
}

fn stream_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream per item");
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function(BenchmarkId::from_parameter("bare stream"), |b| {
        b.iter(|| drain(items()))
    });
    let token = CancellationToken::new();
    group.bench_function(BenchmarkId::from_parameter(".cancellable(&token)"), |b| {
        b.iter(|| drain(items().cancellable(&token)))
    });
    let scope = CancelScope::new();
    let handle = scope.handle();
    group.bench_function(BenchmarkId::from_parameter(".within(&scope)"), |b| {
        b.iter(|| drain(items().within(&handle)))
    });
    group.bench_function(
        BenchmarkId::from_parameter("take_until(our token.cancelled_owned())"),
        |b| b.iter(|| drain(items().take_until(token.clone().cancelled_owned()))),
    );
    let theirs = tokio_util::sync::CancellationToken::new();
    group.bench_function(
        BenchmarkId::from_parameter("take_until(tokio-util cancelled_owned())"),
        |b| b.iter(|| drain(items().take_until(theirs.clone().cancelled_owned()))),
    );
    group.finish();
    drop(scope);
}

/// Takes `samples` samples: each round starts a closure that blocks until
/// released and never checks for cancellation, cancels on the other
/// thread, and times the awaiting side from just before the cancel until
/// it returns; then releases the closure.
async fn sample<W, F>(canceller: &Canceller, samples: usize, mut round: F) -> Vec<Duration>
where
    F: FnMut(mpsc::Receiver<()>) -> (Box<dyn FnOnce() + Send>, W),
    W: Future<Output = ()>,
{
    let mut taken = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (release, released) = mpsc::channel::<()>();
        let (cancel, wait) = round(released);
        let sent = canceller.schedule(cancel);
        wait.await;
        let returned = Instant::now();
        drop(release);
        // The canceller stamps before it cancels: the stamp is there.
        taken.push(returned - sent.lock().unwrap().expect("stamped before cancel"));
    }
    taken
}

type Measure =
    fn(Backend, Arc<Canceller>, usize) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>>;

fn ours(
    _: Backend,
    canceller: Arc<Canceller>,
    samples: usize,
) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>> {
    Box::pin(async move {
        sample(&canceller, samples, |released| {
            let token = CancellationToken::new();
            let remote = token.clone();
            let wait = async move {
                let outcome = CancelScope::new()
                    .token(&token)
                    .run(run_blocking(move |_ctx| {
                        let _ = released.recv();
                    }))
                    .await;
                assert!(outcome.and_then(|ran| ran).is_err());
            };
            (
                Box::new(move || {
                    let _ = remote.cancel();
                }) as Box<dyn FnOnce() + Send>,
                wait,
            )
        })
        .await
    })
}

fn peer(
    runtime: Backend,
    canceller: Arc<Canceller>,
    samples: usize,
) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>> {
    Box::pin(async move {
        sample(&canceller, samples, |released| {
            let token = tokio_util::sync::CancellationToken::new();
            let remote = token.clone();
            let work = move || {
                let _ = released.recv();
            };
            let wait = async move {
                if runtime.is_tokio() {
                    tokio::select! {
                        _ = tokio::task::spawn_blocking(work) => panic!("released before cancelled"),
                        _ = token.cancelled() => {}
                    }
                } else {
                    use futures::FutureExt;
                    let mut cancelled = Box::pin(token.cancelled().fuse());
                    let mut done = blocking::unblock(work).fuse();
                    futures::select! {
                        _ = cancelled => {}
                        _ = done => panic!("released before cancelled"),
                    }
                }
            };
            (
                Box::new(move || remote.cancel()) as Box<dyn FnOnce() + Send>,
                wait,
            )
        })
        .await
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn blocking_latency(samples: usize) {
    let canceller = Arc::new(Canceller::new(Duration::from_micros(300)));
    println!(
        "cancel() on another thread → the side awaiting a blocking closure that never checks returns, {samples} samples each"
    );
    println!(
        "{:<22} {:>28} {:>40} {:>7}",
        "runtime", "run_blocking p50 / p99", "tokio-util + spawn_blocking p50 / p99", "ratio"
    );
    for runtime in Backend::ALL {
        let measure = |f: Measure| {
            let mut taken = runtime.run(f(runtime, canceller.clone(), samples));
            taken.sort();
            (percentile(&taken, 0.5), percentile(&taken, 0.99))
        };
        let (ours_p50, ours_p99) = measure(ours);
        let (peer_p50, peer_p99) = measure(peer);
        println!(
            "{:<22} {:>12.1?} / {:>12.1?} {:>18.1?} / {:>18.1?} {:>7.2}",
            runtime.name(),
            ours_p50,
            ours_p99,
            peer_p50,
            peer_p99,
            ours_p50.as_secs_f64() / peer_p50.as_secs_f64()
        );
    }
    println!("ratio: run_blocking p50 / peer p50 (non-tokio peers use blocking::unblock)");
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(20)
        .configure_from_args();
    stream_cost(&mut criterion);
    criterion.final_summary();
    blocking_latency(if quick { 300 } else { 2_000 });
}
