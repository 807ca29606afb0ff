//! The operations registry: live set, cancel by id and key, history,
//! statistics, cancellation lag, stuck-after-cancel, snapshot and metrics.

use std::collections::HashMap;
use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cancelable::registry::{
    self, CancelAnswer, Filter, Registry, RegistryError, COUNTED_NAMES, OTHER_NAMES,
};
use cancelable::{
    cancellable, checkpoint, current_scope, report_progress, shield, CancelReason, CancelScope,
    Cancelled, OperationStatus,
};
use cancelable_tests::{on_every_backend, sleep, wait_until};
use futures::FutureExt;

/// A registry with a short stuck threshold, for one test. Installs the
/// recorders first: a `tracing` callsite hit before the subscriber is
/// installed may keep its "nobody listens" verdict.
fn fresh() -> Registry {
    install_recorders();
    Registry::builder()
        .stuck_after(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// A registry whose stuck threshold no test here reaches: what it reports
/// of an operation cleaning up is not overtaken by "stuck".
fn patient() -> Registry {
    install_recorders();
    Registry::builder()
        .stuck_after(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Runs a registered scope named `name` whose body is a shielded loop;
/// another thread cancels it once the registry shows it shielded, and
/// takes what the registry shows once `seen` holds, which ends the loop.
/// Returns that view and the operation's id.
async fn shielded_then_cancelled(
    registry: &Registry,
    name: &'static str,
    seen: fn(&registry::OperationInfo) -> bool,
) -> (registry::OperationInfo, u64) {
    let scope = CancelScope::new().name(name).register_in(registry);
    let id = scope.handle().id();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let observer = {
        let registry = registry.clone();
        std::thread::spawn(move || {
            wait_until(|| registry.get(id).is_some_and(|info| info.shielded));
            let _ = registry.cancel(id, CancelReason::Manual, "").unwrap();
            wait_until(|| registry.get(id).is_some_and(|info| seen(&info)));
            let info = registry.get(id).unwrap();
            flag.store(true, Ordering::SeqCst);
            info
        })
    };
    let outcome = scope
        .run(shield(async move {
            while !done.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(2)).await;
            }
        }))
        .await;
    assert!(outcome.is_err());
    (observer.join().unwrap(), id)
}

on_every_backend! {
    async fn a_registered_scope_is_live_while_it_runs_and_leaves_when_done() {
        let registry = fresh();
        let inside = registry.clone();
        let scope = CancelScope::new().name("job").metadata("user", "ada").register_in(&registry);
        let id = scope.handle().id();
        assert!(registry.get(id).is_none(), "not live before it starts");
        scope
            .run(async move {
                let info = inside.get(id).expect("live while running");
                assert_eq!(info.status, OperationStatus::Running);
                assert_eq!(info.name.as_deref(), Some("job"));
                assert_eq!(info.metadata["user"], "ada");
                assert_eq!(inside.live_count(), 1);
            })
            .await
            .unwrap();
        assert!(registry.get(id).is_none());
        assert_eq!(registry.live_count(), 0);
        let history = registry.history(10, &Filter::new());
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, id);
        assert_eq!(history[0].status, OperationStatus::Completed);
    }

    async fn an_unregistered_scope_is_not_listed() {
        let registry = fresh();
        let inside = registry.clone();
        CancelScope::new()
            .run(async move { assert_eq!(inside.live_count(), 0) })
            .await
            .unwrap();
        assert!(registry.history(10, &Filter::new()).is_empty());
    }

    async fn a_scope_dropped_mid_flight_leaves_the_live_set_as_cancelled() {
        let registry = fresh();
        let scope = CancelScope::new().name("dropped").register_in(&registry);
        let id = scope.handle().id();
        let mut job = Box::pin(scope.run(pending::<()>()));
        assert!(futures::poll!(job.as_mut()).is_pending());
        assert!(registry.get(id).is_some());
        drop(job);
        assert!(registry.get(id).is_none());
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.id, finished.status), (id, OperationStatus::Cancelled));
        assert_eq!(registry.statistics().by_name["dropped"].cancelled, 1);
    }

    async fn a_panicking_body_leaves_the_live_set_as_failed() {
        let registry = fresh();
        let job = CancelScope::new()
            .name("panics")
            .register_in(&registry)
            .run(async { panic!("deliberate") });
        let outcome = std::panic::AssertUnwindSafe(job).catch_unwind().await;
        assert!(outcome.is_err());
        assert_eq!(registry.live_count(), 0);
        assert_eq!(registry.history(1, &Filter::new())[0].status, OperationStatus::Failed);
    }

    async fn unknown_ids_are_none_or_not_found() {
        let registry = fresh();
        assert!(registry.get(u64::MAX).is_none());
        assert_eq!(
            registry.cancel(u64::MAX, CancelReason::Manual, "x").unwrap_err(),
            RegistryError::NotFound { id: u64::MAX }
        );
        assert_eq!(
            registry.cancel_subtree(u64::MAX, CancelReason::Manual, "x"),
            Err(RegistryError::NotFound { id: u64::MAX })
        );
        let error = registry.cancel(7, CancelReason::Manual, "").unwrap_err();
        assert!(error.to_string().contains("id 7"), "{error}");
        assert!(registry.get_by_key("nobody").is_none());
        assert_eq!(
            registry.cancel_by_key("nobody", CancelReason::Manual, "").unwrap_err(),
            RegistryError::KeyNotFound { key: "nobody".into() }
        );
    }

    async fn cancelling_a_finished_operation_answers_how_it_ended() {
        let registry = fresh();
        let scope = CancelScope::new().register_in(&registry);
        let id = scope.handle().id();
        scope.run(async {}).await.unwrap();
        let answer = registry.cancel(id, CancelReason::Manual, "late").unwrap();
        assert!(
            matches!(&answer, CancelAnswer::Ended(finished) if finished.status == OperationStatus::Completed),
            "{answer:?}"
        );
        assert_eq!(registry.cancel_subtree(id, CancelReason::Manual, "late"), Ok(0));
    }

    async fn cancel_by_id_ends_the_scope_with_the_reason_and_message() {
        let registry = fresh();
        let scope = CancelScope::new().name("victim").register_in(&registry);
        let id = scope.handle().id();
        let job = scope.run(pending::<()>());
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        let answer = registry.cancel(id, CancelReason::Manual, "operator").unwrap();
        assert!(matches!(answer, CancelAnswer::Requested(_)), "{answer:?}");
        let again = registry.cancel(id, CancelReason::Timeout, "again").unwrap();
        assert!(matches!(again, CancelAnswer::AlreadyRequested(_)), "{again:?}");
        let info = registry.get(id).unwrap();
        assert_eq!(info.reason, Some(CancelReason::Manual));
        assert_eq!(info.message.as_deref(), Some("operator"));
        let cancelled = job.await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("operator"));
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!(finished.reason, Some(CancelReason::Manual));
        assert_eq!(finished.message.as_deref(), Some("operator"));
        assert!(finished.lag.is_some());
    }

    async fn keys_find_and_cancel_and_a_clash_names_the_holder() {
        let registry = fresh();
        let scope = CancelScope::new().name("nightly-sync").register_in(&registry).key("job-42").unwrap();
        let id = scope.handle().id();
        let job = scope.run(pending::<()>());
        futures::pin_mut!(job);
        assert!(futures::poll!(job.as_mut()).is_pending());
        assert_eq!(registry.get_by_key("job-42").unwrap().id, id);
        assert_eq!(registry.get(id).unwrap().key.as_deref(), Some("job-42"));

        let clash = CancelScope::new().register_in(&registry).key("job-42").unwrap_err();
        assert_eq!(
            clash,
            RegistryError::KeyInUse { key: "job-42".into(), holder: id, holder_name: Some("nightly-sync".into()) }
        );
        // The fields name the holder, for the operator; the message is
        // neutral, fit to reach an HTTP client when forwarded.
        let text = clash.to_string();
        assert_eq!(text, "the key \"job-42\" is in use by an operation that has not finished");
        assert!(!text.contains(&id.to_string()) && !text.contains("nightly-sync") && !text.contains("cancel_by_key"), "{text}");
        // Another registry has its own keys.
        assert!(CancelScope::new().register_in(&fresh()).key("job-42").is_ok());

        assert!(registry.cancel_by_key("job-42", CancelReason::Manual, "stop").unwrap().is_requested());
        assert!(job.await.is_err());
        // Released at exit.
        assert!(registry.get_by_key("job-42").is_none());
        assert!(CancelScope::new().register_in(&registry).key("job-42").is_ok());
        assert_eq!(
            CancelScope::new().register_in(&registry).key("").unwrap_err(),
            RegistryError::EmptyKey
        );
    }

    async fn cancel_subtree_reaches_registered_scopes_inside_shields() {
        let registry = fresh();
        let inside = registry.clone();
        let outer = CancelScope::new().name("outer").register_in(&registry);
        let outer_id = outer.handle().id();
        let (shielded_seen, plain_seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (s, p) = (shielded_seen.clone(), plain_seen.clone());
        let reg = registry.clone();
        let outcome = outer
            .run(async move {
                let shielded = shield(async move {
                    CancelScope::new()
                        .name("shielded")
                        .register_in(&reg)
                        .run(async move {
                            let plain = CancelScope::new().name("plain").register_in(&reg).run(async move {
                                assert_eq!(inside.live_count(), 3);
                                assert_eq!(inside.cancel_subtree(outer_id, CancelReason::Manual, "all"), Ok(3));
                                pending::<()>().await
                            });
                            p.store(plain.await.is_err(), Ordering::SeqCst);
                            pending::<()>().await
                        })
                        .await
                });
                s.store(shielded.await.is_err(), Ordering::SeqCst);
            })
            .await;
        // The body finished in the poll that saw the cancellation: like
        // `tokio::time::timeout`, the scope returns what it finished with.
        assert!(outcome.is_ok());
        assert!(shielded_seen.load(Ordering::SeqCst) && plain_seen.load(Ordering::SeqCst));
        assert_eq!(registry.live_count(), 0);
        let cancelled = registry.history(10, &Filter::new().status(OperationStatus::Cancelled));
        let mut names: Vec<_> = cancelled.iter().map(|f| f.name.clone().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["plain", "shielded"]);
    }

    async fn cancel_all_and_list_filter_by_status_name_parent_and_age() {
        let registry = fresh();
        let inside = registry.clone();
        let outer = CancelScope::new().name("batch").register_in(&registry);
        let outer_id = outer.handle().id();
        let reg = registry.clone();
        let outcome = outer
            .run(async move {
                let children = futures::future::join_all((0..3).map(|n| {
                    CancelScope::new().name(format!("export-{n}")).register_in(&reg).run(pending::<()>())
                }));
                let check = async {
                    cancelable_tests::yield_once().await;
                    sleep(Duration::from_millis(5)).await;
                    let all = inside.list(&Filter::new());
                    assert_eq!(all.len(), 4);
                    assert_eq!(inside.list(&Filter::new().name("export-*").unwrap()).len(), 3);
                    assert_eq!(inside.list(&Filter::new().name("export-[01]").unwrap()).len(), 2);
                    assert_eq!(inside.list(&Filter::new().parent(outer_id)).len(), 3);
                    assert_eq!(inside.list(&Filter::new().status(OperationStatus::Completed)).len(), 0);
                    assert_eq!(inside.list(&Filter::new().older_than(Duration::from_millis(1))).len(), 4);
                    assert_eq!(inside.list(&Filter::new().older_than(Duration::from_secs(3600))).len(), 0);
                    let error = Filter::new().name("export-[").unwrap_err();
                    assert!(error.to_string().contains("never closed"), "{error}");
                    assert!(matches!(error, RegistryError::BadPattern(_)));
                    let exports = Filter::new().name("export-?").unwrap();
                    assert_eq!(inside.cancel_all(&exports, CancelReason::Manual, "shutdown"), 3);
                    assert_eq!(inside.cancel_all(&exports, CancelReason::Manual, "again"), 0);
                };
                let (results, ()) = futures::join!(children, check);
                assert!(results.iter().all(Result::is_err));
            })
            .await;
        assert!(outcome.is_ok());
        let cancelled = registry.history(10, &Filter::new().status(OperationStatus::Cancelled));
        assert_eq!(cancelled.len(), 3);
        assert!(cancelled.iter().all(|f| f.message.as_deref() == Some("shutdown") && f.parent_id == Some(outer_id)));
    }

    async fn history_is_bounded_newest_first_and_cleaned_up() {
        install_recorders();
        assert_eq!(Registry::builder().history_capacity(0).build().err(), Some(RegistryError::ZeroCapacity));
        assert_eq!(Registry::builder().stuck_after(Duration::ZERO).build().err(), Some(RegistryError::ZeroStuckThreshold));
        let registry = Registry::builder().history_capacity(3).build().unwrap();
        for n in 0..5 {
            CancelScope::new().name(format!("op-{n}")).register_in(&registry).run(async {}).await.unwrap();
        }
        let names: Vec<_> = registry.history(10, &Filter::new()).into_iter().map(|f| f.name.unwrap()).collect();
        assert_eq!(names, ["op-4", "op-3", "op-2"]);
        assert_eq!(registry.history(1, &Filter::new()).len(), 1);
        assert_eq!(registry.history(10, &Filter::new().name("op-3").unwrap()).len(), 1);
        assert_eq!(registry.cleanup(Duration::from_secs(3600)), 0);
        sleep(Duration::from_millis(5)).await;
        assert_eq!(registry.cleanup(Duration::from_millis(1)), 3);
        assert!(registry.history(10, &Filter::new()).is_empty());
        // Statistics outlive the history.
        assert_eq!(registry.statistics().total.completed, 5);
    }

    async fn statistics_and_metrics_count_a_bounded_number_of_names() {
        // Names from outside (a request path, a user id) must not grow the
        // registry's statistics or the metrics' label set without bound.
        let registry = fresh();
        let prefix = format!("bounded-{:p}", &registry);
        let long = "n".repeat(4 * 1024);
        for n in 0..1_500 {
            CancelScope::new()
                .name(format!("{prefix}-{n}-{long}"))
                .register_in(&registry)
                .run(async {})
                .await
                .unwrap();
        }
        let statistics = registry.statistics();
        assert_eq!(statistics.total.completed, 1_500);
        assert_eq!(statistics.by_name.len(), COUNTED_NAMES + 1);
        assert_eq!(statistics.by_name[OTHER_NAMES].completed, 500);
        assert!(statistics.by_name.keys().all(|name| name.len() <= 1024));
        let labels: Vec<String> = operation_labels().into_iter().filter(|label| label.starts_with(&prefix)).collect();
        assert_eq!(labels.len(), COUNTED_NAMES);
        assert!(labels.iter().all(|label| label.len() <= 1024));
    }

    async fn statistics_count_by_status_with_duration_percentiles() {
        let registry = fresh();
        for _ in 0..4 {
            CancelScope::new()
                .name("fetch")
                .register_in(&registry)
                .run(sleep(Duration::from_millis(2)))
                .await
                .unwrap();
        }
        let failed: Result<(), Cancelled> = CancelScope::new()
            .name("fetch")
            .register_in(&registry)
            .try_run(async { Err(Cancelled::new(CancelReason::Manual)) })
            .await;
        assert!(failed.is_err());
        let _ = CancelScope::new()
            .name("slow")
            .timeout(Duration::from_millis(1))
            .register_in(&registry)
            .run(pending::<()>())
            .await;
        let statistics = registry.statistics();
        let fetch = &statistics.by_name["fetch"];
        assert_eq!((fetch.completed, fetch.failed, fetch.cancelled, fetch.running), (4, 1, 0, 0));
        assert_eq!(fetch.durations.count(), 5);
        assert!(fetch.durations.percentile(0.5).unwrap() >= Duration::from_millis(1));
        assert!(fetch.durations.mean().unwrap() >= Duration::from_millis(1));
        assert_eq!(statistics.by_name["slow"].cancelled, 1);
        assert_eq!(statistics.by_name["slow"].lag.count(), 1);
        assert_eq!(statistics.total.finished(), 6);
    }

    async fn cancellation_lag_is_measured_from_the_request_to_the_exit() {
        let registry = fresh();
        let scope = CancelScope::new().name("lagging").register_in(&registry);
        let token = scope.handle().cancel_token();
        let outcome = scope
            .run(async move {
                shield(async move {
                    token.cancel();
                    // The exit waits for the shield: 20 ms of lag at least.
                    sleep(Duration::from_millis(20)).await;
                })
                .await;
            })
            .await;
        assert!(outcome.is_err());
        let lag = &registry.statistics().by_name["lagging"].lag;
        assert_eq!(lag.count(), 1);
        assert!(lag.min().unwrap() >= Duration::from_millis(19), "{lag:?}");
        assert!(lag.max().unwrap() < Duration::from_secs(20), "{lag:?}");
        assert_eq!(registry.history(1, &Filter::new())[0].lag, lag.max());
    }

    async fn a_cancelled_operation_held_open_is_flagged_stuck_once() {
        let registry = fresh();
        let scope = CancelScope::new().name("stubborn").register_in(&registry);
        let id = scope.handle().id();
        let released = Arc::new(AtomicBool::new(false));
        let release = released.clone();
        let observer = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                wait_until(|| registry.get(id).is_some());
                assert!(!registry.get(id).unwrap().stuck);
                let _ = registry.cancel(id, CancelReason::Manual, "stop").unwrap();
                wait_until(|| registry.get(id).is_some_and(|info| info.stuck));
                let snapshot = registry.snapshot();
                release.store(true, Ordering::SeqCst);
                snapshot
            })
        };
        let outcome = scope
            .run(async move {
                // Ignores the cancellation: keeps polling its checkpoints
                // (without yielding once cancelled) until released.
                // Never pends (a checkpoint's periodic yield is skipped), so
                // the scope cannot end before the body does.
                let mut seen = 0u64;
                while !released.load(Ordering::SeqCst) {
                    if let Some(Err(_)) = checkpoint().now_or_never() {
                        seen += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                seen
            })
            .await;
        let seen = outcome.expect("the body finished before the scope saw the cancel again");
        let snapshot = observer.join().unwrap();
        let node = snapshot.find(id).expect("in the snapshot");
        assert!(node.operation.stuck);
        assert!(node.operation.cancelled_for.unwrap() >= Duration::from_millis(50));
        assert!(node.operation.checkpoints_since_cancel >= 1 && node.operation.checkpoints_since_cancel <= seen);
        assert_eq!(snapshot.stuck, 1);
        let warnings = stuck_warnings(id);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("stubborn") && warnings[0].contains("checkpoints_since_cancel"), "{warnings:?}");
        assert_eq!(registry.statistics().by_name["stubborn"].lag.count(), 1);
    }

    async fn a_shield_holding_a_cancelled_scope_shows_as_shielded_and_stuck() {
        let registry = fresh();
        let (info, id) = shielded_then_cancelled(&registry, "cleanup", |info| info.stuck).await;
        assert!(info.shielded && info.stuck);
        assert_eq!(info.checkpoints_since_cancel, 0);
        assert!(registry.get(id).is_none());
    }

    async fn the_snapshot_is_a_tree_with_deadline_progress_and_serialises() {
        let registry = fresh();
        let inside = registry.clone();
        let reg = registry.clone();
        CancelScope::new()
            .name("import")
            .timeout(Duration::from_secs(60))
            .register_in(&registry)
            .run(async move {
                report_progress(0.5, "halfway");
                CancelScope::new()
                    .run(async move {
                        // An unregistered scope in between is skipped.
                        CancelScope::new()
                            .name("parse")
                            .register_in(&reg)
                            .key("parse-1")
                            .unwrap()
                            .run(async move {
                                let snapshot = inside.snapshot();
                                assert_eq!((snapshot.live, snapshot.stuck), (2, 0));
                                assert_eq!(snapshot.operations.len(), 1);
                                let import = &snapshot.operations[0];
                                let remaining = import.operation.remaining.unwrap();
                                assert!(remaining > Duration::from_secs(30) && remaining <= Duration::from_secs(60));
                                assert_eq!(import.operation.progress.as_ref().unwrap().message, "halfway");
                                assert_eq!(import.children.len(), 1);
                                let parse = &import.children[0].operation;
                                assert_eq!(parse.name.as_deref(), Some("parse"));
                                // No deadline of its own: the one it runs
                                // under, inherited from `import`.
                                let inherited = parse.remaining.expect("the enclosing deadline");
                                assert!(inherited > Duration::from_secs(30) && inherited <= remaining);
                                assert!(parse.deadline_inherited && !import.operation.deadline_inherited);
                                let json = serde_json::to_value(&snapshot).unwrap();
                                let first = &json["operations"][0];
                                assert_eq!(first["name"], "import");
                                assert_eq!(first["progress"]["fraction"], 0.5);
                                assert_eq!(first["children"][0]["key"], "parse-1");
                                assert_eq!(first["children"][0]["deadline_inherited"], true);
                                assert_eq!(first["stuck"], false);
                                let statistics = serde_json::to_value(inside.statistics()).unwrap();
                                assert_eq!(statistics["by_name"]["import"]["running"], 1);
                            })
                            .await
                    })
                    .await
            })
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn the_snapshot_nests_a_child_whose_id_is_older_than_its_parents() {
        let registry = fresh();
        let inside = registry.clone();
        // The child's id is taken before the parent's: the child comes
        // first in id order, yet belongs under its parent.
        let child = CancelScope::new().name("child").register_in(&registry);
        let child_id = child.handle().id();
        let parent = CancelScope::new().name("parent").register_in(&registry);
        let parent_id = parent.handle().id();
        assert!(child_id < parent_id);
        let outer = CancelScope::new().name("outer").register_in(&registry);
        let outer_id = outer.handle().id();
        outer
            .run(async move {
                parent
                    .run(async move {
                        child
                            .run(async move {
                                let snapshot = inside.snapshot();
                                assert_eq!((snapshot.live, snapshot.operations.len()), (3, 1));
                                let outer = &snapshot.operations[0];
                                assert_eq!(outer.operation.id, outer_id);
                                assert_eq!(outer.children.len(), 1);
                                let parent = &outer.children[0];
                                assert_eq!(parent.operation.id, parent_id);
                                assert_eq!(parent.operation.parent_id, Some(outer_id));
                                assert_eq!(parent.children.len(), 1);
                                let child = &parent.children[0];
                                assert_eq!(child.operation.id, child_id);
                                assert_eq!(child.operation.name.as_deref(), Some("child"));
                                assert!(child.children.is_empty());
                                let depth_first: Vec<u64> =
                                    snapshot.iter().map(|node| node.operation.id).collect();
                                assert_eq!(depth_first, [outer_id, parent_id, child_id]);
                            })
                            .await
                    })
                    .await
            })
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn cancellable_register_true_joins_the_global_registry() {
        install_recorders();
        let inside_id = registered_job().await.unwrap();
        assert!(registry::global().get(inside_id).is_none());
        let finished = registry::global().history(1000, &Filter::new().name("registered_job").unwrap());
        assert!(finished.iter().any(|f| f.id == inside_id));
    }

    async fn on_start_sees_the_running_operation() {
        install_recorders();
        let seen = Arc::new(Mutex::new(None));
        let record = seen.clone();
        CancelScope::new()
            .name("starting")
            .on_start(move |context| *record.lock().unwrap() = Some((context.status, context.name.clone())))
            .on_start(|_| panic!("contained"))
            .run(async {})
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), Some((OperationStatus::Running, Some("starting".into()))));
    }

    async fn on_error_receives_the_error_text_kept_in_the_context_and_the_history() {
        let registry = fresh();
        let seen = Arc::new(Mutex::new(None));
        let record = seen.clone();
        let scope = CancelScope::new()
            .name("upload")
            .register_in(&registry)
            .on_error(move |context| *record.lock().unwrap() = Some(context.error.clone()));
        let handle = scope.handle();
        let outcome: Result<(), BoxError> = scope
            .try_run(async { Err(std::io::Error::other("disk full").into()) })
            .keep_error_text()
            .await;
        assert!(outcome.is_err());
        assert_eq!(*seen.lock().unwrap(), Some(Some("disk full".to_owned())));
        assert_eq!(handle.context().error.as_deref(), Some("disk full"));
        let finished = &registry.history(1, &Filter::new())[0];
        assert_eq!((finished.status, finished.error.as_deref()), (OperationStatus::Failed, Some("disk full")));
        // Without `keep_error_text`, no text is kept.
        let quiet = CancelScope::new();
        let quiet_handle = quiet.handle();
        let _: Result<(), BoxError> = quiet.try_run(async { Err("x".into()) }).await;
        assert_eq!(quiet_handle.context().error, None);
    }

    async fn progress_reports_carry_metadata_into_the_snapshot() {
        let registry = fresh();
        let inside = registry.clone();
        CancelScope::new()
            .register_in(&registry)
            .run(async move {
                assert!(cancelable::report_progress_with(0.25, "copying", [("file", "a.txt"), ("copied", "3")]));
                let info = &inside.list(&Filter::new())[0];
                let progress = info.progress.as_ref().unwrap();
                assert_eq!(progress.metadata["file"], "a.txt");
                assert_eq!(progress.metadata["copied"], "3");
                report_progress(0.5, "plain");
                assert!(inside.list(&Filter::new())[0].progress.as_ref().unwrap().metadata.is_empty());
            })
            .await
            .unwrap();
        assert!(!cancelable::report_progress_with(None, "outside", [("a", "b")]));
    }

    async fn metrics_count_registered_operations_by_name_and_reason() {
        let name = format!("metered-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let registry = fresh();
        CancelScope::new().name(name.clone()).register_in(&registry).run(async {}).await.unwrap();
        let _ = CancelScope::new()
            .name(name.clone())
            .timeout(Duration::from_millis(1))
            .register_in(&registry)
            .run(pending::<()>())
            .await;
        let failed: Result<(), Cancelled> = CancelScope::new()
            .name(name.clone())
            .register_in(&registry)
            .try_run(async { Err(Cancelled::new(CancelReason::Manual)) })
            .await;
        assert!(failed.is_err());
        // Unregistered scopes are not metered.
        CancelScope::new().name(name.clone()).run(async {}).await.unwrap();
        let metrics = metrics_of(&name);
        let get = |key: &str| metrics.get(key).cloned();
        assert_eq!(get("cancelable_operations_started_total{operation}"), Some(Metric::Counter(3)));
        assert_eq!(get("cancelable_operations_completed_total{operation}"), Some(Metric::Counter(1)));
        assert_eq!(get("cancelable_operations_failed_total{operation}"), Some(Metric::Counter(1)));
        assert_eq!(get("cancelable_operations_cancelled_total{operation,reason=timeout}"), Some(Metric::Counter(1)));
        assert_eq!(get("cancelable_operations_live{operation}"), Some(Metric::Gauge(0.0)));
        assert!(matches!(get("cancelable_operation_duration_seconds{operation}"), Some(Metric::Histogram(3))));
        assert!(matches!(get("cancelable_cancellation_lag_seconds{operation}"), Some(Metric::Histogram(1))));
    }

    async fn a_shielded_operation_shows_as_shielded_and_not_in_grace() {
        let registry = patient();
        let (info, _) = shielded_then_cancelled(&registry, "flush", |info| info.reason.is_some()).await;
        assert!(info.shielded, "{info:?}");
        assert!(!info.in_grace, "a shield is not a grace: {info:?}");
    }

    async fn a_group_child_in_the_groups_grace_and_the_scope_it_holds_show_in_grace_not_shielded() {
        let registry = patient();
        let outer = CancelScope::new().name("outer").register_in(&registry);
        let outer_id = outer.handle().id();
        let child = CancelScope::new().name("child").register_in(&registry);
        let child_id = child.handle().id();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let observer = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                wait_until(|| registry.get(child_id).is_some());
                let _ = registry.cancel(outer_id, CancelReason::Manual, "").unwrap();
                wait_until(|| registry.get(child_id).is_some_and(|info| info.reason.is_some()));
                let infos = (registry.get(outer_id).unwrap(), registry.get(child_id).unwrap());
                flag.store(true, Ordering::SeqCst);
                infos
            })
        };
        let outcome = outer
            .run(async move {
                cancelable::group::TaskGroup::new()
                    .grace(Duration::from_secs(30))
                    .run(|group| async move {
                        group.child().in_scope(child).start_soon(async move {
                            let seen = cancelable::cancelled().await;
                            // Cleanup, in the group's grace: it takes real
                            // time (a timer the group cannot run down within
                            // one poll), so the scope around sees its
                            // cancellation while the group holds it.
                            sleep(Duration::from_millis(2)).await;
                            while !done.load(Ordering::SeqCst) {
                                sleep(Duration::from_millis(2)).await;
                            }
                            Err::<(), _>(seen)
                        });
                        Ok::<_, Cancelled>(())
                    })
                    .await
            })
            .await;
        assert!(outcome.is_err(), "the scope the group was in ended {outcome:?}");
        let (outer, child) = observer.join().unwrap();
        assert!(child.in_grace && !child.shielded, "the child: {child:?}");
        assert!(outer.in_grace && !outer.shielded, "the scope the group holds: {outer:?}");
    }
}

#[cancellable(register = true)]
async fn registered_job() -> Result<u64, Cancelled> {
    let id = current_scope().unwrap().id();
    assert_eq!(
        registry::global().get(id).unwrap().name.as_deref(),
        Some("registered_job")
    );
    Ok(id)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

// ---- recorders: one tracing subscriber and one metrics recorder per binary

/// Every `tracing` warning seen, as text.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Warnings;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            if fields.0.contains("stuck after cancel") {
                // A slow log sink: widens the window in which a stuck flag
                // could be visible before its warning is written.
                std::thread::sleep(Duration::from_millis(30));
            }
            WARNINGS.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn stuck_warnings(id: u64) -> Vec<String> {
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("stuck after cancel") && line.contains(&format!(" id={id} ")))
        .cloned()
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
enum Metric {
    Counter(u64),
    Gauge(f64),
    Histogram(usize),
}

static SNAPSHOTTER: OnceLock<metrics_util::debugging::Snapshotter> = OnceLock::new();
/// What the recorder held, summed over every snapshot (a snapshot drains it).
static METRICS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// A metric's name, its labels and its value.
type Recorded = (String, Vec<(String, String)>, Metric);

fn install_recorders() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Warnings).expect("no other subscriber");
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        SNAPSHOTTER.set(recorder.snapshotter()).ok();
        metrics::set_global_recorder(recorder).expect("no other recorder");
    });
}

/// Every `operation` label the recorder has seen.
fn operation_labels() -> std::collections::BTreeSet<String> {
    let mut all = METRICS.lock().unwrap();
    drain_recorder(&mut all);
    all.iter()
        .flat_map(|(_, labels, _)| labels.iter())
        .filter(|(key, _)| key == "operation")
        .map(|(_, value)| value.clone())
        .collect()
}

/// Moves what the recorder holds into `all`.
fn drain_recorder(all: &mut Vec<Recorded>) {
    use metrics_util::debugging::DebugValue;
    for (key, _, _, value) in SNAPSHOTTER.get().unwrap().snapshot().into_vec() {
        let labels = key
            .key()
            .labels()
            .map(|label| (label.key().to_owned(), label.value().to_owned()))
            .collect();
        let metric = match value {
            DebugValue::Counter(n) => Metric::Counter(n),
            DebugValue::Gauge(value) => Metric::Gauge(value.into_inner()),
            DebugValue::Histogram(values) => Metric::Histogram(values.len()),
        };
        all.push((key.key().name().to_owned(), labels, metric));
    }
}

/// The metrics of operation `name`, keyed `metric{label,label=value}`.
fn metrics_of(name: &str) -> HashMap<String, Metric> {
    let mut all = METRICS.lock().unwrap();
    drain_recorder(&mut all);
    let mut mine: HashMap<String, Metric> = HashMap::new();
    for (metric, labels, value) in all.iter() {
        if !labels
            .iter()
            .any(|(key, value)| key == "operation" && value == name)
        {
            continue;
        }
        let shown: Vec<String> = labels
            .iter()
            .map(|(key, value)| {
                if key == "operation" {
                    key.clone()
                } else {
                    format!("{key}={value}")
                }
            })
            .collect();
        let key = format!("{metric}{{{}}}", shown.join(","));
        let merged = match (mine.remove(&key), value.clone()) {
            (None, value) => value,
            (Some(Metric::Counter(a)), Metric::Counter(b)) => Metric::Counter(a + b),
            (Some(Metric::Gauge(a)), Metric::Gauge(b)) => Metric::Gauge(a + b),
            (Some(Metric::Histogram(a)), Metric::Histogram(b)) => Metric::Histogram(a + b),
            (Some(_), value) => value,
        };
        mine.insert(key, merged);
    }
    mine
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
