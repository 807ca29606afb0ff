//! Cancellation latency: `cancel()` from another OS thread until the
//! scope's `run` returns (and, for reference, until our token's
//! `cancelled()` returns), p50 and p99, on each runtime, against a
//! tokio-util token awaited in `tokio::select!` (tokio) or
//! `futures::select!` (elsewhere).
//!
//! `cargo bench -p cancelable --bench latency`

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cancelable::{CancelScope, CancellationToken};

#[path = "common/mod.rs"]
mod common;
use common::{Backend, Canceller};

const SAMPLES: usize = 2_000;

type Measure = fn(Backend, Arc<Canceller>) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>>;

/// Takes `SAMPLES` samples. Each round makes a pair: how to cancel, and
/// the future that waits for it; the cancel runs on the other thread, and
/// the sample is the time from just before it until the wait returns.
async fn sample<C, W>(canceller: &Canceller, mut round: impl FnMut() -> (C, W)) -> Vec<Duration>
where
    C: FnOnce() + Send + 'static,
    W: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let (cancel, wait) = round();
        let sent = canceller.schedule(cancel);
        wait.await;
        let returned = Instant::now();
        samples.push(returned - sent.lock().unwrap().expect("stamped before cancel"));
    }
    samples
}

fn ours(
    _: Backend,
    canceller: Arc<Canceller>,
) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>> {
    Box::pin(async move {
        sample(&canceller, || {
            let token = CancellationToken::new();
            let remote = token.clone();
            let wait = async move {
                let outcome = CancelScope::new()
                    .token(&token)
                    .run(std::future::pending::<()>())
                    .await;
                assert!(outcome.is_err());
            };
            (
                move || {
                    let _ = remote.cancel();
                },
                wait,
            )
        })
        .await
    })
}

fn ours_token(
    _: Backend,
    canceller: Arc<Canceller>,
) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>> {
    Box::pin(async move {
        sample(&canceller, || {
            let token = CancellationToken::new();
            let remote = token.clone();
            (
                move || {
                    let _ = remote.cancel();
                },
                async move { token.cancelled().await },
            )
        })
        .await
    })
}

fn peer(
    runtime: Backend,
    canceller: Arc<Canceller>,
) -> Pin<Box<dyn Future<Output = Vec<Duration>> + Send>> {
    Box::pin(async move {
        sample(&canceller, || {
            let token = tokio_util::sync::CancellationToken::new();
            let remote = token.clone();
            let wait = async move {
                match runtime {
                    Backend::TokioMultiThread | Backend::TokioCurrentThread => {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = std::future::pending::<()>() => {}
                        }
                    }
                    Backend::AsyncStd | Backend::Smol => {
                        use futures::FutureExt;
                        let mut cancelled = Box::pin(token.cancelled().fuse());
                        let mut body = Box::pin(std::future::pending::<()>().fuse());
                        futures::select! {
                            _ = cancelled => {}
                            _ = body => {}
                        }
                    }
                }
            };
            (move || remote.cancel(), wait)
        })
        .await
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let canceller = Arc::new(Canceller::new(Duration::from_micros(200)));
    println!("cancel() on another thread → the waiting code returns, {SAMPLES} samples each");
    println!(
        "{:<22} {:>26} {:>26} {:>26} {:>7}",
        "runtime",
        "scope.run p50 / p99",
        "token.cancelled p50 / p99",
        "tokio-util p50 / p99",
        "ratio"
    );
    for runtime in Backend::ALL {
        let measure = |f: Measure| {
            let mut samples = runtime.run(f(runtime, canceller.clone()));
            samples.sort();
            (percentile(&samples, 0.5), percentile(&samples, 0.99))
        };
        let (scope_p50, scope_p99) = measure(ours);
        let (token_p50, token_p99) = measure(ours_token);
        let (peer_p50, peer_p99) = measure(peer);
        println!(
            "{:<22} {:>11.1?} / {:>11.1?} {:>11.1?} / {:>11.1?} {:>11.1?} / {:>11.1?} {:>7.2}",
            runtime.name(),
            scope_p50,
            scope_p99,
            token_p50,
            token_p99,
            peer_p50,
            peer_p99,
            scope_p50.as_secs_f64() / peer_p50.as_secs_f64()
        );
    }
    println!("ratio: scope.run p50 / tokio-util p50");
}
