//! Cancellation-aware waits: `sleep`, `sleep_until`, `cancelled()` and
//! `.or_cancelled()` end with `Err(Cancelled)` as soon as the current scope
//! is cancelled, as a checkpoint would, and not inside a shield.

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use cancelable::{
    cancelled, shield, sleep, sleep_until, CancelReason, CancelScope, CancellationToken, Cancelled,
    OperationStatus, OrCancelled,
};
use cancelable_tests::on_every_backend;
use futures::future::{select, Either};
use futures::FutureExt;

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(3600);

/// Cancels `token` from another thread after `after`.
fn cancel_later(token: &CancellationToken, after: Duration) -> std::thread::JoinHandle<()> {
    let token = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        token.cancel_with(CancelReason::Manual, "from another thread");
    })
}

on_every_backend! {
    async fn sleep_is_cut_short_by_the_scope_timeout() {
        let started = Instant::now();
        let scope = CancelScope::new().timeout(Duration::from_millis(20));
        let handle = scope.handle();
        let outcome = scope
            .try_run(async {
                sleep(LONG).await?;
                Ok::<_, Cancelled>("slept an hour")
            })
            .await;
        let cancelled = outcome.expect_err("the timeout ends the sleep");
        assert!(cancelled.is_timeout(), "{cancelled}");
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(started.elapsed() < GENEROUS);
        assert_eq!(handle.status(), OperationStatus::Cancelled);
    }

    async fn sleep_is_cut_short_by_a_token_cancelled_from_another_thread() {
        let token = CancellationToken::new();
        let canceller = cancel_later(&token, Duration::from_millis(10));
        let started = Instant::now();
        let outcome = CancelScope::new()
            .token(&token)
            .run(async {
                // The body goes on after the failed sleep, and returns it.
                sleep(LONG).await
            })
            .await;
        // The sleep's error, returned by the body (or the scope's own, if
        // the cancel landed while the body was being polled).
        let cancelled = outcome.and_then(|slept| slept).expect_err("cut short");
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("from another thread"));
        assert!(started.elapsed() < GENEROUS);
        canceller.join().unwrap();
    }

    async fn sleep_in_an_inner_scope_is_cut_short_by_the_outer_timeout() {
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .run(async { CancelScope::new().run(sleep(LONG)).await })
            .await;
        let inner = match outcome {
            // The inner body returned the sleep's error.
            Ok(Ok(Err(cancelled))) => cancelled,
            // Or the outer scope ended first with its own reason.
            Err(cancelled) => cancelled,
            other => panic!("the sleep was not cut short: {other:?}"),
        };
        assert!(
            inner.reason().root() == &CancelReason::Timeout,
            "{inner}"
        );
    }

    async fn sleep_returns_ok_once_its_duration_has_passed_in_a_scope() {
        let started = Instant::now();
        let outcome = CancelScope::new()
            .timeout(GENEROUS)
            .run(sleep(Duration::from_millis(15)))
            .await;
        assert!(outcome.unwrap().is_ok());
        assert!(started.elapsed() >= Duration::from_millis(15));
    }

    async fn sleep_until_returns_ok_at_its_deadline() {
        let deadline = Instant::now() + Duration::from_millis(15);
        let outcome = CancelScope::new().run(sleep_until(deadline)).await;
        assert!(outcome.unwrap().is_ok());
        assert!(Instant::now() >= deadline);
    }

    async fn sleep_outside_any_scope_is_a_plain_sleep() {
        let started = Instant::now();
        sleep(Duration::from_millis(10)).await.expect("nothing cancels it");
        assert!(started.elapsed() >= Duration::from_millis(10));
    }

    async fn sleep_in_an_already_cancelled_scope_fails_at_once_even_for_zero() {
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(async {
                let zero = sleep(Duration::ZERO).await;
                let long = sleep(LONG).await;
                (zero, long)
            })
            .await
            .expect("the body is ready at its first poll");
        assert!(outcome.0.is_err());
        assert!(outcome.1.is_err());
    }

    async fn sleep_covered_by_the_scope_deadline_still_ends_when_the_deadline_moves_later() {
        // The scope's 30 ms deadline comes before the sleep's 80 ms end: the
        // sleep relies on it. Moving it to an hour away must not leave the
        // sleep waiting for the hour.
        let scope = CancelScope::new().timeout(Duration::from_millis(30));
        let handle = scope.handle();
        let mover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            handle.set_deadline(Some(Instant::now() + LONG));
        });
        let started = Instant::now();
        let outcome = scope.run(sleep(Duration::from_millis(80))).await;
        mover.join().unwrap();
        assert!(outcome.expect("the deadline was moved away").is_ok());
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn sleep_inside_a_shield_is_not_cut_short_by_the_outer_timeout() {
        let slept = Arc::new(AtomicBool::new(false));
        let flag = slept.clone();
        let started = Instant::now();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .run(async move {
                shield(async {
                    sleep(Duration::from_millis(50))
                        .await
                        .expect("the shield hides the timeout");
                    flag.store(true, Ordering::SeqCst);
                })
                .await;
                pending::<()>().await;
            })
            .await;
        assert!(slept.load(Ordering::SeqCst));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(outcome.unwrap_err().is_timeout());
    }

    async fn sleep_in_a_scope_started_inside_a_shield_is_cut_short_by_that_scope() {
        let outcome = CancelScope::new()
            .timeout(LONG)
            .run(shield(async {
                CancelScope::new()
                    .timeout(Duration::from_millis(10))
                    .try_run(async {
                        sleep(LONG).await?;
                        Ok::<_, Cancelled>(())
                    })
                    .await
            }))
            .await;
        assert!(outcome.unwrap().unwrap_err().is_timeout());
    }

    async fn body_parked_in_sleep_runs_its_shielded_cleanup_when_cancelled() {
        // The pattern users write first: notice the cancellation, then clean
        // up asynchronously. A sibling future of the same task cancels the
        // token, so the cancellation always finds the body parked in its
        // sleep (a cancellation landing from another thread while the body
        // is being polled ends the scope without polling it again: that
        // window is the grace period's to close).
        let token = CancellationToken::new();
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        let work = CancelScope::new().token(&token).try_run(async move {
            loop {
                cancelable::cancel_point!();
                if let Err(cancelled) = sleep(Duration::from_millis(1)).await {
                    shield(async {
                        let _ = sleep(Duration::from_millis(10)).await;
                        flag.store(true, Ordering::SeqCst);
                    })
                    .await;
                    return Err::<(), Cancelled>(cancelled);
                }
            }
        });
        let stop = async {
            cancelable_tests::sleep(Duration::from_millis(15)).await;
            token.cancel();
        };
        let (outcome, ()) = futures::join!(work, stop);
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
        assert!(cleaned.load(Ordering::SeqCst), "the cleanup ran");
    }

    async fn cancelled_resolves_in_select_when_the_scope_is_cancelled() {
        let (_sender, receiver) = futures::channel::oneshot::channel::<u32>();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .run(async move {
                futures::select! {
                    message = receiver.fuse() => Err(message),
                    cancelled = cancelled().fuse() => Ok(cancelled),
                }
            })
            .await;
        let cancelled = outcome
            .expect("the body returned from the select")
            .expect("the cancelled() branch won");
        assert!(cancelled.is_timeout());
    }

    async fn cancelled_pends_outside_any_scope_and_inside_a_shield() {
        let outside = select(
            Box::pin(cancelled()),
            Box::pin(cancelable_tests::sleep(Duration::from_millis(10))),
        )
        .await;
        assert!(matches!(outside, Either::Right(_)), "nothing cancels code outside any scope");

        let slept = Arc::new(AtomicBool::new(false));
        let flag = slept.clone();
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(shield(async move {
                let raced = select(
                    Box::pin(cancelled()),
                    Box::pin(cancelable_tests::sleep(Duration::from_millis(10))),
                )
                .await;
                flag.store(matches!(raced, Either::Right(_)), Ordering::SeqCst);
            }))
            .await;
        assert!(slept.load(Ordering::SeqCst), "the shield hides the cancellation");
        // The shield ran to its end; the scope then ends with its reason.
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
    }

    async fn or_cancelled_passes_the_output_through_when_not_cancelled() {
        let outcome = CancelScope::new()
            .run(async { async { 7 }.or_cancelled().await })
            .await;
        assert_eq!(outcome.unwrap().unwrap(), 7);
        // Outside any scope nothing cancels it.
        assert_eq!(async { 8 }.or_cancelled().await.unwrap(), 8);
    }

    async fn or_cancelled_ends_a_pending_future_when_the_scope_is_cancelled() {
        let token = CancellationToken::new();
        let canceller = cancel_later(&token, Duration::from_millis(10));
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let outcome = CancelScope::new()
            .token(&token)
            .run(async move {
                let never = std::future::poll_fn(move |_| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Poll::<u32>::Pending
                });
                let result = never.or_cancelled().await;
                // The body goes on after the cancellation was seen.
                result
            })
            .await;
        let cancelled = outcome.and_then(|result| result).expect_err("cut short");
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert!(polls.load(Ordering::SeqCst) >= 1);
        canceller.join().unwrap();
    }

    async fn or_cancelled_never_polls_the_future_in_a_cancelled_scope() {
        let polled = Arc::new(AtomicBool::new(false));
        let flag = polled.clone();
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(async move {
                async move {
                    flag.store(true, Ordering::SeqCst);
                }
                .or_cancelled()
                .await
            })
            .await;
        assert!(outcome.unwrap().is_err());
        assert!(!polled.load(Ordering::SeqCst));
    }

    async fn or_cancelled_by_watches_its_token_shield_or_not() {
        let token = CancellationToken::new();
        let canceller = cancel_later(&token, Duration::from_millis(10));
        let outcome = shield(pending::<()>().or_cancelled_by(&token)).await;
        let cancelled = outcome.unwrap_err();
        assert_eq!(cancelled.message(), Some("from another thread"));
        canceller.join().unwrap();
    }

    async fn or_cancelled_inside_a_shield_is_not_ended_by_the_hidden_cancellation() {
        let seen = Arc::new(AtomicUsize::new(0));
        let sink = seen.clone();
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(shield(async move {
                let value = async {
                    cancelable_tests::sleep(Duration::from_millis(5)).await;
                    9
                }
                .or_cancelled()
                .await;
                sink.store(value.expect("the shield hides the cancellation"), Ordering::SeqCst);
            }))
            .await;
        assert_eq!(seen.load(Ordering::SeqCst), 9);
        assert!(outcome.is_err());
    }
}

/// On tokio, sleeps follow tokio's clock: a paused clock advances to them,
/// and a scope's timeout cuts them short at the virtual instant.
#[tokio::test(start_paused = true)]
async fn sleep_follows_tokios_paused_clock() {
    let started = tokio::time::Instant::now();
    sleep(LONG).await.unwrap();
    assert!(started.elapsed() >= LONG);

    let started = tokio::time::Instant::now();
    let outcome = CancelScope::new()
        .timeout(Duration::from_secs(60))
        .run(sleep(LONG))
        .await;
    // The sleep returns the cancellation to the body, which returns it.
    assert!(outcome.and_then(|slept| slept).unwrap_err().is_timeout());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(60) && elapsed < LONG,
        "{elapsed:?}"
    );
}
