//! Cancellable streams: they end with their token or scope, and every item
//! pulled from the inner stream reaches the consumer or the partial result
//! exactly once — the property test at the end checks it over random
//! cancellation points on every backend.
//!
//! The property test runs 20,000 cases per backend (100,000 in all) in
//! `cargo test`. For a million, in release mode:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release -p cancelable-tests --test stream exactly_once
//! ```
//!
//! (`PROPTEST_CASES` is the number of cases *per backend*.)

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cancelable::stream::{Cancellable, CancellableStream};
use cancelable::{shield, CancelReason, CancelScope, CancellationToken};
use cancelable_tests::{on_every_backend, sleep};
use futures::channel::mpsc;
use futures::stream::{self, Stream, StreamExt};
use futures::FutureExt;
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(3600);

/// Cancels `token` from another thread after `after`.
fn cancel_later(token: &CancellationToken, after: Duration) -> std::thread::JoinHandle<()> {
    let token = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        token.cancel();
    })
}

on_every_backend! {
    async fn cancellable_ends_when_its_token_is_cancelled_from_another_thread() {
        let token = CancellationToken::new();
        let canceller = cancel_later(&token, Duration::from_millis(10));
        let mut items = stream::pending::<u32>().cancellable(&token);
        assert_eq!(items.next().await, None);
        assert_eq!(items.cancellation().unwrap().reason(), &CancelReason::Manual);
        assert!(!items.is_complete());
        // Ended for good.
        assert_eq!(items.next().await, None);
        canceller.join().unwrap();
    }

    async fn cancellable_of_a_finite_stream_completes() {
        let token = CancellationToken::new();
        let mut items = stream::iter([1, 2]).cancellable(&token);
        assert_eq!(items.next().await, Some(1));
        assert_eq!(items.next().await, Some(2));
        assert_eq!(items.next().await, None);
        assert!(items.is_complete());
        assert!(items.cancellation().is_none());
    }

    async fn within_ends_with_the_scope_and_reports_its_reason() {
        let scope = CancelScope::new().name("feed").timeout(Duration::from_millis(10));
        let mut items = stream::pending::<u32>().within(&scope.handle());
        let outcome = scope
            .run(async {
                let next = items.next().await;
                (next, items.cancellation().cloned())
            })
            .await;
        // The body sees the end of the stream, or is dropped if the timeout
        // landed while it was being polled; the adapter knows either way.
        if let Ok((next, cancellation)) = outcome {
            assert_eq!(next, None);
            let cancelled = cancellation.expect("ended by the scope");
            assert!(cancelled.is_timeout());
            assert_eq!(cancelled.operation_name(), Some("feed"));
        }
    }

    async fn within_current_outside_any_scope_is_an_error_that_hands_the_stream_back() {
        let error = stream::iter([1, 2, 3]).within_current().expect_err("no scope");
        let message = error.to_string();
        assert!(message.contains("outside any cancel scope"), "{message}");
        assert!(message.contains(".cancellable(&token)"), "{message}");
        let back: Vec<u32> = error.into_inner().collect().await;
        assert_eq!(back, [1, 2, 3]);
    }

    async fn within_current_ends_with_the_current_scope() {
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .run(async {
                let mut items = stream::pending::<u32>().within_current().unwrap();
                let next = items.next().await;
                (next, items.cancellation().map(|cancelled| cancelled.is_timeout()))
            })
            .await;
        if let Ok(seen) = outcome {
            assert_eq!(seen, (None, Some(true)));
        }
    }

    async fn within_current_inside_a_shield_is_not_ended_by_the_hidden_cancellation() {
        let collected = Arc::new(Mutex::new(None));
        let sink = collected.clone();
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(shield(async move {
                let slow = stream::iter(1..=3).then(|n| async move {
                    sleep(Duration::from_millis(2)).await;
                    n
                });
                let mut items = Box::pin(slow).within_current().unwrap();
                assert!(items.token().is_none(), "nothing to watch inside a shield");
                let partial = items.collect_until_cancelled().await;
                *sink.lock().unwrap() = Some((partial.items, partial.complete));
            }))
            .await;
        assert_eq!(*collected.lock().unwrap(), Some((vec![1, 2, 3], true)));
        assert!(outcome.is_err(), "the scope ends with its reason after the shield");
    }

    async fn collect_until_cancelled_returns_what_came_and_into_inner_resumes() {
        let token = CancellationToken::new();
        let (sender, receiver) = mpsc::unbounded::<u32>();
        for n in 1..=3 {
            sender.unbounded_send(n).unwrap();
        }
        let canceller = cancel_later(&token, Duration::from_millis(20));
        let mut items = receiver.cancellable(&token);
        let partial = items.collect_until_cancelled().await;
        assert_eq!(partial.items, [1, 2, 3]);
        assert!(!partial.complete);
        assert_eq!(partial.reason.unwrap().reason(), &CancelReason::Manual);
        canceller.join().unwrap();

        // Resume the untouched receiver later, without the token.
        sender.unbounded_send(4).unwrap();
        sender.unbounded_send(5).unwrap();
        drop(sender);
        let rest: Vec<u32> = items.into_inner().collect().await;
        assert_eq!(rest, [4, 5]);
    }

    async fn collect_until_cancelled_of_a_finite_stream_is_complete() {
        let token = CancellationToken::new();
        let partial = stream::iter(0..100).cancellable(&token).collect_until_cancelled().await;
        assert_eq!(partial.items, (0..100).collect::<Vec<_>>());
        assert!(partial.complete);
        assert!(partial.reason.is_none());
    }

    async fn collect_last_until_cancelled_counts_every_item_and_keeps_the_tail() {
        let token = CancellationToken::new();
        let stop = token.clone();
        let produced = stream::iter(1..=50_000u32).inspect(move |n| {
            if *n == 40_000 {
                stop.cancel();
            }
        });
        let mut items = produced.cancellable(&token);
        let tail = items.collect_last_until_cancelled(3).await;
        assert_eq!(tail.count, 40_000);
        assert_eq!(tail.last, [39_998, 39_999, 40_000]);
        assert!(tail.reason.is_some());
        assert!(!tail.complete);
        assert_eq!(items.into_inner().next().await, Some(40_001));
    }

    async fn collect_of_an_always_ready_endless_stream_ends_with_the_scope_timeout() {
        // An endless stream that is always ready: the collect yields to the
        // executor now and then, so the timeout fires even on a
        // single-threaded executor.
        let scope = CancelScope::new().timeout(Duration::from_millis(20));
        let mut numbers = stream::iter(0u64..).within(&scope.handle());
        let outcome = scope
            .run(async { numbers.collect_until_cancelled().await })
            .await;
        let delivered = match outcome {
            Ok(partial) => {
                assert!(partial.reason.unwrap().is_timeout());
                partial.items.len() as u64
            }
            // Dropped while being polled: the items stay in the adapter.
            Err(cancelled) => {
                assert!(cancelled.is_timeout());
                0
            }
        };
        let (held, mut rest) = numbers.into_parts();
        let accounted = delivered + held.len() as u64;
        assert_eq!(rest.next().await, Some(accounted), "nothing lost, nothing twice");
    }

    async fn dropped_collect_leaves_its_items_for_the_next_one() {
        let token = CancellationToken::new();
        let (sender, receiver) = mpsc::unbounded::<u32>();
        let mut items = receiver.cancellable(&token);
        sender.unbounded_send(1).unwrap();
        sender.unbounded_send(2).unwrap();
        {
            // The collect loses a race and is dropped with two items in hand.
            let collect = items.collect_until_cancelled();
            let raced = futures::future::select(collect, Box::pin(sleep(Duration::from_millis(5)))).await;
            assert!(matches!(raced, futures::future::Either::Right(_)));
        }
        sender.unbounded_send(3).unwrap();
        // `next()` hands out the held items first.
        assert_eq!(items.next().await, Some(1));
        token.cancel();
        let partial = items.collect_until_cancelled().await;
        assert_eq!(partial.items, [2]);
        let (held, rest) = items.into_parts();
        assert!(held.is_empty());
        drop(sender);
        assert_eq!(rest.collect::<Vec<_>>().await, [3]);
    }

    async fn select_loop_loses_nothing_when_the_producer_races_the_cancel() {
        // A producer thread sends 200 items, a canceller cancels midway, and
        // the consumer drives the stream through select! against a ticking
        // timer: every item arrives exactly once, here or in what is left.
        let token = CancellationToken::new();
        let (sender, receiver) = mpsc::unbounded::<u32>();
        let producer = std::thread::spawn(move || {
            for n in 0..200 {
                if sender.unbounded_send(n).is_err() {
                    break;
                }
                if n % 16 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
        });
        let canceller = cancel_later(&token, Duration::from_millis(2));
        let mut items = receiver.cancellable(&token);
        let mut received = Vec::new();
        loop {
            futures::select! {
                item = items.next() => match item {
                    Some(n) => received.push(n),
                    None => break,
                },
                _ = sleep(Duration::from_micros(50)).fuse() => {}
            }
        }
        producer.join().unwrap();
        canceller.join().unwrap();
        let (held, rest) = items.into_parts();
        received.extend(held);
        received.extend(rest.collect::<Vec<_>>().await);
        assert_eq!(received, (0..200).collect::<Vec<_>>());
    }

    async fn chunks_timeout_batches_by_size_and_by_time() {
        let (sender, receiver) = mpsc::unbounded::<u32>();
        for n in 1..=3 {
            sender.unbounded_send(n).unwrap();
        }
        let mut batches = receiver.chunks_timeout(2, Duration::from_millis(20));
        let started = Instant::now();
        assert_eq!(batches.next().await, Some(vec![1, 2]));
        // The third waits for the timeout, not for a fourth item.
        assert_eq!(batches.next().await, Some(vec![3]));
        assert!(started.elapsed() >= Duration::from_millis(20));
        sender.unbounded_send(4).unwrap();
        drop(sender);
        // The stream ends: the partial batch comes out at once.
        assert_eq!(batches.next().await, Some(vec![4]));
        assert_eq!(batches.next().await, None);
    }

    async fn chunks_timeout_delivers_the_partial_batch_on_cancellation() {
        let token = CancellationToken::new();
        let (sender, receiver) = mpsc::unbounded::<u32>();
        for n in 1..=3 {
            sender.unbounded_send(n).unwrap();
        }
        let canceller = cancel_later(&token, Duration::from_millis(10));
        let mut batches = receiver.cancellable(&token).chunks_timeout(10, LONG);
        assert_eq!(batches.next().await, Some(vec![1, 2, 3]));
        assert_eq!(batches.next().await, None);
        canceller.join().unwrap();
        let (batch, items) = batches.into_parts();
        assert!(batch.is_empty());
        assert!(items.cancellation().is_some());
        drop(sender);
    }

    async fn progress_every_reports_to_the_scope_watched() {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let scope = CancelScope::new().on_progress(move |progress| {
            sink.lock().unwrap().push((progress.fraction, progress.message.clone()));
        });
        let handle = scope.handle();
        scope
            .run(async {
                let items = stream::iter(0..10).within_current().unwrap().progress_every(4);
                items.collect::<Vec<_>>().await
            })
            .await
            .unwrap();
        assert_eq!(
            *reports.lock().unwrap(),
            [(Some(0.4), "4 items".to_owned()), (Some(0.8), "8 items".to_owned())]
        );
        assert_eq!(handle.context().progress.unwrap().message, "8 items");
    }
}

// The exactly-once property.

/// What the consumer does next.
#[derive(Clone, Debug)]
enum Op {
    /// `next().await` to the end.
    Next,
    /// `next()` polled at most `polls` times, then dropped, as the losing
    /// branch of a `select!`; cancels before poll `cancel_before`.
    Race {
        polls: u8,
        cancel_before: Option<u8>,
    },
    /// `collect_until_cancelled()` polled at most `polls` times.
    Collect { polls: u8 },
    /// `collect_last_until_cancelled(keep)` polled at most `polls` times.
    CollectLast { keep: u8, polls: u8 },
    /// Cancels between two operations.
    Cancel,
}

/// What the adapter is bound to.
#[derive(Clone, Copy, Debug)]
enum Bind {
    Token,
    Handle,
    /// `within_current()` inside a running scope, which may drop its body.
    Current,
}

#[derive(Clone, Debug)]
struct Case {
    items: u32,
    /// The source pends (waking itself) on the polls marked `true`, cycling.
    pending: Vec<bool>,
    /// The source cancels while handing over this item.
    cancel_at_item: Option<u32>,
    /// The source cancels while returning its n-th `Pending`.
    cancel_at_pending: Option<u32>,
    bind: Bind,
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Next),
        4 => (0u8..6, proptest::option::of(0u8..6))
            .prop_map(|(polls, cancel_before)| Op::Race { polls, cancel_before }),
        2 => (0u8..8).prop_map(|polls| Op::Collect { polls }),
        1 => (0u8..4, 0u8..8).prop_map(|(keep, polls)| Op::CollectLast { keep, polls }),
        1 => Just(Op::Cancel),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u32..20,
        proptest::collection::vec(proptest::bool::weighted(0.3), 1..6),
        proptest::option::weighted(0.4, 0u32..20),
        proptest::option::weighted(0.3, 0u32..6),
        prop_oneof![Just(Bind::Token), Just(Bind::Handle), Just(Bind::Current)],
        proptest::collection::vec(op(), 0..10),
    )
        .prop_map(
            |(items, pending, cancel_at_item, cancel_at_pending, bind, ops)| Case {
                items,
                pending,
                cancel_at_item,
                cancel_at_pending,
                bind,
                ops,
            },
        )
}

/// Yields `0..len`, pending (and waking itself) as scheduled but never
/// twice in a row, cancelling
/// `token` at the scheduled points.
struct Source {
    next: u32,
    len: u32,
    pending: Vec<bool>,
    step: usize,
    pended: bool,
    pendings: u32,
    cancel_at_item: Option<u32>,
    cancel_at_pending: Option<u32>,
    token: CancellationToken,
}

impl Stream for Source {
    type Item = u32;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
        // Never twice in a row, so that the source always gets on.
        let pend = self.pending[self.step % self.pending.len()] && !self.pended;
        self.step += 1;
        self.pended = pend;
        if pend {
            if self.cancel_at_pending == Some(self.pendings) {
                self.token.cancel();
            }
            self.pendings += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.next == self.len {
            return Poll::Ready(None);
        }
        let item = self.next;
        self.next += 1;
        if self.cancel_at_item == Some(item) {
            // Cancelled while the item is handed over: it must still arrive.
            self.token.cancel();
        }
        Poll::Ready(Some(item))
    }
}

/// Checks, as they arrive, that items come in order, each at most once;
/// with the count of discarded items at the end, exactly once.
#[derive(Default)]
struct Ledger {
    delivered: u32,
    last: Option<u32>,
    error: Option<String>,
}

impl Ledger {
    fn item(&mut self, item: u32) {
        if self.error.is_none() && self.last.is_some_and(|last| item <= last) {
            self.error = Some(format!("got {item} after {:?}", self.last));
        }
        self.last = Some(item);
        self.delivered += 1;
    }

    /// A bounded collect: `count` items accounted for, the last ones kept.
    fn tail(&mut self, count: u64, last: &VecDeque<u32>) {
        if self.error.is_none() && (last.len() as u64) > count {
            self.error = Some(format!("kept {} of {count}", last.len()));
        }
        for &item in last {
            self.item(item);
        }
    }
}

/// Polls `future` at most `polls` times; `None` if it was not ready by then
/// (it is dropped).
async fn poll_at_most<F: Future + Unpin>(mut future: F, polls: u8) -> Option<F::Output> {
    let mut done = 0;
    std::future::poll_fn(|cx| {
        if done == polls {
            return Poll::Ready(None);
        }
        done += 1;
        future.poll_unpin(cx).map(Some)
    })
    .await
}

/// Runs the consumer's operations on `items`, recording in `ledger`.
async fn consume(
    items: &mut Cancellable<Source>,
    ops: &[Op],
    token: &CancellationToken,
    ledger: &mut Ledger,
) {
    for op in ops {
        match *op {
            Op::Next => {
                if let Some(item) = items.next().await {
                    ledger.item(item);
                }
            }
            Op::Race {
                polls,
                cancel_before,
            } => {
                let mut next = items.next();
                let mut done = 0;
                let raced = std::future::poll_fn(|cx| {
                    if done == polls {
                        return Poll::Ready(None);
                    }
                    if cancel_before == Some(done) {
                        token.cancel();
                    }
                    done += 1;
                    next.poll_unpin(cx).map(Some)
                })
                .await;
                if let Some(Some(item)) = raced {
                    ledger.item(item);
                }
            }
            Op::Collect { polls } => {
                if let Some(partial) = poll_at_most(items.collect_until_cancelled(), polls).await {
                    for item in partial.items {
                        ledger.item(item);
                    }
                }
            }
            Op::CollectLast { keep, polls } => {
                let collect = items.collect_last_until_cancelled(keep.into());
                if let Some(tail) = poll_at_most(collect, polls).await {
                    ledger.tail(tail.count, &tail.last);
                }
            }
            Op::Cancel => {
                token.cancel();
            }
        }
    }
}

/// Runs one case; `Err` says what went wrong.
async fn run_case(case: Case) -> Result<(), String> {
    let scope = CancelScope::new();
    let handle = scope.handle();
    let token = match case.bind {
        Bind::Token => CancellationToken::new(),
        Bind::Handle | Bind::Current => handle.cancel_token(),
    };
    let source = Source {
        next: 0,
        len: case.items,
        pending: case.pending.clone(),
        step: 0,
        pended: false,
        pendings: 0,
        cancel_at_item: case.cancel_at_item,
        cancel_at_pending: case.cancel_at_pending,
        token: token.clone(),
    };
    let mut ledger = Ledger::default();
    let items = match case.bind {
        Bind::Token => {
            let mut items = source.cancellable(&token);
            consume(&mut items, &case.ops, &token, &mut ledger).await;
            items
        }
        Bind::Handle => {
            let mut items = source.within(&handle);
            consume(&mut items, &case.ops, &token, &mut ledger).await;
            items
        }
        Bind::Current => {
            // The scope may drop its body at any pend once cancelled: the
            // adapter lives outside it.
            let mut slot = None;
            let _ = scope
                .run(async {
                    let items = match source.within_current() {
                        Ok(items) => slot.insert(items),
                        Err(_) => return,
                    };
                    consume(items, &case.ops, &token, &mut ledger).await;
                })
                .await;
            slot.ok_or("the body never ran, or found no scope")?
        }
    };
    let discarded = items.discarded();
    let (held, rest) = items.into_parts();
    for item in held {
        ledger.item(item);
    }
    let rest: Vec<u32> = rest.collect().await;
    for item in rest {
        ledger.item(item);
    }
    if let Some(error) = ledger.error {
        return Err(error);
    }
    let accounted = u64::from(ledger.delivered) + discarded;
    if accounted != u64::from(case.items) {
        return Err(format!(
            "{} delivered and {discarded} discarded, {} produced",
            ledger.delivered, case.items
        ));
    }
    Ok(())
}

/// A persistent executor of each backend, to run many cases on.
enum Executor {
    TokioCurrentThread(tokio::runtime::Runtime),
    TokioMultiThread(tokio::runtime::Runtime),
    AsyncStd,
    Smol(smol::LocalExecutor<'static>),
    BlockOn,
}

impl Executor {
    fn run(&self, case: Case) -> Result<(), String> {
        match self {
            Executor::TokioCurrentThread(runtime) => runtime.block_on(run_case(case)),
            Executor::TokioMultiThread(runtime) => runtime
                .block_on(runtime.spawn(run_case(case)))
                .map_err(|error| error.to_string())?,
            Executor::AsyncStd => async_std::task::block_on(async_std::task::spawn(run_case(case))),
            Executor::Smol(executor) => {
                smol::block_on(executor.run(executor.spawn(run_case(case))))
            }
            Executor::BlockOn => futures::executor::block_on(run_case(case)),
        }
    }
}

/// Cases per backend: 20,000 (100,000 in all), or `PROPTEST_CASES`.
fn cases_per_backend() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(20_000)
}

fn exactly_once_on(name: &str, executor: Executor) {
    cancelable_tests::with_watchdog(name, || {
        let config = ProptestConfig {
            cases: cases_per_backend(),
            failure_persistence: None,
            // ChaCha, the default, makes generating a case cost 8 times
            // more than running it in a debug build.
            rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
            ..ProptestConfig::default()
        };
        proptest::test_runner::TestRunner::new(config)
            .run(&case(), |case| {
                executor.run(case).map_err(TestCaseError::fail)
            })
            .unwrap();
    });
}

/// Every item pulled reaches the consumer or a partial result exactly once,
/// over random cancellation points, consumer patterns and bindings.
mod exactly_once {
    use super::*;

    #[test]
    fn tokio_current_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        exactly_once_on(
            "exactly_once::tokio_current_thread",
            Executor::TokioCurrentThread(runtime),
        );
    }

    #[test]
    fn tokio_multi_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        exactly_once_on(
            "exactly_once::tokio_multi_thread",
            Executor::TokioMultiThread(runtime),
        );
    }

    #[test]
    fn async_std() {
        exactly_once_on("exactly_once::async_std", Executor::AsyncStd);
    }

    #[test]
    fn smol() {
        exactly_once_on(
            "exactly_once::smol",
            Executor::Smol(smol::LocalExecutor::new()),
        );
    }

    #[test]
    fn block_on() {
        exactly_once_on("exactly_once::block_on", Executor::BlockOn);
    }
}
