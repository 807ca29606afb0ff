//! The registry's answers: what a cancel request says it did, when an
//! operation counts as stuck, which operations `list()` shows and in what
//! order, and the bounds of its settings.

use std::future::pending;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cancelable::registry::{CancelAnswer, Filter, Registry, RegistryError, MAX_HISTORY_CAPACITY};
use cancelable::{cancelled, CancelReason, CancelScope, Cancelled, OperationStatus};
use cancelable_tests::{on_every_backend, sleep};

on_every_backend! {
    async fn a_cancel_of_a_body_that_then_completes_is_not_answered_as_cancelled() {
        let registry = Registry::new();
        let inside = registry.clone();
        let scope = CancelScope::new().name("quick").register_in(&registry).key("quick-1").unwrap();
        // The body asks for its own cancellation, then returns without a
        // checkpoint: it completes, as a body that finishes first does.
        let answer = scope
            .run(async move { inside.cancel_by_key("quick-1", CancelReason::Manual, "stop").unwrap() })
            .await
            .unwrap();
        assert!(matches!(answer, CancelAnswer::Requested(_)), "{answer:?}");
        let finished = answer.outcome().expect("it was running").await;
        assert_eq!(finished.status, OperationStatus::Completed);
        assert!(finished.completed_despite_cancel);
        assert_eq!(finished.reason, Some(CancelReason::Manual));
        let history = &registry.history(1, &Filter::new())[0];
        assert!(history.completed_despite_cancel);
        let stats = registry.statistics().total;
        assert_eq!((stats.completed, stats.completed_despite_cancel, stats.cancelled), (1, 1, 0));
        // Now the operation has ended: the answer says so, and how.
        let late = registry.cancel(finished.id, CancelReason::Manual, "late").unwrap();
        assert!(matches!(&late, CancelAnswer::Ended(ended) if ended.completed_despite_cancel), "{late:?}");
    }

    async fn the_outcome_of_a_requested_cancel_is_the_cancellation_once_seen() {
        let registry = Registry::new();
        let scope = CancelScope::new().register_in(&registry).key("slow-1").unwrap();
        let run = scope.run(pending::<()>());
        let mut run = pin!(run);
        assert!(futures::poll!(run.as_mut()).is_pending());
        let answer = registry.cancel_by_key("slow-1", CancelReason::Manual, "stop").unwrap();
        assert!(answer.is_requested());
        let outcome = answer.outcome().unwrap();
        let (ended, finished) = futures::join!(run, outcome);
        assert!(ended.is_err());
        assert_eq!(finished.status, OperationStatus::Cancelled);
        assert!(!finished.completed_despite_cancel);
        assert_eq!(finished.message.as_deref(), Some("stop"));
        assert_eq!(registry.statistics().total.completed_despite_cancel, 0);
    }

    async fn an_operation_cleaning_up_within_its_grace_is_not_stuck() {
        let registry = Registry::builder().stuck_after(Duration::from_millis(50)).build().unwrap();
        let inside = registry.clone();
        let scope = CancelScope::new().name("tidy").grace(Duration::from_secs(30)).register_in(&registry);
        let id = scope.handle().id();
        let work = scope.try_run(async move {
            let cancelled = cancelled().await;
            // Cleanup, well within the grace, past the stuck threshold.
            sleep(Duration::from_millis(200)).await;
            let info = inside.get(id).expect("still running its cleanup");
            assert!(!info.stuck, "flagged stuck within its grace: {info:?}");
            assert!(info.in_grace, "{info:?}");
            assert_eq!(inside.snapshot().stuck, 0);
            Err::<(), Cancelled>(cancelled)
        });
        let stop = async {
            sleep(Duration::from_millis(5)).await;
            assert!(registry.cancel(id, CancelReason::Manual, "stop").unwrap().is_requested());
        };
        let (outcome, ()) = futures::join!(work, stop);
        assert!(outcome.is_err());
        assert_eq!(registry.statistics().total.stuck, 0);
    }

    async fn list_is_in_start_order() {
        let registry = Registry::new();
        let first_made = CancelScope::new().name("made-first").register_in(&registry);
        let second_made = CancelScope::new().name("made-second").register_in(&registry);
        // Ids are given when first asked for: here, in the order made.
        assert!(first_made.handle().id() < second_made.handle().id());
        let mut first = pin!(first_made.run(pending::<()>()));
        let mut second = pin!(second_made.run(pending::<()>()));
        assert!(futures::poll!(second.as_mut()).is_pending());
        assert!(futures::poll!(first.as_mut()).is_pending());
        let names: Vec<_> = registry
            .list(&Filter::new())
            .into_iter()
            .map(|info| info.name.unwrap().into_owned())
            .collect();
        assert_eq!(names, ["made-second", "made-first"]);
    }

    async fn list_never_shows_a_finished_operation() {
        let registry = Registry::new();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let registry = registry.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        futures::executor::block_on(async {
                            for _ in 0..100 {
                                CancelScope::new().register_in(&registry).run(async {}).await.unwrap();
                            }
                        });
                    }
                })
            })
            .collect();
        let mut seen = 0;
        for _ in 0..20_000 {
            for info in registry.list(&Filter::new()) {
                seen += 1;
                assert!(!info.status.is_finished(), "list() showed a finished operation: {info:?}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
        let _ = seen;
    }

    async fn cancel_by_id_and_by_key_answer_alike_before_the_start() {
        let registry = Registry::new();
        let by_id = CancelScope::new().register_in(&registry).key("early-1").unwrap();
        let by_key = CancelScope::new().register_in(&registry).key("early-2").unwrap();
        let id_answer = registry.cancel(by_id.handle().id(), CancelReason::Manual, "early");
        let key_answer = registry.cancel_by_key("early-2", CancelReason::Manual, "early");
        assert!(matches!(id_answer, Ok(CancelAnswer::NotStarted)), "{id_answer:?}");
        assert!(matches!(key_answer, Ok(CancelAnswer::NotStarted)), "{key_answer:?}");
        assert!(by_id.handle().is_cancelled());
        assert!(by_key.handle().is_cancelled());
    }

    async fn a_history_capacity_beyond_the_limit_is_an_error() {
        let error = Registry::builder().history_capacity(1 << 50).build().unwrap_err();
        let text = error.to_string();
        assert!(text.contains("16,777,216") && text.contains("1125899906842624"), "{text}");
        assert_eq!(error, RegistryError::CapacityTooLarge { capacity: 1 << 50 });
        // The largest capacity is accepted, and costs memory only as it fills.
        let large = Registry::builder().history_capacity(MAX_HISTORY_CAPACITY).build().unwrap();
        CancelScope::new().register_in(&large).run(async {}).await.unwrap();
        assert_eq!(large.history(10, &Filter::new()).len(), 1);
    }
}
