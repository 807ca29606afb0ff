//! `shield`: cleanup that outer cancellation cannot interrupt, which keeps
//! its scope (context, progress, parent ids, token), and the outcome of a
//! scope cancelled while a shield runs inside it.

use std::future::pending;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::testing::{EventKind, OperationRecorder};
use cancelable::{
    checkpoint, current_scope, current_token, report_progress, shield, CancelReason, CancelScope,
    Cancelled, OperationStatus,
};
use cancelable_tests::{on_every_backend, sleep, yield_once};
use futures::future::{select, Either};
use futures::FutureExt;

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// Records a scope's `on_cancel` and `on_complete` callbacks (the testing
/// kit's recorder).
#[derive(Default)]
struct Callbacks(OperationRecorder);

impl Callbacks {
    fn watch(&self, scope: CancelScope) -> CancelScope {
        self.0.record(scope)
    }

    fn cancelled(&self) -> usize {
        self.0.count(EventKind::Cancel)
    }

    fn completed(&self) -> usize {
        self.0.count(EventKind::Complete)
    }

    #[track_caller]
    fn assert_cancelled_once(&self) {
        assert_eq!(
            self.cancelled(),
            1,
            "on_cancel runs once: {:?}",
            self.0.labels()
        );
        assert_eq!(
            self.completed(),
            0,
            "on_complete never runs: {:?}",
            self.0.labels()
        );
    }
}

on_every_backend! {
    async fn shield_lets_cleanup_finish_then_reports_the_reason() {
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        let scope = CancelScope::new().timeout(Duration::from_millis(10));
        let handle = scope.handle();
        let outcome = scope
            .run(async move {
                shield(async {
                    // Runs past the scope's timeout, uninterrupted; no
                    // checkpoint fails inside the shield.
                    sleep(Duration::from_millis(40)).await;
                    checkpoint().await.expect("the shield hides the cancellation");
                    flag.store(true, Ordering::SeqCst);
                })
                .await;
                // Back in the cancelled scope: the next pend ends it.
                pending::<()>().await;
            })
            .await;
        assert!(cleaned.load(Ordering::SeqCst), "the shielded cleanup completed");
        assert!(outcome.unwrap_err().is_timeout());
        assert_eq!(handle.status(), OperationStatus::Cancelled);
    }

    async fn scope_timed_out_during_a_shield_ends_cancelled_though_the_body_then_returns() {
        // A 20 ms timeout fires during an 80 ms shielded section, after
        // which the body returns 7: the scope ends with its reason.
        let callbacks = Callbacks::default();
        let scope = callbacks.watch(CancelScope::new().timeout(Duration::from_millis(20)));
        let handle = scope.handle();
        let value = Arc::new(7);
        let returned = value.clone();
        let outcome = scope
            .run(async move {
                shield(sleep(Duration::from_millis(80))).await;
                returned
            })
            .await;
        let cancelled = outcome.expect_err("the timeout fired while the shield ran");
        assert!(cancelled.is_timeout(), "{cancelled}");
        assert!(handle.is_cancelled());
        assert_eq!(handle.status(), OperationStatus::Cancelled);
        assert_eq!(handle.context().reason, Some(CancelReason::Timeout));
        callbacks.assert_cancelled_once();
        assert_eq!(Arc::strong_count(&value), 1, "the body's value is dropped");
    }

    async fn try_run_cancelled_during_a_shield_ends_cancelled_though_the_body_returns_ok() {
        let callbacks = Callbacks::default();
        let scope = callbacks.watch(CancelScope::new());
        let handle = scope.handle();
        let outcome: Result<u32, Cancelled> = scope
            .try_run(async {
                shield(async {
                    handle.cancel_with(CancelReason::Manual, "stop");
                    // The scope sees its cancellation while the shield runs.
                    yield_once().await;
                    sleep(Duration::from_millis(10)).await;
                })
                .await;
                Ok(7)
            })
            .await;
        let cancelled = outcome.expect_err("cancelled while the shield ran");
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("stop"));
        assert_eq!(handle.status(), OperationStatus::Cancelled);
        callbacks.assert_cancelled_once();
    }

    async fn body_completing_after_a_shield_without_cancellation_returns_its_value() {
        let callbacks = Callbacks::default();
        let scope = callbacks.watch(CancelScope::new().timeout(Duration::from_secs(60)));
        let handle = scope.handle();
        let outcome = scope
            .run(async {
                shield(sleep(Duration::from_millis(10))).await;
                7
            })
            .await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(handle.status(), OperationStatus::Completed);
        assert_eq!(callbacks.cancelled(), 0);
        assert_eq!(callbacks.completed(), 1);
    }

    async fn code_inside_a_shield_keeps_its_scope() {
        let progress = Arc::new(Mutex::new(Vec::new()));
        let seen = progress.clone();
        let scope = CancelScope::new()
            .name("flush")
            .on_progress(move |progress| seen.lock().unwrap().push(progress.message.clone()));
        let handle = scope.handle();
        let token = scope.handle().cancel_token();
        let outcome = scope
            .run(async {
                handle.cancel();
                shield(async {
                    yield_once().await;
                    let current = current_scope().expect("the scope stays current");
                    assert_eq!(current.id(), handle.id());
                    assert!(current.is_cancelled(), "the cancellation can be read");
                    let linked = current_token().expect("the token stays reachable");
                    assert_eq!(linked, token);
                    checkpoint().await.expect("but checkpoints do not report it");
                    assert!(report_progress(0.5, "flushing"), "progress reaches the scope");
                })
                .await;
                pending::<()>().await
            })
            .await;
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
        assert_eq!(*progress.lock().unwrap(), ["flushing"]);
    }

    async fn progress_from_inside_a_shield_reaches_on_progress() {
        let progress = Arc::new(Mutex::new(Vec::new()));
        let seen = progress.clone();
        let scope = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .on_progress(move |progress| seen.lock().unwrap().push(progress.clone()));
        let handle = scope.handle();
        let outcome = scope
            .run(async {
                shield(async {
                    sleep(Duration::from_millis(60)).await;
                    // Reported after the timeout fired.
                    report_progress(1.0, "cleanup done")
                })
                .await
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
        let progress = progress.lock().unwrap();
        assert_eq!(progress.len(), 1, "{progress:?}");
        assert_eq!(progress[0].message, "cleanup done");
        assert_eq!(progress[0].fraction, Some(1.0));
        let recorded = handle.context().progress.expect("recorded in the context");
        assert_eq!(recorded.message, "cleanup done");
    }

    async fn scope_opened_inside_a_shield_has_the_outer_as_parent_but_not_its_cancellation() {
        let outer = CancelScope::new()
            .name("outer")
            .timeout(Duration::from_millis(10));
        let outer_handle = outer.handle();
        let outcome = outer
            .run(async {
                let inner = shield(async {
                    sleep(Duration::from_millis(60)).await;
                    assert!(current_token().unwrap().is_cancelled(), "the outer timed out");
                    let inner = CancelScope::new().name("cleanup");
                    let inner_handle = inner.handle();
                    let outcome = inner
                        .run(async {
                            assert!(!current_token().unwrap().is_cancelled());
                            assert_eq!(current_scope().unwrap().effective_deadline(), None);
                            // A busy loop of checkpoints outlives the outer
                            // deadline: it is not enforced inside the shield.
                            let started = Instant::now();
                            while started.elapsed() < Duration::from_millis(20) {
                                checkpoint().await.expect("not cancelled by the outer scope");
                            }
                            sleep(Duration::from_millis(5)).await;
                            "cleaned"
                        })
                        .await;
                    (outcome, inner_handle)
                })
                .await;
                let (outcome, inner_handle) = inner;
                assert_eq!(outcome.unwrap(), "cleaned");
                let context = inner_handle.context();
                assert_eq!(context.status, OperationStatus::Completed);
                assert_eq!(context.parent_id, Some(outer_handle.id()));
                assert_eq!(context.reason, None);
                pending::<()>().await
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
    }

    async fn scope_inside_a_shield_is_cancelled_by_its_own_sources() {
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(5))
            .run(async {
                shield(async {
                    sleep(Duration::from_millis(20)).await;
                    // Its own timeout fires, with its own reason.
                    let timed_out = CancelScope::new()
                        .timeout(Duration::from_millis(10))
                        .run(pending::<()>())
                        .await
                        .unwrap_err();
                    assert_eq!(timed_out.reason(), &CancelReason::Timeout);
                    // A checkpoint inside it reports its own cancellation.
                    let inner = CancelScope::new();
                    let handle = inner.handle();
                    let checked = inner
                        .run(async {
                            handle.cancel();
                            checkpoint().await
                        })
                        .await;
                    assert_eq!(checked.unwrap().unwrap_err().reason(), &CancelReason::Manual);
                })
                .await;
                pending::<()>().await
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
    }

    async fn sibling_of_a_shield_in_a_join_stops_at_its_next_checkpoint() {
        let callbacks = Callbacks::default();
        let scope = callbacks.watch(CancelScope::new().timeout(Duration::from_millis(20)));
        let cleaned = AtomicBool::new(false);
        let cleanup_done_when_sibling_stopped = AtomicBool::new(true);
        let outcome = scope
            .run(async {
                let cleanup = shield(async {
                    sleep(Duration::from_millis(150)).await;
                    cleaned.store(true, Ordering::SeqCst);
                });
                let sibling = async {
                    loop {
                        sleep(Duration::from_millis(2)).await;
                        if let Err(cancelled) = checkpoint().await {
                            let done = cleaned.load(Ordering::SeqCst);
                            cleanup_done_when_sibling_stopped.store(done, Ordering::SeqCst);
                            return cancelled;
                        }
                    }
                };
                let ((), cancelled) = futures::join!(cleanup, sibling);
                cancelled
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
        assert!(cleaned.load(Ordering::SeqCst));
        assert!(
            !cleanup_done_when_sibling_stopped.load(Ordering::SeqCst),
            "the sibling saw the cancellation while the shield still ran"
        );
        callbacks.assert_cancelled_once();
    }

    async fn nested_shields_hold_the_scope_until_the_outermost_ends() {
        let callbacks = Callbacks::default();
        let scope = callbacks.watch(CancelScope::new().timeout(Duration::from_millis(10)));
        let steps = Mutex::new(Vec::new());
        let outcome = scope
            .run(async {
                shield(async {
                    shield(async {
                        sleep(Duration::from_millis(60)).await;
                        checkpoint().await.expect("shielded");
                        steps.lock().unwrap().push("inner");
                    })
                    .await;
                    // The inner shield ended; the outer one still hides
                    // the cancellation.
                    sleep(Duration::from_millis(10)).await;
                    checkpoint().await.expect("still shielded");
                    steps.lock().unwrap().push("outer");
                })
                .await;
                steps.lock().unwrap().push("body");
                7
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
        assert_eq!(*steps.lock().unwrap(), ["inner", "outer", "body"]);
        callbacks.assert_cancelled_once();
    }

    async fn shield_inside_a_scope_inside_a_shield_defers_the_inner_scope_only() {
        let outer_callbacks = Callbacks::default();
        let outer = outer_callbacks.watch(CancelScope::new().timeout(Duration::from_secs(60)));
        let outcome = outer
            .run(async {
                shield(async {
                    let inner_callbacks = Callbacks::default();
                    let inner = inner_callbacks
                        .watch(CancelScope::new().timeout(Duration::from_millis(10)));
                    let ended = inner
                        .run(async {
                            shield(sleep(Duration::from_millis(60))).await;
                            "dropped"
                        })
                        .await;
                    // The inner scope ends with its own timeout once its
                    // shield is done.
                    assert!(ended.unwrap_err().is_timeout());
                    inner_callbacks.assert_cancelled_once();
                })
                .await;
                "outer goes on"
            })
            .await;
        assert_eq!(outcome.unwrap(), "outer goes on");
        assert_eq!(outer_callbacks.completed(), 1);
        assert_eq!(outer_callbacks.cancelled(), 0);
    }

    async fn shield_dropped_midway_lets_the_scope_end_with_its_reason() {
        let callbacks = Callbacks::default();
        let scope = callbacks.watch(CancelScope::new().timeout(Duration::from_millis(10)));
        let handle = scope.handle();
        let started = Instant::now();
        let outcome = scope
            .run(async {
                let cleanup = Box::pin(shield(sleep(Duration::from_secs(60))));
                let give_up = Box::pin(sleep(Duration::from_millis(60)));
                // The body stops waiting for the cleanup, dropping the
                // shield, and returns at once.
                match select(cleanup, give_up).await {
                    Either::Left(_) => unreachable!("the cleanup takes a minute"),
                    Either::Right(((), cleanup)) => drop(cleanup),
                }
                7
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
        assert_eq!(handle.status(), OperationStatus::Cancelled);
        callbacks.assert_cancelled_once();
        assert!(started.elapsed() < GENEROUS);
    }

    async fn shield_dropped_midway_before_a_pend_ends_the_scope_at_once() {
        let started = Instant::now();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(10))
            .run(async {
                let cleanup = Box::pin(shield(sleep(Duration::from_secs(60))));
                let give_up = Box::pin(sleep(Duration::from_millis(30)));
                drop(select(cleanup, give_up).await);
                pending::<()>().await
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
        assert!(started.elapsed() < GENEROUS);
    }

    async fn checkpoints_after_a_shield_report_the_cancellation_again() {
        let scope = CancelScope::new();
        let handle = scope.handle();
        let outcome = scope
            .run(async {
                handle.cancel();
                shield(async { checkpoint().await }).await.expect("shielded");
                let after = checkpoint().await.expect_err("the shield has ended");
                assert_eq!(after.reason(), &CancelReason::Manual);
                // A shield that panics does not leave the code shielded.
                let panicked = AssertUnwindSafe(shield(async {
                    checkpoint().await.expect("shielded");
                    panic!("cleanup failed");
                }))
                .catch_unwind()
                .await;
                assert!(panicked.is_err());
                checkpoint().await.expect_err("the shield has ended")
            })
            .await;
        // The body completed in the poll that saw the cancellation, with no
        // shield running then: its value (the error it caught) is returned.
        assert_eq!(outcome.unwrap().reason(), &CancelReason::Manual);
    }

    async fn scope_cancelled_after_its_shield_ended_follows_the_poll_order() {
        // The body completes in the poll after the cancellation, with no
        // shield running then: the body's value wins, as without a shield.
        let scope = CancelScope::new();
        let handle = scope.handle();
        let outcome = scope
            .run(async {
                shield(sleep(Duration::from_millis(5))).await;
                handle.cancel();
                7
            })
            .await;
        assert_eq!(outcome.unwrap(), 7);
        assert_eq!(handle.status(), OperationStatus::Completed);
    }
}
