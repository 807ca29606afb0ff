//! Graceful cancellation: with `CancelScope::grace`, a cancelled scope
//! keeps polling its body so that checkpoints and cancellation-aware waits
//! report the cancellation and the body's cleanup runs, on every backend;
//! the `Cancelled` error says whether the body finished within the grace
//! period or was dropped when it ran out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::{
    cancel_point, cancellable, shield, sleep, CancelReason, CancelScope, CancellationToken,
    Cancelled, GraceOutcome, GracePolicy, GraceStart, GraceValue, OperationStatus,
};
use cancelable_tests::{drop_flag, on_every_backend};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);
/// Longer than any test may take: a wait this long never ends by itself.
const LONG: Duration = Duration::from_secs(3600);

/// Cancels `token` from another thread after `after`.
fn cancel_later(token: &CancellationToken, after: Duration) -> std::thread::JoinHandle<()> {
    let token = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        token.cancel_with(CancelReason::Manual, "from another thread");
    })
}

/// The work of the pattern: checkpoints and cancellation-aware
/// sleeps in a loop, until the scope is cancelled.
async fn work() -> Result<(), Cancelled> {
    loop {
        cancel_point!();
        sleep(Duration::from_millis(1)).await?;
    }
}

/// The pattern: on `Err`, run an async cleanup with a real await
/// under a shield, count it, and return the error.
async fn work_then_clean_up(cleaned: Arc<AtomicUsize>) -> Result<(), Cancelled> {
    if let Err(cancelled) = work().await {
        shield(async {
            cancelable_tests::sleep(Duration::from_millis(2)).await;
            cleaned.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        return Err(cancelled);
    }
    Ok(())
}

#[cancellable(timeout = "10ms", grace = "10s")]
async fn annotated_work_then_clean_up(cleaned: Arc<AtomicUsize>) -> Result<(), Cancelled> {
    work_then_clean_up(cleaned).await
}

on_every_backend! {
    async fn cleanup_after_a_timeout_runs_every_time_with_a_grace() {
        const ROUNDS: usize = 20;
        let cleaned = Arc::new(AtomicUsize::new(0));
        for round in 0..ROUNDS {
            let scope = CancelScope::new()
                .timeout(Duration::from_millis(3))
                .grace(GENEROUS);
            let handle = scope.handle();
            let cancelled = scope
                .try_run(work_then_clean_up(cleaned.clone()))
                .await
                .expect_err("the timeout cancels the loop");
            assert!(cancelled.is_timeout(), "round {round}: {cancelled}");
            assert_eq!(
                cancelled.grace_outcome(),
                GraceOutcome::FinishedWithinGrace,
                "round {round}: {cancelled}"
            );
            assert_eq!(handle.status(), OperationStatus::Cancelled);
            assert_eq!(cleaned.load(Ordering::SeqCst), round + 1, "round {round}");
        }
    }

    async fn cleanup_after_a_cancel_from_another_thread_runs_every_time_with_a_grace() {
        const ROUNDS: usize = 20;
        let cleaned = Arc::new(AtomicUsize::new(0));
        for round in 0..ROUNDS {
            let token = CancellationToken::new();
            // Spread the cancellation over the loop's phases.
            let canceller = cancel_later(&token, Duration::from_micros(200 * round as u64));
            let cancelled = CancelScope::new()
                .token(&token)
                .grace(GENEROUS)
                .try_run(work_then_clean_up(cleaned.clone()))
                .await
                .expect_err("the token cancels the loop");
            canceller.join().unwrap();
            assert_eq!(cancelled.reason(), &CancelReason::Manual, "round {round}");
            assert_eq!(
                cancelled.grace_outcome(),
                GraceOutcome::FinishedWithinGrace,
                "round {round}: {cancelled}"
            );
            assert_eq!(cleaned.load(Ordering::SeqCst), round + 1, "round {round}");
        }
    }

    async fn cleanup_runs_in_an_annotated_function_with_a_grace() {
        let cleaned = Arc::new(AtomicUsize::new(0));
        for round in 0..5 {
            let cancelled = annotated_work_then_clean_up(cleaned.clone())
                .await
                .expect_err("the timeout cancels the loop");
            assert!(cancelled.is_timeout(), "{cancelled}");
            assert_eq!(cancelled.grace_outcome(), GraceOutcome::FinishedWithinGrace);
            assert_eq!(cleaned.load(Ordering::SeqCst), round + 1);
        }
    }

    async fn finished_within_the_grace_says_so() {
        let cancelled = CancelScope::new()
            .name("flush")
            .timeout(Duration::from_millis(5))
            .grace(GENEROUS)
            .try_run(work_then_clean_up(Arc::default()))
            .await
            .unwrap_err();
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::FinishedWithinGrace);
        let text = cancelled.to_string();
        assert!(text.contains("finished within its grace period"), "{text}");
        assert!(text.contains("`flush`"), "{text}");
    }

    async fn a_grace_too_long_for_the_clock_never_ends_rather_than_at_once() {
        // `Duration::MAX` cannot be added to any instant: the grace is then
        // as long as the clock can say (never ending here), not none.
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .grace(Duration::MAX)
            .try_run(async move {
                let seen = cancelable::cancelled().await;
                sleep(Duration::from_millis(20)).await.ok();
                flag.store(true, Ordering::SeqCst);
                Err::<(), _>(seen)
            })
            .await;
        let cancelled = outcome.unwrap_err();
        assert!(cleaned.load(Ordering::SeqCst), "the cleanup was dropped");
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::FinishedWithinGrace, "{cancelled}");
    }

    async fn checkpoints_inside_a_scope_with_a_grace_say_the_grace_runs() {
        let seen = Arc::new(Mutex::new(None));
        let record = seen.clone();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .grace(GENEROUS)
            .try_run(async move {
                let outcome = work().await;
                *record.lock().unwrap() = outcome.as_ref().err().map(Cancelled::grace_outcome);
                outcome
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(*seen.lock().unwrap(), Some(GraceOutcome::InGrace));
    }

    async fn a_body_longer_than_its_grace_is_dropped_and_the_error_says_so() {
        let (guard, dropped) = drop_flag();
        let started = Instant::now();
        let scope = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .grace(Duration::from_millis(50));
        let handle = scope.handle();
        let cancelled = scope
            .try_run(async move {
                let _guard = guard;
                let cancelled = sleep(LONG).await.unwrap_err();
                // A cleanup that takes longer than the grace period.
                shield(cancelable_tests::sleep(LONG)).await;
                Err::<(), _>(cancelled)
            })
            .await
            .unwrap_err();
        assert!(dropped.load(Ordering::SeqCst), "the body was not dropped");
        assert!(cancelled.is_timeout(), "{cancelled}");
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::DroppedAfterGrace);
        assert!(
            cancelled.to_string().contains("dropped when its grace period ran out"),
            "{cancelled}"
        );
        assert_eq!(handle.status(), OperationStatus::Cancelled);
        assert!(started.elapsed() >= Duration::from_millis(60), "{:?}", started.elapsed());
        assert!(started.elapsed() < GENEROUS);
    }

    async fn a_body_pending_on_anything_is_dropped_when_the_grace_runs_out() {
        let (guard, dropped) = drop_flag();
        let cancelled = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .grace(Duration::from_millis(20))
            .run(async move {
                let _guard = guard;
                // Not cancellation-aware: only the end of the grace ends it.
                std::future::pending::<()>().await
            })
            .await
            .unwrap_err();
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::DroppedAfterGrace);
    }

    async fn a_body_that_returns_ok_within_the_grace_returns_its_value() {
        // The documented choice: a body that finished its work during the
        // grace period returns its value, like a trio scope whose body
        // finished; only an `Err` becomes the scope's cancellation.
        let scope = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .grace(GENEROUS);
        let handle = scope.handle();
        let outcome = scope
            .try_run(async {
                let cancelled = sleep(LONG).await.unwrap_err();
                assert_eq!(cancelled.grace_outcome(), GraceOutcome::InGrace);
                shield(cancelable_tests::sleep(Duration::from_millis(2))).await;
                Ok::<_, Cancelled>(42)
            })
            .await;
        assert_eq!(outcome.unwrap(), 42);
        assert_eq!(handle.status(), OperationStatus::Completed);
    }

    async fn a_replace_policy_turns_a_value_returned_within_the_grace_into_the_cancellation() {
        // What the request layer needs: the cleanup runs, yet the answer
        // is the cancellation's.
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        let scope = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .grace(GENEROUS)
            .grace_policy(GracePolicy::new().value(GraceValue::Replace));
        let handle = scope.handle();
        let cancelled = scope
            .try_run(async move {
                let cancelled = sleep(LONG).await.unwrap_err();
                assert_eq!(cancelled.grace_outcome(), GraceOutcome::InGrace);
                shield(cancelable_tests::sleep(Duration::from_millis(2))).await;
                flag.store(true, Ordering::SeqCst);
                Ok::<_, Cancelled>(42)
            })
            .await
            .unwrap_err();
        assert!(cleaned.load(Ordering::SeqCst));
        assert!(cancelled.is_timeout());
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::FinishedWithinGrace);
        assert_eq!(handle.status(), OperationStatus::Cancelled);
    }

    async fn a_from_parent_grace_runs_for_the_parents_cancellation_only() {
        let policy = GracePolicy::new().start(GraceStart::FromParent);
        // The enclosing scope's cancellation: the inner body cleans up.
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        let outer = CancelScope::new().grace(GENEROUS);
        let outer_handle = outer.handle();
        let inner = outer
            .run(async move {
                CancelScope::new()
                    .grace(GENEROUS)
                    .grace_policy(policy)
                    .run(async move {
                        outer_handle.cancel();
                        let _ = sleep(LONG).await.unwrap_err();
                        shield(cancelable_tests::sleep(Duration::from_millis(2))).await;
                        flag.store(true, Ordering::SeqCst);
                    })
                    .await
            })
            .await
            .unwrap();
        assert!(inner.is_ok(), "a value within the grace is kept");
        assert!(cleaned.load(Ordering::SeqCst));
        // Its own cancellation: dropped at its await, as without a grace.
        let (guard, dropped) = drop_flag();
        let scope = CancelScope::new().grace(GENEROUS).grace_policy(policy);
        let handle = scope.handle();
        let started = Instant::now();
        let cancelled = scope
            .run(async move {
                let _guard = guard;
                handle.cancel();
                std::future::pending::<()>().await
            })
            .await
            .unwrap_err();
        assert!(dropped.load(Ordering::SeqCst));
        assert!(started.elapsed() < GENEROUS);
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::NoGrace);
    }

    async fn without_a_grace_the_body_is_dropped_at_its_await() {
        // The default, as `tokio::time::timeout`: no grace, the body is
        // dropped where it waits, and the error says so.
        let (guard, dropped) = drop_flag();
        let cancelled = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .run(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            })
            .await
            .unwrap_err();
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::NoGrace);
        assert!(!cancelled.to_string().contains("grace"), "{cancelled}");
    }

    async fn a_zero_grace_is_no_grace() {
        let (guard, dropped) = drop_flag();
        let cancelled = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .grace(Duration::ZERO)
            .run(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            })
            .await
            .unwrap_err();
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::NoGrace);
    }

    async fn an_inner_grace_is_clipped_to_the_outer_grace() {
        let (guard, inner_dropped) = drop_flag();
        let inner_outcome = Arc::new(Mutex::new(None));
        let record = inner_outcome.clone();
        let token = CancellationToken::new();
        let canceller = cancel_later(&token, Duration::from_millis(10));
        let started = Instant::now();
        let outer = CancelScope::new()
            .token(&token)
            .grace(Duration::from_millis(100))
            .try_run(async move {
                let inner = CancelScope::new()
                    .grace(LONG)
                    .try_run(async move {
                        let _guard = guard;
                        let cancelled = sleep(LONG).await.unwrap_err();
                        // A cleanup longer than the outer grace period.
                        shield(cancelable_tests::sleep(LONG)).await;
                        Err::<(), _>(cancelled)
                    })
                    .await;
                *record.lock().unwrap() = Some(inner.clone());
                // The outer body's own cleanup outlives its grace too.
                shield(cancelable_tests::sleep(LONG)).await;
                inner
            })
            .await;
        canceller.join().unwrap();
        let cancelled = outer.unwrap_err();
        assert_eq!(cancelled.grace_outcome(), GraceOutcome::DroppedAfterGrace);
        assert!(inner_dropped.load(Ordering::SeqCst), "the inner body was not dropped");
        // If the inner scope got to report before the outer one dropped it,
        // it was cut short too.
        if let Some(inner) = inner_outcome.lock().unwrap().take() {
            let inner = inner.unwrap_err();
            assert_eq!(inner.grace_outcome(), GraceOutcome::DroppedAfterGrace, "{inner}");
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < GENEROUS, "{:?}", started.elapsed());
    }

    async fn a_grace_is_clipped_to_the_outer_deadline() {
        let (guard, inner_dropped) = drop_flag();
        let inner_outcome = Arc::new(Mutex::new(None));
        let record = inner_outcome.clone();
        let started = Instant::now();
        let outer = CancelScope::new()
            .timeout(Duration::from_millis(100))
            .try_run(async move {
                let inner = CancelScope::new().grace(LONG);
                inner.handle().cancel();
                let inner = inner
                    .try_run(async move {
                        let _guard = guard;
                        let cancelled = sleep(LONG).await.unwrap_err();
                        // The shield holds the outer scope open past its
                        // deadline too: only the clipped grace ends it.
                        shield(cancelable_tests::sleep(LONG)).await;
                        Err::<(), _>(cancelled)
                    })
                    .await;
                *record.lock().unwrap() = Some(inner.clone());
                inner
            })
            .await;
        assert!(outer.is_err());
        assert!(inner_dropped.load(Ordering::SeqCst), "the inner body was not dropped");
        let inner = inner_outcome
            .lock()
            .unwrap()
            .take()
            .expect("the inner scope ended")
            .unwrap_err();
        assert_eq!(inner.reason(), &CancelReason::Manual);
        assert_eq!(inner.grace_outcome(), GraceOutcome::DroppedAfterGrace, "{inner}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < GENEROUS, "{:?}", started.elapsed());
    }

    async fn an_outer_scope_without_grace_drops_an_inner_grace_at_once() {
        let (guard, inner_dropped) = drop_flag();
        let started = Instant::now();
        let outer = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .try_run(async move {
                CancelScope::new()
                    .grace(LONG)
                    .run(async move {
                        let _guard = guard;
                        // Not cancellation-aware: only the end of the
                        // grace ends it.
                        std::future::pending::<()>().await
                    })
                    .await
            })
            .await;
        // The inner scope reports its end (cut at the outer deadline) if it
        // gets to, before the outer scope drops it.
        let cancelled = outer.unwrap_err();
        assert!(cancelled.is_timeout(), "{cancelled}");
        assert!(inner_dropped.load(Ordering::SeqCst));
        assert!(started.elapsed() < GENEROUS, "{:?}", started.elapsed());
    }
}

// ---- a second signal during the grace period: child processes -------------

#[cfg(unix)]
mod second_signal {
    use cancelable::Signal;
    use cancelable_tests::child_output::{
        assert_killed_by, assert_lines_in_order, assert_no_line, describe,
    };
    use std::process::{Command, Output, Stdio};

    /// Runs `signal-child grace-second-signal HANDLER` (it arms
    /// `alarm(20)` on itself, so a hung child dies of SIGALRM).
    fn child(handler: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_signal-child"))
            .args(["grace-second-signal", handler])
            .stdin(Stdio::null())
            .output()
            .expect("spawn signal-child")
    }

    #[track_caller]
    fn assert_lines(output: &Output, expected: &[&str]) {
        assert_lines_in_order(output, expected);
        assert_no_line(
            output,
            "cleanup finished",
            "the cleanup outlived the second SIGINT",
        );
    }

    /// With the application's own SIGINT handler, a second SIGINT during
    /// the grace period reaches that handler and ends the grace at once:
    /// the body is dropped long before its cleanup or the grace would end.
    #[test]
    fn child_second_sigint_during_the_grace_ends_it_at_once() {
        let output = child("sigaction");
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert_lines(
            &output,
            &[
                "raising the first SIGINT",
                "cleanup started: Signal(Interrupt)",
                "raising a second SIGINT",
                "scope ended: Signal(Interrupt), DroppedAfterGrace, body dropped",
                "ended well before the grace period",
                "the app's handler saw SIGINT",
            ],
        );
    }

    /// Runs `signal-child fast-second-signal HANDLER`.
    fn fast_child(handler: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_signal-child"))
            .args(["fast-second-signal", handler])
            .stdin(Stdio::null())
            .output()
            .expect("spawn signal-child")
    }

    /// Two SIGINTs back to back, both arrived before cancelable's delivery
    /// thread ran: still a first and a second signal — the grace ends at
    /// once and the app's handler sees them.
    #[test]
    fn child_two_sigints_back_to_back_end_the_grace_at_once() {
        let output = fast_child("sigaction");
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert_lines(
            &output,
            &[
                "holding the delivery thread",
                "raising two SIGINTs back to back",
                "scope ended: Signal(Interrupt), DroppedAfterGrace, body dropped",
                "ended well before the grace period",
                "the app's handler saw SIGINT",
            ],
        );
    }

    /// The same without a handler of the application's: the second of the
    /// two does what it does without cancelable, it kills.
    #[test]
    fn child_two_sigints_back_to_back_kill_without_an_app_handler() {
        let output = fast_child("none");
        assert_killed_by(&output, Signal::Interrupt, &[]);
        assert_lines(
            &output,
            &[
                "holding the delivery thread",
                "raising two SIGINTs back to back",
            ],
        );
    }

    /// Without a handler of the application's, a second SIGINT during the
    /// grace period does what it does without cancelable: it kills.
    #[test]
    fn child_second_sigint_during_the_grace_kills_without_an_app_handler() {
        let output = child("none");
        assert_killed_by(&output, Signal::Interrupt, &[]);
        assert_lines(
            &output,
            &[
                "raising the first SIGINT",
                "cleanup started: Signal(Interrupt)",
                "raising a second SIGINT",
            ],
        );
    }
}
