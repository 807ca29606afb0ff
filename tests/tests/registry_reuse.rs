//! The registry reuses what a finished operation leaves behind — its
//! record (kept per thread for the next registered scope) and its history
//! slot (overwritten by a newer operation) — without any of it showing:
//! an outcome future, a look-up by id, the history and the stuck flag each
//! see the operation they are about, and nothing of the one before.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cancelable::registry::{Filter, Registry, RegistryError};
use cancelable::{shield, CancelReason, CancelScope, OperationStatus};
use cancelable_tests::{on_every_backend, sleep, wait_until};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

on_every_backend! {
    async fn an_outcome_held_while_later_operations_run_reports_its_own_operation() {
        let registry = Registry::new();
        let inside = registry.clone();
        let scope = CancelScope::new()
            .name("first")
            .metadata("order", "1")
            .register_in(&registry);
        let id = scope.handle().id();
        // The body asks for its own cancellation and completes anyway.
        let outcome = scope
            .run(async move { inside.cancel(id, CancelReason::Manual, "stop").unwrap() })
            .await
            .unwrap()
            .outcome()
            .expect("it was running");
        // More registered operations on this thread, in this registry and
        // another: the first one's record is held by its outcome future.
        let other = Registry::new();
        for round in 0..20 {
            let registry = if round % 2 == 0 { &registry } else { &other };
            CancelScope::new()
                .name("later")
                .metadata("order", "2")
                .register_in(registry)
                .run(async {})
                .await
                .unwrap();
        }
        let finished = outcome.await;
        assert_eq!(finished.id, id);
        assert_eq!(finished.name.as_deref(), Some("first"));
        assert_eq!(finished.metadata, map(&[("order", "1")]));
        assert_eq!(finished.status, OperationStatus::Completed);
        assert!(finished.completed_despite_cancel);
        assert_eq!(finished.message.as_deref(), Some("stop"));
        let remembered = registry.finished(id).expect("in the history");
        assert_eq!(remembered.name.as_deref(), Some("first"));
        assert!(remembered.completed_despite_cancel);
    }

    async fn a_history_slot_taken_by_a_newer_operation_keeps_nothing_of_the_older() {
        let registry = Registry::builder().history_capacity(1).build().unwrap();
        let older = CancelScope::new()
            .name("older")
            .metadata("a", "1")
            .metadata("b", "2")
            .register_in(&registry);
        let older_id = older.handle().id();
        older.run(async {}).await.unwrap();
        assert_eq!(registry.finished(older_id).unwrap().metadata, map(&[("a", "1"), ("b", "2")]));

        let newer = CancelScope::new().metadata("c", "3").register_in(&registry);
        let newer_id = newer.handle().id();
        let cancelled = newer.run(async {
            cancelable::current_token().unwrap().cancel();
            sleep(Duration::from_secs(30)).await
        });
        assert!(cancelled.await.is_err());

        assert!(registry.finished(older_id).is_none(), "pushed out of a history of 1");
        assert_eq!(
            registry.cancel(older_id, CancelReason::Manual, "").unwrap_err(),
            RegistryError::NotFound { id: older_id }
        );
        let history = registry.history(10, &Filter::new());
        assert_eq!(history.len(), 1);
        let newest = &history[0];
        assert_eq!(newest.id, newer_id);
        assert_eq!(newest.name, None);
        assert_eq!(newest.metadata, map(&[("c", "3")]));
        assert_eq!(newest.status, OperationStatus::Cancelled);
        assert_eq!(newest.reason, Some(CancelReason::Manual));
        assert!(!newest.completed_despite_cancel);
        assert_eq!(registry.finished(newer_id).unwrap().id, newer_id);
    }

    async fn the_history_releases_what_a_finished_operation_captured() {
        // The history keeps a copy of what it shows, not the operation's
        // state: a handler's captures (here an `on_progress` callback's)
        // are released when the operation ends, not when a thousand newer
        // operations have pushed it out.
        let registry = Registry::new();
        let captured = Arc::new(());
        let held = captured.clone();
        let scope = CancelScope::new()
            .name("reporting")
            .on_progress(move |_| {
                let _ = &held;
            })
            .register_in(&registry);
        let id = scope.handle().id();
        scope
            .run(async { cancelable::report_progress(0.5, "halfway") })
            .await
            .unwrap();
        assert!(registry.finished(id).is_some());
        assert_eq!(Arc::strong_count(&captured), 1, "the history still holds the callback");
    }

    async fn operations_finishing_on_many_threads_leave_a_history_found_by_id() {
        // Four threads register and finish operations at once (each
        // reusing its records), while this task looks them up: the history
        // ends with exactly its capacity of newest operations, each found
        // by id, and the others are gone.
        let registry = Registry::builder().history_capacity(100).build().unwrap();
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for round in 0..500 {
                        let scope = CancelScope::new()
                            .name(if worker % 2 == 0 { "even" } else { "odd" })
                            .metadata("round", round.to_string())
                            .register_in(&registry);
                        ids.push(scope.handle().id());
                        futures::executor::block_on(scope.run(async {})).unwrap();
                    }
                    ids
                })
            })
            .collect();
        let mut looked_up = 0;
        while !workers.iter().all(|worker| worker.is_finished()) {
            for finished in registry.history(10, &Filter::new()) {
                if let Some(again) = registry.finished(finished.id) {
                    assert_eq!(again.id, finished.id);
                    assert_eq!(again.name, finished.name);
                    looked_up += 1;
                }
            }
            sleep(Duration::from_millis(1)).await;
        }
        let ids: Vec<Vec<u64>> = workers.into_iter().map(|worker| worker.join().unwrap()).collect();
        let history = registry.history(usize::MAX, &Filter::new());
        assert_eq!(history.len(), 100);
        for finished in &history {
            let again = registry.finished(finished.id).expect("each entry is found by id");
            assert_eq!(again.metadata, finished.metadata);
            assert_eq!(again.status, OperationStatus::Completed);
        }
        let remembered = ids
            .iter()
            .flatten()
            .filter(|id| registry.finished(**id).is_some())
            .count();
        assert_eq!(remembered, 100, "only the newest 100 are remembered");
        assert_eq!(registry.statistics().total.completed, 2_000);
        let _ = looked_up;
    }

    async fn metadata_given_twice_keeps_its_last_value_in_every_view() {
        let registry = Registry::new();
        let inside = registry.clone();
        let scope = CancelScope::new()
            .metadata("tenant", "a")
            .metadata("tenant", "b")
            .metadata("region", "eu")
            .register_in(&registry);
        let id = scope.handle().id();
        scope
            .run(async move {
                let live = inside.get(id).unwrap();
                assert_eq!(live.metadata, map(&[("tenant", "b"), ("region", "eu")]));
            })
            .await
            .unwrap();
        assert_eq!(
            registry.finished(id).unwrap().metadata,
            map(&[("tenant", "b"), ("region", "eu")])
        );
    }

    async fn a_reused_record_takes_the_stuck_threshold_of_its_new_registry() {
        // A first operation in a registry with a long threshold leaves its
        // record to this thread; the next one registers in a registry with
        // a short one and must be flagged stuck by that one.
        let patient = Registry::builder().stuck_after(Duration::from_secs(3600)).build().unwrap();
        CancelScope::new().register_in(&patient).run(async {}).await.unwrap();

        let strict = Registry::builder().stuck_after(Duration::from_millis(20)).build().unwrap();
        let scope = CancelScope::new().name("held").register_in(&strict);
        let id = scope.handle().id();
        let done = Arc::new(AtomicBool::new(false));
        let observer = {
            let strict = strict.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                wait_until(|| strict.get(id).is_some());
                let _ = strict.cancel(id, CancelReason::Manual, "").unwrap();
                wait_until(|| strict.get(id).is_some_and(|info| info.stuck));
                done.store(true, Ordering::SeqCst);
            })
        };
        let outcome = scope
            .run(shield(async move {
                while !done.load(Ordering::SeqCst) {
                    sleep(Duration::from_millis(2)).await;
                }
            }))
            .await;
        observer.join().unwrap();
        assert!(outcome.is_err());
        assert!(strict.get(id).is_none());
    }
}
