//! Task groups: structured concurrency on every backend — children that
//! fail, panic, clean up in their grace period, nest, come by the
//! thousand, and nothing that outlives its group.

use std::future::pending;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cancelable::group::{FailurePolicy, GroupError, SpawnError, TaskError, TaskGroup};
use cancelable::{
    cancellable, checkpoint, current_scope, current_token, report_progress, CancelReason,
    CancelScope, Cancelled,
};
use cancelable_tests::{on_every_backend, sleep, yield_once, Live};
use futures::{FutureExt, StreamExt};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// A child that pends forever, counted in `live` while it exists.
async fn forever(live: Live) -> Result<(), Cancelled> {
    let _guard = live.enter();
    pending::<()>().await;
    Ok(())
}

/// A child that only ends through a checkpoint.
async fn until_cancelled() -> Result<(), Cancelled> {
    loop {
        checkpoint().await?;
        sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Debug)]
struct Missing(u32);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {} is missing", self.0)
    }
}

impl std::error::Error for Missing {}

on_every_backend! {
    async fn a_failing_child_cancels_siblings_pending_forever() {
        let live = Live::default();
        let children = live.clone();
        let started = Instant::now();
        let error = TaskGroup::new()
            .name("fan-out")
            .run(|group| async move {
                let a = group.start_soon(forever(children.clone()));
                let b = group.start_soon(until_cancelled());
                group.child().name("fetch 3").start_soon(async {
                    sleep(Duration::from_millis(5)).await;
                    Err::<(), _>(Missing(3))
                });
                // The siblings see the failure as their parent's cancellation.
                let a = a.await.unwrap_err();
                let reason = a.cancelled().expect("cancelled").reason().clone();
                assert_eq!(reason, CancelReason::Parent(Box::new(CancelReason::Manual)));
                let message = a.cancelled().unwrap().message().unwrap().to_owned();
                assert!(message.contains("fetch 3") && message.contains("item 3 is missing"), "{message}");
                assert!(b.await.unwrap_err().is_cancelled());
                checkpoint().await?;
                Ok::<_, Cancelled>("unreachable")
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < GENEROUS);
        assert_eq!(live.count(), 0, "a child outlived its group");
        assert!(!error.is_cancelled(), "the group's own failure is not an outside cancellation");
        assert_eq!(error.failures().len(), 1);
        let primary = error.primary().unwrap();
        assert_eq!(primary.name(), Some("fetch 3"));
        let TaskError::Failed(inner) = primary.error() else { panic!("{primary:?}") };
        assert_eq!(inner.downcast_ref::<Missing>().unwrap().0, 3);
        assert!(error.to_string().contains("item 3 is missing"), "{error}");
    }

    async fn every_failure_is_carried_first_one_primary() {
        let error = TaskGroup::new()
            .grace(Duration::from_secs(5))
            .run(|group| async move {
                group.child().name("first").start_soon(async {
                    Err::<(), _>(Missing(1))
                });
                // Fails while cleaning up after the first failure.
                group.child().name("second").start_soon(async {
                    match until_cancelled().await {
                        Err(_) => Err(Missing(2)),
                        Ok(()) => Ok(()),
                    }
                });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        let names: Vec<_> = error.failures().iter().map(|f| f.name().unwrap()).collect();
        // The second child's `Err` came after it saw the cancellation: it
        // counts as cancelled, not as a second failure.
        assert_eq!(names, ["first"]);
        assert_eq!(error.primary().unwrap().name(), Some("first"));
    }

    async fn the_group_waits_for_a_child_using_its_grace_to_clean_up() {
        let cleaned = Arc::new(AtomicBool::new(false));
        let seen = cleaned.clone();
        let started = Instant::now();
        let error = TaskGroup::new()
            .timeout(Duration::from_millis(20))
            .grace(Duration::from_secs(30))
            .run(|group| async move {
                group.start_soon(async move {
                    let cancelled = until_cancelled().await.unwrap_err();
                    assert!(cancelled.reason().is_from_parent());
                    assert!(cancelled.is_timeout());
                    // Cleanup that awaits, well past the group's timeout.
                    sleep(Duration::from_millis(50)).await;
                    seen.store(true, Ordering::SeqCst);
                    Err::<(), _>(cancelled)
                });
                // The body gets the grace period too: it leaves at a checkpoint.
                until_cancelled().await?;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(cleaned.load(Ordering::SeqCst), "the group returned before its child cleaned up");
        assert!(error.is_timeout());
        assert!(error.failures().is_empty());
        assert!(started.elapsed() >= Duration::from_millis(70));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn a_child_that_never_checks_is_dropped_when_the_grace_runs_out() {
        let live = Live::default();
        let children = live.clone();
        let started = Instant::now();
        let error = TaskGroup::new()
            .timeout(Duration::from_millis(10))
            .grace(Duration::from_millis(50))
            .run(|group| async move {
                group.start_soon(forever(children));
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(error.is_timeout());
        assert_eq!(live.count(), 0);
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn without_grace_children_are_dropped_at_once() {
        let live = Live::default();
        let children = live.clone();
        let error = TaskGroup::new()
            .timeout(Duration::from_millis(10))
            .run(|group| async move {
                for _ in 0..10 {
                    group.start_soon(forever(children.clone()));
                }
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(error.is_timeout());
        assert_eq!(error.cancelled().unwrap().reason(), &CancelReason::Timeout);
        assert_eq!(live.count(), 0);
    }

    async fn a_dropped_group_leaves_no_running_child() {
        let live = Live::default();
        let children = live.clone();
        let group = TaskGroup::new().run(|group| async move {
            for _ in 0..20 {
                group.start_soon(forever(children.clone()));
            }
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        });
        let mut group = Box::pin(group);
        // Let the children start.
        for _ in 0..3 {
            assert!(futures::poll!(group.as_mut()).is_pending());
            yield_once().await;
        }
        assert_eq!(live.count(), 20);
        drop(group);
        assert_eq!(live.count(), 0, "a child outlived its dropped group");
    }

    async fn children_started_in_a_burst_first_run_in_the_order_they_started() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = order.clone();
        TaskGroup::new()
            .run(|group| async move {
                for n in 0..50u32 {
                    let log = log.clone();
                    group.start_soon(async move {
                        log.lock().unwrap().push(n);
                        Ok::<_, Cancelled>(())
                    });
                }
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    async fn a_group_dropped_before_it_picks_up_its_children_drops_every_one() {
        // Children queued from outside the group's poll, never picked up:
        // dropping the group drops each of them (one at a time, however
        // many there are) and reports it cancelled.
        let live = Live::default();
        let outside = Arc::new(std::sync::Mutex::new(None));
        let leak = outside.clone();
        let group = TaskGroup::new().run(|group| async move {
            *leak.lock().unwrap() = Some(group.clone());
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        });
        let mut group = Box::pin(group);
        assert!(futures::poll!(group.as_mut()).is_pending());
        let handle = outside.lock().unwrap().take().expect("the body ran");
        let guards: Vec<_> = (0..100_000).map(|_| live.enter()).collect();
        let mut handles = Vec::new();
        for guard in guards {
            let child = handle.start_soon(async move {
                let _guard = guard;
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            });
            if handles.len() < 3 {
                handles.push(child);
            }
        }
        assert_eq!(live.count(), 100_000);
        drop(group);
        assert_eq!(live.count(), 0, "a queued child outlived its dropped group");
        for child in handles {
            assert!(child.await.unwrap_err().is_cancelled());
        }
    }

    async fn nested_groups_cancel_and_wait_all_the_way_down() {
        let live = Live::default();
        let children = live.clone();
        let outer = TaskGroup::new()
            .name("outer")
            .timeout(Duration::from_millis(20))
            .run(|group| async move {
                let outer_id = group.scope().id();
                let inner = group.clone();
                let live = children.clone();
                group.start_soon(async move {
                    let result = TaskGroup::new()
                        .name("inner")
                        .run(|nested| async move {
                            // The inner group is a child of the outer one's child.
                            let parent = nested.scope().context().parent_id.unwrap();
                            assert_ne!(parent, outer_id);
                            for _ in 0..5 {
                                nested.start_soon(forever(live.clone()));
                            }
                            // Children start siblings in the outer group.
                            inner.start_soon(forever(live.clone()));
                            nested.wait().await;
                            Ok::<_, Cancelled>(())
                        })
                        .await;
                    let error = result.unwrap_err();
                    assert!(error.is_timeout(), "{error:?}");
                    assert!(error.cancelled().unwrap().reason().is_from_parent());
                    Err::<(), _>(error)
                });
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await;
        let error = outer.unwrap_err();
        assert!(error.is_timeout());
        assert!(error.failures().is_empty(), "{error}");
        assert_eq!(live.count(), 0);
    }

    async fn a_child_panic_is_re_raised_after_the_others_ended() {
        let live = Live::default();
        let children = live.clone();
        let run = TaskGroup::new().run(|group| async move {
            group.start_soon(forever(children.clone()));
            group.start_soon(async move {
                let _guard = children.enter();
                // Cleanup on cancellation that takes a while.
                if until_cancelled().await.is_err() {
                    sleep(Duration::from_millis(1)).await;
                }
                Ok::<_, Cancelled>(())
            });
            let doomed = group.start_soon(async {
                yield_once().await;
                if true {
                    panic!("child blew up");
                }
                Ok::<(), Cancelled>(())
            });
            let error = doomed.await.unwrap_err();
            assert!(matches!(&error, TaskError::Panicked(message) if &**message == "child blew up"));
            Ok::<_, Cancelled>(())
        });
        let panic = AssertUnwindSafe(run).catch_unwind().await.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"child blew up"));
        assert_eq!(live.count(), 0, "the panic was re-raised before the others ended");
    }

    async fn a_panicking_body_cancels_the_children_then_panics() {
        let live = Live::default();
        let children = live.clone();
        let run = TaskGroup::new().run(|group| async move {
            group.start_soon(forever(children.clone()));
            yield_once().await;
            if true {
                panic!("body blew up");
            }
            Ok::<_, Cancelled>(())
        });
        let panic = AssertUnwindSafe(run).catch_unwind().await.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"body blew up"));
        assert_eq!(live.count(), 0);
    }

    async fn ten_thousand_children() {
        let done = Arc::new(AtomicUsize::new(0));
        let count = done.clone();
        let total = TaskGroup::new()
            .run(|group| async move {
                let mut results = group.results();
                for n in 0..10_000u64 {
                    let count = count.clone();
                    group.start_soon(async move {
                        yield_once().await;
                        checkpoint().await?;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Cancelled>(n)
                    });
                }
                assert_eq!(group.len(), 10_000);
                group.close();
                let mut seen = 0;
                while let Some(outcome) = results.next().await {
                    assert!(outcome.is_ok());
                    seen += 1;
                }
                assert_eq!(group.active(), 0);
                Ok::<_, Cancelled>(seen)
            })
            .await
            .unwrap();
        assert_eq!(total, 10_000);
        assert_eq!(done.load(Ordering::Relaxed), 10_000);
    }

    async fn ten_thousand_pending_children_cancelled_at_once() {
        let live = Live::default();
        let children = live.clone();
        let handle = TaskGroup::new();
        let scope = handle.handle();
        let run = handle.run(|group| async move {
            for _ in 0..10_000 {
                group.start_soon(forever(children.clone()));
            }
            yield_once().await;
            yield_once().await;
            assert_eq!(group.active(), 10_000);
            scope.cancel();
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        });
        let error = run.await.unwrap_err();
        assert_eq!(error.cancelled().unwrap().reason(), &CancelReason::Manual);
        assert_eq!(live.count(), 0);
    }

    async fn a_group_inside_a_cancellable_fn_with_timeout() {
        let live = Live::default();
        let started = Instant::now();
        let error = fan_out_with_timeout(live.clone()).await.unwrap_err();
        // The function's scope ends with its own reason (`Timeout`) after
        // the group inside it has ended — or, when a checkpoint in the group
        // enforced the deadline and everything ended within that one poll,
        // with the group's error, `Parent(Timeout)`: either way a timeout.
        assert!(error.is_timeout(), "{error}");
        assert_eq!(live.count(), 0);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn children_run_in_child_scopes_of_the_group() {
        TaskGroup::new()
            .name("parent")
            .run(|group| async move {
                let group_id = group.scope().id();
                assert_eq!(current_scope().unwrap().id(), group_id);
                let child = group.child().name("child").start_soon(async move {
                    let scope = current_scope().expect("a child runs in a scope");
                    assert_eq!(scope.context().parent_id, Some(group_id));
                    assert_eq!(scope.context().name.as_deref(), Some("child"));
                    assert_eq!(current_token().unwrap(), scope.cancel_token());
                    assert!(report_progress(0.5, "half way"));
                    Ok::<_, Cancelled>(scope.context().progress.unwrap().message)
                });
                assert_eq!(child.await.unwrap(), "half way");
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    async fn a_child_cancelled_on_its_own_is_not_a_failure() {
        TaskGroup::new()
            .grace(Duration::from_secs(30))
            .run(|group| async move {
                // Its own timeout drops it at once, grace or not.
                let timed_out = group
                    .child()
                    .in_scope(CancelScope::new().timeout(Duration::from_millis(5)))
                    .start_soon(pending::<Result<(), Cancelled>>());
                let cancelled = group.start_soon(pending::<Result<(), Cancelled>>());
                assert!(cancelled.cancel());
                let sibling = group.start_soon(async {
                    sleep(Duration::from_millis(20)).await;
                    Ok::<_, Cancelled>(7)
                });
                assert!(timed_out.await.unwrap_err().cancelled().unwrap().is_timeout());
                let manual = cancelled.await.unwrap_err();
                assert_eq!(manual.cancelled().unwrap().reason(), &CancelReason::Manual);
                assert_eq!(sibling.await.unwrap(), 7);
                assert!(!group.is_cancelled());
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    async fn collect_keeps_siblings_running_and_returns_every_failure() {
        let error = TaskGroup::new()
            .on_child_error(FailurePolicy::Collect)
            .run(|group| async move {
                group.start_soon(async { Err::<(), _>(Missing(1)) });
                let slow = group.start_soon(async {
                    sleep(Duration::from_millis(20)).await;
                    checkpoint().await?;
                    Ok::<_, Cancelled>("finished")
                });
                group.start_soon(async {
                    sleep(Duration::from_millis(5)).await;
                    Err::<(), _>(Missing(2))
                });
                assert_eq!(slow.await.unwrap(), "finished");
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        let messages: Vec<_> = error.failures().iter().map(|f| f.error().to_string()).collect();
        assert_eq!(messages, ["task failed: item 1 is missing", "task failed: item 2 is missing"]);
    }

    async fn ignore_leaves_failures_to_the_handles() {
        let value = TaskGroup::new()
            .on_child_error(FailurePolicy::Ignore)
            .run(|group| async move {
                let mut results = group.results();
                group.start_soon(async { Err::<(), _>(Missing(1)) });
                group.start_soon(async {
                    yield_once().await;
                    if true {
                        panic!("ignored");
                    }
                    Ok::<(), Cancelled>(())
                });
                group.close();
                let mut errors = Vec::new();
                while let Some(outcome) = results.next().await {
                    errors.push(outcome.error().unwrap().to_string());
                }
                Ok::<_, Cancelled>(errors)
            })
            .await
            .unwrap();
        assert_eq!(value, ["task failed: item 1 is missing", "task panicked: ignored"]);
    }

    async fn a_failing_body_cancels_the_children() {
        let live = Live::default();
        let children = live.clone();
        let error = TaskGroup::new()
            .run(|group| async move {
                group.start_soon(forever(children.clone()));
                yield_once().await;
                Err::<(), _>(Missing(9))
            })
            .await
            .unwrap_err();
        assert!(error.primary().unwrap().is_body());
        assert_eq!(error.to_string(), "task group failed: the group's body failed: item 9 is missing");
        assert_eq!(live.count(), 0);
    }

    async fn children_start_children_and_close_wait_ends_the_group() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = order.clone();
        TaskGroup::new()
            .run(|group| async move {
                let spawner = group.clone();
                let log2 = log.clone();
                group.start_soon(async move {
                    yield_once().await;
                    let log3 = log2.clone();
                    spawner.start_soon(async move {
                        sleep(Duration::from_millis(5)).await;
                        log3.lock().unwrap().push("grandchild");
                        Ok::<_, Cancelled>(())
                    });
                    log2.lock().unwrap().push("child");
                    Ok::<_, Cancelled>(())
                });
                yield_once().await;
                yield_once().await;
                group.close();
                group.wait().await;
                log.lock().unwrap().push("body after wait");
                let late = group.start_soon(async { Ok::<_, Cancelled>(()) });
                assert!(matches!(late.await, Err(TaskError::NotStarted)));
                assert_eq!(group.len(), 2);
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert_eq!(*order.lock().unwrap(), ["child", "grandchild", "body after wait"]);
    }

    async fn a_child_started_from_another_thread_is_picked_up() {
        let value = TaskGroup::new()
            .run(|group| async move {
                let remote = group.clone();
                let handle = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(10));
                    remote.start_soon(async { Ok::<_, Cancelled>(11) })
                })
                .join()
                .unwrap();
                Ok::<_, Cancelled>(handle.await.unwrap())
            })
            .await
            .unwrap();
        assert_eq!(value, 11);
    }

    async fn a_shielded_child_finishes_its_shield_when_the_group_is_cancelled() {
        let flushed = Arc::new(AtomicBool::new(false));
        let seen = flushed.clone();
        let error = TaskGroup::new()
            .timeout(Duration::from_millis(10))
            .run(|group| async move {
                group.start_soon(async move {
                    cancelable::shield(async {
                        sleep(Duration::from_millis(40)).await;
                        seen.store(true, Ordering::SeqCst);
                    })
                    .await;
                    Ok::<_, Cancelled>(())
                });
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(error.is_timeout());
        assert!(flushed.load(Ordering::SeqCst), "the group dropped a shielded child");
    }

    async fn the_group_scope_records_how_the_group_ended() {
        // Completed.
        let group = TaskGroup::new().name("fine");
        let scope = group.handle();
        group
            .run(|group| async move {
                group.start_soon(async { Ok::<_, Cancelled>(()) });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert_eq!(scope.status(), cancelable::OperationStatus::Completed);
        // Failed: a child failed.
        let group = TaskGroup::new();
        let scope = group.handle();
        group
            .run(|group| async move {
                group.start_soon(async { Err::<(), _>(Missing(0)) });
                until_cancelled().await?;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(scope.status(), cancelable::OperationStatus::Failed);
        // Cancelled from outside, through a token.
        let token = cancelable::CancellationToken::new();
        let group = TaskGroup::new().token(&token);
        let scope = group.handle();
        let remote = token.clone();
        let error = group
            .run(|group| async move {
                let child = group.start_soon(until_cancelled());
                remote.cancel_with(CancelReason::Manual, "shutting down");
                let seen = child.await.unwrap_err();
                assert!(seen.cancelled().unwrap().reason().is_from_parent());
                assert_eq!(seen.cancelled().unwrap().message(), Some("shutting down"));
                until_cancelled().await?;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(error.cancelled().unwrap().message(), Some("shutting down"));
        assert_eq!(scope.status(), cancelable::OperationStatus::Cancelled);
    }

    async fn handles_report_ids_and_whether_they_finished() {
        TaskGroup::new()
            .run(|group| async move {
                let quick = group.start_soon(async { Ok::<_, Cancelled>(1) });
                assert_eq!(quick.id(), Some(1));
                assert!(!quick.is_finished());
                let scope = quick.scope().expect("running");
                yield_once().await;
                assert!(quick.is_finished());
                assert_eq!(scope.context().parent_id, Some(group.scope().id()));
                assert_eq!(scope.status(), cancelable::OperationStatus::Completed);
                drop(scope);
                assert!(quick.scope().is_none(), "an ended child's scope is gone");
                assert!(!quick.cancel(), "an ended child cannot be cancelled");
                assert_eq!(quick.await.unwrap(), 1);
                group.close();
                assert!(group.is_closed());
                let refused = group.start_soon(async { Ok::<_, Cancelled>(2) });
                assert!(refused.is_finished());
                assert_eq!(refused.id(), None);
                assert!(matches!(
                    group.spawn(async { Ok::<_, Cancelled>(3) }),
                    Err(SpawnError::Closed | SpawnError::NoExecutor)
                ));
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    async fn spawn_without_an_executor_off_tokio_is_a_documented_error() {
        let on_tokio = tokio::runtime::Handle::try_current().is_ok();
        TaskGroup::new()
            .run(|group| async move {
                let spawned = group.spawn(async { Ok::<_, Cancelled>(1) });
                if on_tokio {
                    assert_eq!(spawned.unwrap().await.unwrap(), 1);
                } else {
                    let error = spawned.unwrap_err();
                    assert!(matches!(error, SpawnError::NoExecutor));
                    assert_eq!(
                        error.to_string(),
                        "no executor: call TaskGroup::on(&executor) or run on tokio (or use \
                         Group::start_soon, which needs none)"
                    );
                    assert_eq!(group.len(), 0);
                }
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }
}

#[cancellable(timeout = "20ms")]
async fn fan_out_with_timeout(live: Live) -> Result<(), GroupError> {
    TaskGroup::new()
        .run(|group| async move {
            for _ in 0..3 {
                group.start_soon(forever(live.clone()));
            }
            group.start_soon(until_cancelled());
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        })
        .await
}

/// Spawned children on a multi-thread tokio runtime and on a smol
/// executor with threads of its own.
mod spawned {
    use super::*;

    fn tokio_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    use cancelable_tests::executor::smol_executor;

    /// What every executor must show: a failing spawned child cancels its
    /// spawned siblings, a child in its grace period is waited for, and
    /// the group returns only after all of them ended.
    async fn failing_and_grace(group: TaskGroup, live: Live) {
        let children = live.clone();
        let cleaned = Arc::new(AtomicBool::new(false));
        let seen = cleaned.clone();
        let started = Instant::now();
        let error = group
            // Children that never reach a checkpoint are aborted after it.
            .grace(Duration::from_millis(300))
            .run(|group| async move {
                for _ in 0..4 {
                    group.spawn(forever(children.clone())).unwrap();
                }
                let live2 = children.clone();
                group
                    .spawn(async move {
                        let _guard = live2.enter();
                        let cancelled = until_cancelled().await.unwrap_err();
                        sleep(Duration::from_millis(30)).await;
                        seen.store(true, Ordering::SeqCst);
                        Err::<(), _>(cancelled)
                    })
                    .unwrap();
                group
                    .child()
                    .name("broken")
                    .spawn(async {
                        sleep(Duration::from_millis(10)).await;
                        Err::<(), _>(Missing(4))
                    })
                    .unwrap();
                until_cancelled().await?;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(cleaned.load(Ordering::SeqCst));
        assert_eq!(live.count(), 0);
        assert_eq!(error.primary().unwrap().name(), Some("broken"));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < GENEROUS);
    }

    /// Waits (boundedly) until `live` drops to zero.
    fn wait_for_zero(live: &Live) {
        let deadline = Instant::now() + GENEROUS;
        while live.count() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(live.count(), 0, "a spawned child outlived its group");
    }

    /// Waits (boundedly) until the runtime counts no task but the crate's
    /// deadline drivers (one per thread on which a child's grace was
    /// registered, alive as long as the runtime): a task whose future has
    /// ended is counted until the runtime has finished with it.
    fn wait_for_no_task(runtime: &tokio::runtime::Runtime) {
        let left = || {
            let drivers = cancelable::testing::deadline_driver_tasks(runtime.handle());
            runtime.metrics().num_alive_tasks().saturating_sub(drivers)
        };
        let deadline = Instant::now() + GENEROUS;
        while left() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(left(), 0, "tasks of the group left on the runtime");
    }

    /// Spawned children with a grace of their own, longer than their
    /// group's, end at the group's grace end — also those that saw the
    /// cancellation before the group did (the group's grace and its
    /// children's are one).
    async fn own_graces_end_with_the_groups(group: TaskGroup, live: Live) {
        let children = live.clone();
        let started = Instant::now();
        let group = group.grace(Duration::from_millis(100));
        let handle = group.handle();
        let error = group
            .run(|group| async move {
                for _ in 0..4 {
                    let live = children.clone();
                    group
                        .child()
                        .in_scope(CancelScope::new().grace(Duration::from_secs(60)))
                        .spawn(async move {
                            let _guard = live.enter();
                            let _ = until_cancelled().await;
                            // Cleans up for ever: only a grace end ends it.
                            pending::<Result<(), Cancelled>>().await
                        })
                        .unwrap();
                }
                sleep(Duration::from_millis(20)).await;
                handle.cancel();
                // Blocks the group's task a while (on purpose): the
                // children, on other threads, see the cancellation first.
                std::thread::sleep(Duration::from_millis(50));
                until_cancelled().await?;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(error.is_cancelled(), "{error}");
        assert_eq!(live.count(), 0, "a child outlived its group");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(
            started.elapsed() < GENEROUS,
            "the children's own graces ran"
        );
    }

    #[test]
    fn tokio_multi_thread_own_graces_end_with_the_groups() {
        cancelable_tests::with_watchdog("tokio own graces", || {
            let runtime = tokio_runtime();
            let live = Live::default();
            runtime.block_on(own_graces_end_with_the_groups(
                TaskGroup::new(),
                live.clone(),
            ));
            assert_eq!(live.count(), 0);
        });
    }

    #[test]
    fn smol_executor_own_graces_end_with_the_groups() {
        on_a_smol_executor("smol own graces", own_graces_end_with_the_groups);
    }

    /// Runs `test` (a group spawning on a smol executor with threads of
    /// its own, and the live count of its children) under `smol::block_on`,
    /// then checks that no child is left.
    fn on_a_smol_executor<F: std::future::Future<Output = ()>>(
        name: &str,
        test: impl FnOnce(TaskGroup, Live) -> F,
    ) {
        cancelable_tests::with_watchdog(name, || {
            let (executor, _threads) = smol_executor();
            let live = Live::default();
            smol::block_on(test(TaskGroup::new().on(&executor), live.clone()));
            assert_eq!(live.count(), 0);
        });
    }

    #[test]
    fn tokio_multi_thread_spawned_children_fail_and_clean_up() {
        cancelable_tests::with_watchdog("tokio spawned", || {
            let runtime = tokio_runtime();
            let live = Live::default();
            let children = live.clone();
            runtime.block_on(async move {
                failing_and_grace(TaskGroup::new(), children).await;
            });
            // The group returned after its children: none is left.
            assert_eq!(live.count(), 0);
            wait_for_no_task(&runtime);
        });
    }

    #[test]
    fn smol_executor_spawned_children_fail_and_clean_up() {
        on_a_smol_executor("smol spawned", failing_and_grace);
    }

    #[test]
    fn a_tokio_runtime_given_to_a_group_off_tokio() {
        cancelable_tests::with_watchdog("tokio given", || {
            let runtime = tokio_runtime();
            let live = Live::default();
            futures::executor::block_on(failing_and_grace(
                TaskGroup::new().on(&runtime),
                live.clone(),
            ));
            assert_eq!(live.count(), 0);
        });
    }

    #[test]
    fn a_dropped_group_aborts_its_spawned_children_on_tokio() {
        cancelable_tests::with_watchdog("tokio dropped", || {
            let runtime = tokio_runtime();
            let live = Live::default();
            let children = live.clone();
            let watched = live.clone();
            runtime.block_on(async move {
                let live = watched;
                let mut group = Box::pin(TaskGroup::new().run(|group| async move {
                    for _ in 0..50 {
                        group.spawn(forever(children.clone())).unwrap();
                    }
                    pending::<()>().await;
                    Ok::<_, Cancelled>(())
                }));
                assert!(futures::poll!(group.as_mut()).is_pending());
                let deadline = Instant::now() + GENEROUS;
                while live.count() < 50 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(live.count(), 50);
                assert_eq!(
                    tokio::runtime::Handle::current()
                        .metrics()
                        .num_alive_tasks(),
                    50
                );
                drop(group);
            });
            wait_for_zero(&live);
            wait_for_no_task(&runtime);
        });
    }

    #[test]
    fn a_dropped_group_aborts_its_spawned_children_on_smol() {
        cancelable_tests::with_watchdog("smol dropped", || {
            let (executor, _threads) = smol_executor();
            let live = Live::default();
            let children = live.clone();
            smol::block_on(async {
                let mut group = Box::pin(TaskGroup::new().on(&executor).run(|group| async move {
                    for _ in 0..50 {
                        group.spawn(forever(children.clone())).unwrap();
                    }
                    pending::<()>().await;
                    Ok::<_, Cancelled>(())
                }));
                assert!(futures::poll!(group.as_mut()).is_pending());
                let deadline = Instant::now() + GENEROUS;
                while live.count() < 50 && Instant::now() < deadline {
                    sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(live.count(), 50);
                drop(group);
            });
            wait_for_zero(&live);
        });
    }

    #[test]
    fn ten_thousand_spawned_children_on_tokio() {
        cancelable_tests::with_watchdog("tokio 10k", || {
            let runtime = tokio_runtime();
            let live = Live::default();
            let children = live.clone();
            let error = runtime.block_on(async move {
                TaskGroup::new()
                    .run(|group| async move {
                        for _ in 0..10_000 {
                            group.spawn(forever(children.clone())).unwrap();
                        }
                        sleep(Duration::from_millis(20)).await;
                        group.cancel();
                        pending::<()>().await;
                        Ok::<_, Cancelled>(())
                    })
                    .await
                    .unwrap_err()
            });
            assert_eq!(error.cancelled().unwrap().reason(), &CancelReason::Manual);
            assert_eq!(live.count(), 0);
            wait_for_no_task(&runtime);
        });
    }
}
