//! A registered scope that nothing but its body and the registry reaches
//! starts without shared state (`scope/lazy.rs`, invariant 3): the
//! registry shows it, cancels it and records its end as it would a scope
//! with state. These scopes take no handle before their run (a handle
//! makes the state): each finds its operation through the registry.

use std::future::pending;
use std::time::Duration;

use cancelable::registry::{Filter, OperationInfo, Registry};
use cancelable::{report_progress, CancelReason, CancelScope, Cancelled, OperationStatus};
use cancelable_tests::on_every_backend;
use futures::channel::oneshot;
use futures::FutureExt;

// A panicking body: `registry.rs`'s `a_panicking_body_leaves_the_live_set_as_failed`
// runs a registered scope started without state.

/// The one live operation of `registry`.
fn only_live(registry: &Registry) -> OperationInfo {
    let live = registry.list(&Filter::new());
    assert_eq!(live.len(), 1, "{live:?}");
    live.into_iter().next().unwrap()
}

on_every_backend! {
    async fn a_lazy_registered_scope_is_listed_with_its_id_name_start_and_deadline() {
        let registry = Registry::new();
        let job = CancelScope::new()
            .name("export")
            .timeout(Duration::from_secs(60))
            .register_in(&registry)
            .run(pending::<()>());
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        let live = only_live(&registry);
        assert_ne!(live.id, 0);
        assert_eq!(live.name.as_deref(), Some("export"));
        assert_eq!(live.status, OperationStatus::Running);
        assert!(live.started_at.is_some());
        let remaining = live.remaining.expect("its deadline");
        assert!(remaining > Duration::from_secs(50) && remaining <= Duration::from_secs(60));
        assert_eq!(registry.get(live.id).unwrap().id, live.id);
        // The snapshot lists it too, with the same id.
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.live, 1);
        assert_eq!(snapshot.operations[0].operation.id, live.id);
    }

    async fn a_registry_cancel_reaches_a_lazy_registered_scope_with_its_reason() {
        let registry = Registry::new();
        let job = CancelScope::new()
            .name("import")
            .register_in(&registry)
            .run(pending::<()>());
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        let id = only_live(&registry).id;
        let answer = registry.cancel(id, CancelReason::Manual, "operator request").unwrap();
        assert!(answer.is_requested());
        let cancelled = job.await.unwrap_err();
        assert_eq!(cancelled.message(), Some("operator request"));
        assert_eq!(cancelled.operation_id(), Some(id));
        assert_eq!(cancelled.operation_name(), Some("import"));
        assert!(registry.list(&Filter::new()).is_empty());
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.id, finished.status), (id, OperationStatus::Cancelled));
        assert_eq!(finished.reason, Some(CancelReason::Manual));
        assert_eq!(finished.message.as_deref(), Some("operator request"));
        assert!(finished.lag.is_some());
        assert_eq!(registry.statistics().by_name["import"].cancelled, 1);
    }

    async fn the_state_a_reader_made_is_the_one_the_body_reports_progress_on() {
        let registry = Registry::new();
        let (step, stepped) = oneshot::channel::<()>();
        let (finish, finished) = oneshot::channel::<()>();
        let job = CancelScope::new()
            .name("sync")
            .register_in(&registry)
            .run(async move {
                stepped.await.unwrap();
                report_progress(0.5, "halfway");
                finished.await.unwrap();
            });
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        // A reader makes the scope's state before the body asks for it.
        let id = registry.snapshot().operations[0].operation.id;
        step.send(()).unwrap();
        assert!(futures::poll!(job.as_mut()).is_pending());
        let live = registry.get(id).unwrap();
        assert_eq!(live.progress.as_ref().and_then(|progress| progress.fraction), Some(0.5));
        // And a cancel through the registry still reaches the scope.
        assert!(registry.cancel(id, CancelReason::Manual, "enough").unwrap().is_requested());
        let cancelled = job.await.unwrap_err();
        assert_eq!(cancelled.message(), Some("enough"));
        drop(finish);
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.id, finished.status), (id, OperationStatus::Cancelled));
    }

    async fn a_reader_made_state_gets_the_scope_s_final_status() {
        let registry = Registry::new();
        let (finish, finished) = oneshot::channel::<()>();
        let job = CancelScope::new()
            .name("quick")
            .register_in(&registry)
            .run(async move { finished.await.unwrap() });
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        let id = registry.snapshot().operations[0].operation.id;
        finish.send(()).unwrap();
        job.await.unwrap();
        assert!(registry.get(id).is_none());
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.id, finished.status), (id, OperationStatus::Completed));
        assert_eq!(finished.name.as_deref(), Some("quick"));
    }

    async fn a_lazy_registered_scope_that_times_out_is_recorded_as_a_timeout() {
        let registry = Registry::new();
        let cancelled = CancelScope::new()
            .name("slow")
            .timeout(Duration::from_millis(5))
            .register_in(&registry)
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert!(cancelled.is_timeout());
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!(Some(finished.id), cancelled.operation_id());
        assert_eq!(finished.status, OperationStatus::Cancelled);
        assert_eq!(finished.reason, Some(CancelReason::Timeout));
        assert!(finished.duration >= Duration::from_millis(5), "{:?}", finished.duration);
        assert!(!finished.completed_despite_cancel);
    }

    async fn a_failed_lazy_registered_scope_keeps_its_error_text() {
        let registry = Registry::new();
        let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> = CancelScope::new()
            .name("write")
            .register_in(&registry)
            .try_run(async { Err("disk full".into()) })
            .keep_error_text()
            .await;
        assert!(outcome.is_err());
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!(finished.status, OperationStatus::Failed);
        assert_eq!(finished.error.as_deref(), Some("disk full"));
        assert_eq!(finished.reason, None);
        assert_eq!(registry.statistics().by_name["write"].failed, 1);
    }

    async fn a_lazy_registered_scope_that_finishes_despite_a_cancel_says_so() {
        let registry = Registry::new();
        let (finish, finished) = oneshot::channel::<()>();
        let job = CancelScope::new()
            .name("almost")
            .register_in(&registry)
            .run(async move { finished.await.unwrap() });
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        let id = only_live(&registry).id;
        // The body is ready at the poll that follows the cancel: it finished
        // before it could see the cancellation.
        assert!(registry.cancel(id, CancelReason::Manual, "late").unwrap().is_requested());
        finish.send(()).unwrap();
        job.await.unwrap();
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.id, finished.status), (id, OperationStatus::Completed));
        assert!(finished.completed_despite_cancel);
        assert_eq!(finished.reason, Some(CancelReason::Manual));
    }

    async fn a_lazy_registered_scope_dropped_mid_run_leaves_as_cancelled() {
        let registry = Registry::new();
        let job = CancelScope::new()
            .name("dropped")
            .register_in(&registry)
            .run(pending::<()>())
            .boxed();
        let mut job = job;
        assert!(futures::poll!(job.as_mut()).is_pending());
        let id = only_live(&registry).id;
        drop(job);
        assert!(registry.get(id).is_none());
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.id, finished.status), (id, OperationStatus::Cancelled));
    }

    async fn a_scope_nested_in_a_lazy_registered_scope_lists_it_as_parent() {
        let registry = Registry::new();
        let inside = registry.clone();
        CancelScope::new()
            .name("outer")
            .register_in(&registry)
            .run(async move {
                CancelScope::new()
                    .name("inner")
                    .register_in(&inside)
                    .run(async {
                        let snapshot = inside.snapshot();
                        assert_eq!(snapshot.live, 2);
                        let outer = &snapshot.operations[0];
                        assert_eq!(outer.operation.name.as_deref(), Some("outer"));
                        assert_eq!(outer.children[0].operation.name.as_deref(), Some("inner"));
                        assert_eq!(
                            outer.children[0].operation.parent_id,
                            Some(outer.operation.id)
                        );
                    })
                    .await
            })
            .await
            .unwrap()
            .unwrap();
        let outer = registry.history(2, &Filter::new().name("outer").unwrap());
        assert_eq!(outer[0].status, OperationStatus::Completed);
    }

    async fn a_registry_cancel_from_another_thread_racing_the_pend_is_never_lost() {
        // The other thread finds the operation (making its state) and
        // cancels it while the scope starts and pends: every round ends
        // with that cancel, whatever the interleaving.
        let registry = Registry::new();
        for round in 0..100u32 {
            let canceller = {
                let registry = registry.clone();
                std::thread::spawn(move || loop {
                    if let Some(live) = registry.list(&Filter::new()).first() {
                        let message = format!("stop {round}");
                        let answer = registry.cancel(live.id, CancelReason::Manual, message);
                        assert!(answer.unwrap().is_requested());
                        return live.id;
                    }
                    std::thread::yield_now();
                })
            };
            let cancelled = CancelScope::new()
                .name("raced")
                .register_in(&registry)
                .run(pending::<()>())
                .await
                .unwrap_err();
            let id = canceller.join().unwrap();
            assert_eq!(cancelled.message(), Some(format!("stop {round}").as_str()));
            assert_eq!(cancelled.operation_id(), Some(id));
        }
        assert_eq!(registry.statistics().by_name["raced"].cancelled, 100);
        assert_eq!(registry.live_count(), 0);
    }

    async fn lazy_registered_scopes_run_one_after_another_with_fresh_ids_and_tokens() {
        // A thread reuses its registration, record and token: a cancel of
        // one operation never reaches the next.
        let registry = Registry::new();
        let mut ids = Vec::new();
        for round in 0..3 {
            let job = CancelScope::new()
                .name("round")
                .register_in(&registry)
                .run(pending::<()>());
            futures::pin_mut!(job);
            assert!(futures::poll!(job.as_mut()).is_pending());
            let id = only_live(&registry).id;
            assert!(!ids.contains(&id));
            ids.push(id);
            if round == 1 {
                assert!(registry.cancel(id, CancelReason::Manual, "one").unwrap().is_requested());
                let cancelled: Cancelled = job.await.unwrap_err();
                assert_eq!(cancelled.operation_id(), Some(id));
            } else {
                assert!(futures::poll!(job.as_mut()).is_pending());
            }
        }
        let statistics = registry.statistics();
        assert_eq!(statistics.by_name["round"].cancelled, 3);
        let cancelled_by_operator = registry
            .history(3, &Filter::new())
            .into_iter()
            .filter(|finished| finished.message.as_deref() == Some("one"))
            .count();
        assert_eq!(cancelled_by_operator, 1);
    }
}
