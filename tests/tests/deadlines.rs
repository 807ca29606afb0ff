//! Deadlines: a scope's timeout fires when the clock reaches it, never
//! earlier, and never later because of what other scopes do: parked
//! scopes, blocked worker threads, a spent tokio budget or a dropped
//! runtime must not move it.

use std::future::{pending, Future};
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};

use cancelable::{CancelReason, CancelScope, Cancelled};
use cancelable_tests::poll_once_by_hand;
use futures::stream::{FuturesUnordered, StreamExt};

/// The clock scopes follow: tokio's (equal to the system's unless paused).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn assert_timeout<T: std::fmt::Debug>(outcome: &Result<T, Cancelled>) {
    match outcome {
        Err(cancelled) => assert_eq!(cancelled.reason(), &CancelReason::Timeout),
        Ok(value) => panic!("expected a timeout, got Ok({value:?})"),
    }
}

type Branch = Pin<Box<dyn Future<Output = Option<Duration>> + Send>>;

/// Polls `parked` once, then keeps it unpolled (as `select!` over a pinned
/// future does while another branch runs) for 1.5 s, while an unrelated
/// scope with a 200 ms timeout runs beside it, in a branch with a waker of
/// its own. Returns how long the unrelated scope took.
async fn unrelated_scope_beside_parked(
    parked: impl Future<Output = ()> + Send + 'static,
) -> Duration {
    let holder: Branch = Box::pin(async move {
        let mut parked = pin!(parked);
        assert!(futures::poll!(parked.as_mut()).is_pending());
        cancelable_tests::sleep(Duration::from_millis(1500)).await;
        None
    });
    let unrelated: Branch = Box::pin(async {
        let start = Instant::now();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(200))
            .run(pending::<()>())
            .await;
        assert_timeout(&outcome);
        Some(start.elapsed())
    });
    let mut branches: FuturesUnordered<Branch> = [holder, unrelated].into_iter().collect();
    loop {
        match branches.next().await {
            Some(Some(elapsed)) => return elapsed,
            Some(None) => continue,
            None => unreachable!("the unrelated branch returns a duration"),
        }
    }
}

fn with_timeout(millis: u64) -> CancelScope {
    CancelScope::new().timeout(Duration::from_millis(millis))
}

cancelable_tests::on_every_backend! {
    /// A scope that ends before its deadline leaves its entry in the
    /// thread's deadline shard for the next scope to take over: the next
    /// scope's earlier deadline still fires on time, not at the ended
    /// scope's.
    async fn an_earlier_deadline_taking_over_an_ended_scope_s_entry_fires_on_time() {
        with_timeout(3000).run(cancelable_tests::yield_once()).await.unwrap();
        let start = now();
        let outcome = with_timeout(100).run(pending::<()>()).await;
        let took = now() - start;
        assert_timeout(&outcome);
        assert!(took >= Duration::from_millis(100), "fired early: {took:?}");
        assert!(took < Duration::from_millis(2000), "a 100 ms timeout took {took:?}");
    }

    /// The same with a later deadline: the ended scope's deadline passes
    /// without cancelling the scope that took its entry over, whose own
    /// deadline then fires.
    async fn a_later_deadline_taking_over_an_ended_scope_s_entry_is_kept() {
        with_timeout(100).run(cancelable_tests::yield_once()).await.unwrap();
        let outcome = with_timeout(2000)
            .run(async {
                cancelable_tests::sleep(Duration::from_millis(300)).await;
                7
            })
            .await;
        assert_eq!(outcome.unwrap(), 7);
        with_timeout(50).run(cancelable_tests::yield_once()).await.unwrap();
        let start = now();
        let outcome = with_timeout(300).run(pending::<()>()).await;
        let took = now() - start;
        assert_timeout(&outcome);
        assert!(took >= Duration::from_millis(300), "fired early: {took:?}");
    }

    /// Two sibling scopes polled once and then parked: their deadlines
    /// pass while nobody polls them, and another scope's must still fire.
    async fn parked_sibling_scopes_do_not_delay_other_deadlines() {
        let parked = async {
            let first = with_timeout(150).run(pending::<()>());
            let second = with_timeout(160).run(pending::<()>());
            let _ = futures::join!(first, second);
        };
        let elapsed = unrelated_scope_beside_parked(parked).await;
        assert!(elapsed < Duration::from_millis(1000), "a 200 ms timeout took {elapsed:?}");
    }

    /// The same with the parked scopes nested in each other.
    async fn parked_nested_scopes_do_not_delay_other_deadlines() {
        let parked = async {
            let _ = with_timeout(150)
                .run(with_timeout(160).run(pending::<()>()))
                .await;
        };
        let elapsed = unrelated_scope_beside_parked(parked).await;
        assert!(elapsed < Duration::from_millis(1000), "a 200 ms timeout took {elapsed:?}");
    }

    /// A deadline set through the handle before the start was set last: it
    /// wins over the builder's timeout.
    async fn handle_deadline_set_before_start_wins_over_timeout() {
        let scope = with_timeout(100);
        let handle = scope.handle();
        let start = now();
        let deadline = start + Duration::from_millis(400);
        handle.set_deadline(Some(deadline));
        let outcome = scope.run(pending::<()>()).await;
        assert_timeout(&outcome);
        assert_eq!(handle.deadline(), Some(deadline));
        assert!(now() >= deadline, "ended {:?} after the start", now() - start);
    }

    /// A deadline moved later through the handle before the start, then
    /// removed: the scope has no deadline left.
    async fn handle_can_remove_the_timeout_before_start() {
        let scope = with_timeout(50);
        let handle = scope.handle();
        handle.set_deadline(None);
        let outcome = scope
            .run(async {
                cancelable_tests::sleep(Duration::from_millis(150)).await;
                7
            })
            .await;
        assert_eq!(outcome.unwrap(), 7);
    }
}

/// Many scopes with short timeouts on many threads: whenever one ends with
/// `Timeout`, the clock has reached its deadline.
async fn never_early(scopes: usize) {
    let runs = (0..scopes).map(|i| async move {
        let scope = with_timeout(1 + (i % 20) as u64);
        let handle = scope.handle();
        let outcome = scope.run(pending::<()>()).await;
        let ended = now();
        assert_timeout(&outcome);
        let deadline = handle.deadline().expect("a timeout becomes a deadline");
        assert!(
            ended >= deadline,
            "ended {:?} before its deadline",
            deadline - ended
        );
    });
    futures::future::join_all(runs).await;
}

#[test]
fn timeouts_never_fire_early_on_block_on_threads() {
    for _ in 0..3 {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| futures::executor::block_on(never_early(625))))
            .collect();
        for thread in threads {
            thread.join().expect("no scope ended early");
        }
    }
}

#[test]
fn timeouts_never_fire_early_on_smol_threads() {
    for _ in 0..3 {
        let executor = std::sync::Arc::new(smol::Executor::new());
        let (stop, stopped) = smol::channel::unbounded::<()>();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let executor = executor.clone();
                let stopped = stopped.clone();
                std::thread::spawn(move || smol::block_on(executor.run(stopped.recv())))
            })
            .collect();
        let tasks: Vec<_> = (0..8).map(|_| executor.spawn(never_early(625))).collect();
        smol::block_on(futures::future::join_all(tasks));
        drop(stop);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[test]
fn timeouts_never_fire_early_on_async_std() {
    for _ in 0..3 {
        let tasks: Vec<_> = (0..8)
            .map(|_| async_std::task::spawn(never_early(625)))
            .collect();
        async_std::task::block_on(futures::future::join_all(tasks));
    }
}

#[test]
fn timeouts_never_fire_early_on_tokio_multi_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..3 {
        runtime.block_on(async {
            let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(never_early(625))).collect();
            for task in tasks {
                task.await.expect("no scope ended early");
            }
        });
    }
}

/// Lateness of a timeout that should fire `after` from `start`.
fn late(start: Instant, after: Duration) -> Duration {
    Instant::now().saturating_duration_since(start + after)
}

async fn scope_lateness(i: usize) -> Duration {
    let after = Duration::from_millis(400 + (i % 16) as u64);
    let start = Instant::now();
    let outcome = CancelScope::new().timeout(after).run(pending::<()>()).await;
    assert_timeout(&outcome);
    late(start, after)
}

async fn blocker() {
    let _ = with_timeout(10_000)
        .run(with_timeout(10_000).run(async {
            // Let the other tasks start first.
            cancelable_tests::sleep(Duration::from_millis(50)).await;
            std::thread::sleep(Duration::from_secs(2));
        }))
        .await;
}

/// The worst lateness of the scopes may exceed the runtime's own
/// timeouts' in the same program by this much at most.
const LATENESS_MARGIN: Duration = Duration::from_millis(300);

fn check_lateness(scopes: &[Duration], peers: &[Duration]) {
    let worst_scope = scopes.iter().max().copied().unwrap_or_default();
    let worst_peer = peers.iter().max().copied().unwrap_or_default();
    assert!(
        worst_scope <= worst_peer + LATENESS_MARGIN,
        "scopes up to {worst_scope:?} late, the runtime's own timeouts up to {worst_peer:?}"
    );
}

#[test]
fn blocked_worker_does_not_delay_deadlines_on_tokio_multi_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (scopes, peers) = runtime.block_on(async {
        let blocker = tokio::spawn(blocker());
        let scopes: Vec<_> = (0..128).map(|i| tokio::spawn(scope_lateness(i))).collect();
        let peers: Vec<_> = (0..128)
            .map(|i| {
                tokio::spawn(async move {
                    let after = Duration::from_millis(400 + (i % 16) as u64);
                    let start = Instant::now();
                    let _ = tokio::time::timeout(after, pending::<()>()).await;
                    late(start, after)
                })
            })
            .collect();
        let mut scope_late = Vec::new();
        for task in scopes {
            scope_late.push(task.await.unwrap());
        }
        let mut peer_late = Vec::new();
        for task in peers {
            peer_late.push(task.await.unwrap());
        }
        blocker.await.unwrap();
        (scope_late, peer_late)
    });
    check_lateness(&scopes, &peers);
}

#[test]
fn blocked_worker_does_not_delay_deadlines_on_async_std() {
    let (scopes, peers) = async_std::task::block_on(async {
        let blocker = async_std::task::spawn(blocker());
        let scopes: Vec<_> = (0..128)
            .map(|i| async_std::task::spawn(scope_lateness(i)))
            .collect();
        let peers: Vec<_> = (0..128)
            .map(|i| {
                async_std::task::spawn(async move {
                    let after = Duration::from_millis(400 + (i % 16) as u64);
                    let start = Instant::now();
                    let _ = async_std::future::timeout(after, pending::<()>()).await;
                    late(start, after)
                })
            })
            .collect();
        let scope_late = futures::future::join_all(scopes).await;
        let peer_late = futures::future::join_all(peers).await;
        blocker.await;
        (scope_late, peer_late)
    });
    check_lateness(&scopes, &peers);
}

/// Draining a long queued channel spends tokio's cooperative budget while
/// the scope's body runs: the scope must not take that for its timeout.
async fn drain_queued_channel() {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..300u32 {
        sender.send(i).unwrap();
    }
    let outcome = CancelScope::new()
        .timeout(Duration::from_secs(3600))
        .run(async {
            let mut received = 0;
            while received < 300 {
                receiver.recv().await.expect("queued");
                received += 1;
            }
            received
        })
        .await;
    assert_eq!(outcome.unwrap(), 300);
}

/// A scope entered when the task has spent its budget, at every level of
/// budget left.
async fn enter_with_spent_budget() {
    for _ in 0..3 {
        while tokio::task::coop::has_budget_remaining() {
            tokio::task::consume_budget().await;
        }
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(200))
            .run(async {
                cancelable_tests::yield_once().await;
                cancelable_tests::sleep(Duration::from_millis(5)).await;
                "done"
            })
            .await;
        assert_eq!(outcome.unwrap(), "done");
    }
}

#[test]
fn draining_a_queued_channel_keeps_the_timeout_on_tokio_current_thread() {
    cancelable_tests::tokio_current_thread(drain_queued_channel());
}

#[test]
fn draining_a_queued_channel_keeps_the_timeout_on_tokio_multi_thread() {
    cancelable_tests::tokio_multi_thread(drain_queued_channel());
}

#[test]
fn spent_budget_keeps_the_timeout_on_tokio_current_thread() {
    cancelable_tests::tokio_current_thread(enter_with_spent_budget());
}

#[test]
fn spent_budget_keeps_the_timeout_on_tokio_multi_thread() {
    cancelable_tests::tokio_multi_thread(enter_with_spent_budget());
}

type ScopeFuture = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

/// A 100 ms scope polled once on a tokio runtime that is then dropped.
fn scope_outliving_its_runtime() -> (Instant, ScopeFuture) {
    let start = now();
    let mut scope: ScopeFuture = Box::pin(with_timeout(100).run(pending::<()>()));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        assert!(futures::poll!(scope.as_mut()).is_pending());
    });
    drop(first);
    (start, scope)
}

fn assert_ended_at_its_deadline(start: Instant, outcome: Result<(), Cancelled>) {
    assert_timeout(&outcome);
    let elapsed = now() - start;
    assert!(
        elapsed >= Duration::from_millis(100),
        "a 100 ms timeout ended after {elapsed:?}"
    );
}

#[test]
fn dropped_runtime_then_another_tokio_runtime() {
    let (start, scope) = scope_outliving_its_runtime();
    let outcome = cancelable_tests::tokio_current_thread(scope);
    assert_ended_at_its_deadline(start, outcome);
}

#[test]
fn dropped_runtime_then_tokio_multi_thread() {
    let (start, scope) = scope_outliving_its_runtime();
    let outcome = cancelable_tests::tokio_multi_thread(scope);
    assert_ended_at_its_deadline(start, outcome);
}

#[test]
fn dropped_runtime_then_smol() {
    let (start, scope) = scope_outliving_its_runtime();
    let outcome = smol::block_on(scope);
    assert_ended_at_its_deadline(start, outcome);
}

#[test]
fn dropped_runtime_then_block_on() {
    let (start, scope) = scope_outliving_its_runtime();
    let outcome = futures::executor::block_on(scope);
    assert_ended_at_its_deadline(start, outcome);
}

/// A pending body that counts its polls.
async fn pending_counted(polls: &std::sync::atomic::AtomicUsize) {
    std::future::poll_fn(|_| {
        polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::<()>::Pending
    })
    .await
}

cancelable_tests::on_every_backend! {
    /// tokio's `deadline_now_elapses`, on a scope: a deadline already
    /// passed at the first poll ends the scope with `Timeout` at that
    /// poll, after the body was polled once, whatever drives the timers.
    async fn a_deadline_passed_at_the_first_poll_ends_the_scope_at_that_poll() {
        let scopes = [
            CancelScope::new().deadline(now() - Duration::from_millis(50)),
            CancelScope::new().deadline(now()),
            CancelScope::new().timeout(Duration::ZERO),
        ];
        for scope in scopes {
            let polls = std::sync::atomic::AtomicUsize::new(0);
            let mut run = pin!(scope.run(pending_counted(&polls)));
            match poll_once_by_hand(run.as_mut()) {
                std::task::Poll::Ready(outcome) => assert_timeout(&outcome),
                std::task::Poll::Pending => panic!("still pending under a passed deadline"),
            }
            assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 1, "the body is polled first");
        }
        // Poll order: a body ready at once returns its value.
        let mut ready = pin!(CancelScope::new().timeout(Duration::ZERO).run(async { 7 }));
        assert_eq!(poll_once_by_hand(ready.as_mut()).map(Result::unwrap), std::task::Poll::Ready(7));
    }
}

/// tokio's `deadline_now_elapses` (tests/time_timeout.rs) under its paused
/// clock: `timeout_at(Instant::now(), pending())` is `Err(Elapsed)` at its
/// first poll; so is a scope with that deadline.
#[tokio::test(start_paused = true)]
async fn deadline_now_elapses_under_tokios_paused_clock() {
    let peer = tokio::time::timeout_at(tokio::time::Instant::now(), pending::<()>());
    assert!(futures::poll!(pin!(peer)).is_ready());
    let mut scope = pin!(CancelScope::new().deadline(now()).run(pending::<()>()));
    match futures::poll!(scope.as_mut()) {
        std::task::Poll::Ready(outcome) => assert_timeout(&outcome),
        std::task::Poll::Pending => panic!("still pending under a passed deadline"),
    }
}

/// While tokio's clock follows the system's, a tokio shard's deadlines are
/// timed outside tokio's timer wheel (an `async-io` timer wakes its driver
/// task), so a scope's deadline fires on time even on a runtime built
/// without tokio's time driver. Tokio-only by nature.
#[test]
fn scope_deadlines_fire_on_a_tokio_runtime_without_its_time_driver() {
    for runtime in [
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
    ] {
        let outcome = runtime.block_on(async {
            tokio::spawn(async {
                let started = Instant::now();
                let outcome = CancelScope::new()
                    .timeout(Duration::from_millis(50))
                    .run(pending::<()>())
                    .await;
                (outcome, started.elapsed())
            })
            .await
            .unwrap()
        });
        assert_timeout(&outcome.0);
        assert!(
            outcome.1 >= Duration::from_millis(50),
            "fired early: {:?}",
            outcome.1
        );
    }
}

/// A clock paused after a scope's deadline was armed on the system's time:
/// the deadline still fires (tokio's timer takes over once the driver sees
/// the pause), and the scope ends with its timeout. Tokio-only by nature.
#[test]
fn a_clock_paused_after_the_deadline_was_armed_still_ends_the_scope() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let scope = tokio::spawn(
            CancelScope::new()
                .timeout(Duration::from_millis(100))
                .run(pending::<()>()),
        );
        // The scope pends, its deadline armed on the system's time.
        tokio::task::yield_now().await;
        tokio::time::pause();
        scope.await.unwrap()
    });
    assert_timeout(&outcome);
}
