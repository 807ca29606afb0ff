//! Operation context, callbacks, progress and conditions.

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cancelable::{
    current_scope, report_progress, CancelReason, CancelScope, Cancelled, OperationStatus, Progress,
};
use cancelable_tests::{on_every_backend, sleep};

on_every_backend! {
    async fn context_tracks_a_completed_operation() {
        let outer = CancelScope::new().name("outer");
        let outer_handle = outer.handle();
        let completed = Arc::new(Mutex::new(None));
        let seen = completed.clone();
        let inner_context = outer
            .run(async {
                let inner = CancelScope::new()
                    .name("inner")
                    .metadata("user", "ada")
                    .on_complete(move |context| *seen.lock().unwrap() = Some(context.clone()));
                let handle = inner.handle();
                inner
                    .run(async {
                        let me = current_scope().expect("inside the scope");
                        assert_eq!(me.status(), OperationStatus::Running);
                        sleep(Duration::from_millis(2)).await;
                    })
                    .await
                    .unwrap();
                handle.context()
            })
            .await
            .unwrap();
        assert_eq!(inner_context.status, OperationStatus::Completed);
        assert_eq!(inner_context.name.as_deref(), Some("inner"));
        assert_eq!(inner_context.parent_id, Some(outer_handle.id()));
        assert_eq!(inner_context.metadata.get("user").map(String::as_str), Some("ada"));
        assert!(inner_context.elapsed.unwrap() >= Duration::from_millis(2));
        assert!(inner_context.started_at.unwrap() <= inner_context.ended_at.unwrap());
        let from_callback = completed.lock().unwrap().take().expect("on_complete ran");
        assert_eq!(from_callback.id, inner_context.id);
        assert_eq!(outer_handle.status(), OperationStatus::Completed);
    }

    async fn one_scope_s_callbacks_and_metadata_never_reach_the_next() {
        // A scope's extras (callbacks, metadata, grace) are reused by the
        // next scope on the thread: what the first one left must be gone.
        let cancelled_runs = Arc::new(AtomicUsize::new(0));
        let count = cancelled_runs.clone();
        let first = CancelScope::new()
            .name("first")
            .metadata("tenant", "a")
            .grace(Duration::from_secs(5))
            .on_cancel(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
            })
            .on_complete(|_| {});
        first.run(async {}).await.unwrap();
        // The first completed: its `on_cancel` never ran, and is dropped
        // with its captures.
        assert_eq!(Arc::strong_count(&cancelled_runs), 1);

        let second = CancelScope::new().name("second").on_cancel(|_| {});
        let handle = second.handle();
        handle.cancel();
        let cancelled = second.run(pending::<()>()).await.unwrap_err();
        assert_eq!(cancelled.operation_name(), Some("second"));
        assert_eq!(cancelled_runs.load(Ordering::SeqCst), 0);
        assert!(handle.context().metadata.is_empty());

        // Without a grace of its own, a cancelled body is dropped at once.
        let third = CancelScope::new().on_complete(|_| {});
        let handle = third.handle();
        handle.cancel();
        let reached = Arc::new(AtomicBool::new(false));
        let after = reached.clone();
        let outcome = third
            .run(async move {
                sleep(Duration::from_millis(50)).await;
                after.store(true, Ordering::SeqCst);
            })
            .await;
        assert!(outcome.is_err());
        assert!(!reached.load(Ordering::SeqCst));
        assert!(handle.context().metadata.is_empty());
    }

    async fn progress_reaches_the_scope_and_its_callbacks() {
        let reports = Arc::new(Mutex::new(Vec::<Progress>::new()));
        let sink = reports.clone();
        let scope = CancelScope::new().on_progress(move |progress| sink.lock().unwrap().push(progress.clone()));
        let handle = scope.handle();
        scope
            .run(async {
                assert!(report_progress(0.25, "a quarter"));
                helper_reports().await;
                // Out-of-range fractions are clamped, NaN means unknown.
                report_progress(7.0, "over");
                report_progress(f64::NAN, "unknown");
            })
            .await
            .unwrap();
        let reports = reports.lock().unwrap();
        let fractions: Vec<_> = reports.iter().map(|p| p.fraction).collect();
        assert_eq!(fractions, [Some(0.25), Some(0.5), Some(1.0), None]);
        assert_eq!(reports[1].message, "from a helper");
        assert_eq!(handle.context().progress.unwrap().message, "unknown");
        assert!(!report_progress(0.5, "outside any scope"));
    }

    async fn panicking_callbacks_do_not_lose_the_result() {
        let ran = Arc::new(AtomicUsize::new(0));
        let (a, b) = (ran.clone(), ran.clone());
        let output = CancelScope::new()
            .on_progress(|_| panic!("progress handler panics on purpose"))
            .on_complete(|_| panic!("completion callback panics on purpose"))
            .on_complete(move |_| {
                a.fetch_add(1, Ordering::SeqCst);
            })
            .run(async {
                report_progress(0.5, "half");
                42
            })
            .await;
        assert_eq!(output.unwrap(), 42);
        let cancelled = CancelScope::new()
            .timeout(Duration::from_millis(1))
            .on_cancel(|_| panic!("cancel callback panics on purpose"))
            .on_cancel(move |cancelled| {
                assert!(cancelled.is_timeout());
                b.fetch_add(1, Ordering::SeqCst);
            })
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(cancelled.is_timeout());
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    async fn on_error_runs_for_a_failed_body() {
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let outcome: Result<(), Cancelled> = CancelScope::new()
            .on_error(move |context| {
                assert_eq!(context.status, OperationStatus::Failed);
                flag.store(true, Ordering::SeqCst);
            })
            .try_run(async { Err(Cancelled::new(CancelReason::Manual)) })
            .await;
        assert!(outcome.is_err());
        assert!(failed.load(Ordering::SeqCst));
    }

    async fn blocking_condition_cancels() {
        let flag = Arc::new(AtomicBool::new(false));
        let watched = flag.clone();
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = checks.clone();
        let setter = async {
            sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        };
        let scope = CancelScope::new().condition(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                // May block: runs on a blocking thread.
                std::thread::sleep(Duration::from_millis(1));
                watched.load(Ordering::SeqCst)
            },
            Duration::from_millis(5),
        );
        let (outcome, ()) = futures::join!(scope.run(pending::<()>()), setter);
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Condition);
        assert!(checks.load(Ordering::SeqCst) >= 2, "checked repeatedly");
    }

    async fn async_condition_cancels() {
        let flag = Arc::new(AtomicBool::new(false));
        let watched = flag.clone();
        let setter = async {
            sleep(Duration::from_millis(15)).await;
            flag.store(true, Ordering::SeqCst);
        };
        let scope = CancelScope::new().condition(
            move || {
                let watched = watched.clone();
                async move {
                    sleep(Duration::from_millis(1)).await;
                    watched.load(Ordering::SeqCst)
                }
            },
            Duration::from_millis(5),
        );
        let (outcome, ()) = futures::join!(scope.run(pending::<()>()), setter);
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Condition);
    }

    async fn panicking_predicates_cancel_with_error() {
        let blocking = CancelScope::new()
            .condition(|| -> bool { panic!("sensor unplugged") }, Duration::from_millis(5))
            .run(pending::<()>())
            .await
            .unwrap_err();
        match blocking.reason() {
            CancelReason::Error(error) => assert!(error.message().contains("sensor unplugged"), "{error}"),
            other => panic!("expected an Error reason, got {other:?}"),
        }
        let asynchronous = CancelScope::new()
            .condition(|| async { panic!("async sensor unplugged") }, Duration::from_millis(5))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(matches!(asynchronous.reason(), CancelReason::Error(e) if e.message().contains("async sensor unplugged")));
        assert!(std::error::Error::source(&asynchronous).is_some());
    }

    async fn zero_check_interval_is_an_error_not_a_spin() {
        let cancelled = CancelScope::new()
            .condition(|| false, Duration::ZERO)
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(matches!(cancelled.reason(), CancelReason::Error(e) if e.message().contains("greater than zero")));
    }
}

async fn helper_reports() {
    // Any code running inside the scope reaches it.
    report_progress(Some(0.5), "from a helper");
}

#[test]
fn body_panic_propagates_and_marks_the_operation_failed() {
    let scope = CancelScope::new();
    let handle = scope.handle();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures::executor::block_on(scope.run(async {
            sleep(Duration::from_millis(1)).await;
            panic!("body panics on purpose");
        }))
    }));
    let payload = outcome.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"body panics on purpose")
    );
    assert_eq!(handle.status(), OperationStatus::Failed);
    // The thread's current scope was restored despite the panic.
    assert!(current_scope().is_none());
}

on_every_backend! {
    async fn huge_durations_do_not_overflow() {
        // Durations too long to add to the clock mean "never", not a panic.
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        let output = CancelScope::new()
            .timeout(Duration::MAX)
            .deadline(std::time::Instant::now() + century)
            .source(cancelable::Source::timeout(Duration::MAX))
            .source(cancelable::Source::timeout(century))
            .condition(|| false, Duration::MAX)
            .run(async {
                sleep(Duration::from_millis(20)).await;
                "finished"
            })
            .await;
        assert_eq!(output.unwrap(), "finished");
    }
}
