//! Supervised children of task groups (`TaskGroup::supervise`,
//! `group.child().supervised(..)`, `start_soon` / `spawn`) on every backend:
//! restarts until success, each attempt in a fresh scope; a spent budget
//! fails the group with the restarts and cancels the siblings; panics
//! restart; a cancellation is never restarted, and a group cancelled
//! during a backoff ends promptly; spawned supervised children on tokio
//! multi-thread and a smol executor.

use std::future::pending;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::group::{FailurePolicy, Supervision, TaskError, TaskGroup};
use cancelable::{checkpoint, current_scope, Cancelled};
use cancelable_tests::{on_every_backend, sleep, Live};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// A sibling that only ends through a checkpoint, counted in `live`.
async fn until_cancelled(live: Live) -> Result<(), Cancelled> {
    let _guard = live.enter();
    loop {
        checkpoint().await?;
        sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Debug)]
struct Refused(u32);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection refused (attempt {})", self.0)
    }
}

impl std::error::Error for Refused {}

on_every_backend! {
    async fn a_supervised_child_restarts_in_fresh_scopes_until_it_succeeds() {
        let calls = Arc::new(AtomicU32::new(0));
        // (attempt scope id, its parent, its `attempt` metadata) per call.
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let (calls_in, scopes_in) = (calls.clone(), scopes.clone());
        let (value, restarts, child_scope) = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(5).backoff(Duration::from_millis(1)))
            .run(|group| async move {
                let mut worker = group
                    .child()
                    .name("worker")
                    .supervised(group.supervision())
                    .start_soon(move |_attempt| {
                        let call = calls_in.fetch_add(1, Ordering::SeqCst) + 1;
                        let scopes = scopes_in.clone();
                        async move {
                            let scope = current_scope().unwrap().context();
                            scopes.lock().unwrap().push((
                                scope.id,
                                scope.parent_id,
                                scope.name.clone(),
                                scope.metadata.get("attempt").cloned(),
                            ));
                            if call < 3 {
                                return Err(Refused(call));
                            }
                            Ok(call * 10)
                        }
                    });
                let child_scope = worker.scope().map(|scope| scope.id());
                let value = (&mut worker).await.unwrap();
                Ok::<_, Cancelled>((value, worker.restarts(), child_scope))
            })
            .await
            .unwrap();
        assert_eq!(value, 30);
        assert_eq!(restarts, 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let scopes = scopes.lock().unwrap();
        let ids: std::collections::HashSet<_> = scopes.iter().map(|s| s.0).collect();
        assert_eq!(ids.len(), 3, "each attempt has a fresh scope: {scopes:?}");
        for (at, (_, parent, name, attempt)) in scopes.iter().enumerate() {
            assert_eq!(*parent, child_scope, "attempts run inside the child's scope");
            assert_eq!(name.as_deref(), Some("worker"));
            assert_eq!(attempt.as_deref(), Some((at + 1).to_string().as_str()));
        }
    }

    async fn a_spent_budget_fails_the_group_with_the_restarts_and_cancels_siblings() {
        let live = Live::default();
        let siblings = live.clone();
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let started = Instant::now();
        let error = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(2).within(Duration::MAX))
            .run(|group| async move {
                let sibling = group.start_soon(until_cancelled(siblings.clone()));
                let spawner = group.clone();
                group.start_soon(async move {
                    // Started after the sibling, so that it is running.
                    sleep(Duration::from_millis(5)).await;
                    spawner
                        .child()
                        .name("db")
                        .supervised(spawner.supervision())
                        .start_soon(move |_attempt| {
                            let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
                            async move { Err::<(), _>(Refused(call)) }
                        });
                    Ok::<_, Cancelled>(())
                });
                let sibling = sibling.await;
                assert!(sibling.unwrap_err().is_cancelled());
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the first attempt and 2 restarts");
        assert_eq!(live.count(), 0);
        assert!(!error.is_cancelled(), "failed, not cancelled from outside");
        assert_eq!(error.failures().len(), 1);
        let failure = error.primary().unwrap();
        assert_eq!(failure.name(), Some("db"));
        let gave_up = failure.error().restarts_exhausted().expect("a RestartsExhausted");
        assert_eq!(gave_up.restarts(), 2);
        assert_eq!(
            gave_up.last_error().to_string(),
            "task failed: connection refused (attempt 3)"
        );
        assert_eq!(
            error.to_string(),
            "task group failed: task `db` failed: gave up after 2 restarts (at most 2 in all): \
             connection refused (attempt 3)"
        );
        assert!(started.elapsed() < GENEROUS);
    }

    async fn a_panicking_attempt_is_restarted_and_never_re_raised() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let (value, restarts) = TaskGroup::new()
            .run(|group| async move {
                let mut worker = group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(move |_attempt| {
                        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            if call == 1 {
                                panic!("attempt {call} crashed");
                            }
                            Ok::<_, Refused>(call)
                        }
                    });
                let value = (&mut worker).await.unwrap();
                Ok::<_, Cancelled>((value, worker.restarts()))
            })
            .await
            .unwrap();
        assert_eq!((value, restarts), (2, 1));

        // A factory that panics, and attempts that always panic: the budget
        // runs out and the group fails, without re-raising.
        let error = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(1))
            .run(|group| async move {
                let mut first = true;
                group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(move |_attempt| -> std::future::Ready<Result<(), Refused>> {
                        if std::mem::take(&mut first) {
                            panic!("the factory crashed");
                        }
                        panic!("the attempt crashed too")
                    });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        let gave_up = error.primary().unwrap().error().restarts_exhausted().unwrap();
        assert_eq!(gave_up.restarts(), 1);
        assert!(
            matches!(gave_up.last_error(), TaskError::Panicked(message) if &**message == "the attempt crashed too"),
            "{gave_up:?}"
        );
    }

    async fn a_cancelled_supervised_child_is_not_restarted() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let error = TaskGroup::new()
            .timeout(Duration::from_millis(20))
            .run(|group| async move {
                let worker = group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(move |_attempt| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async {
                            // Returns its cancellation as an `Err`.
                            loop {
                                checkpoint().await?;
                                sleep(Duration::from_millis(1)).await;
                            }
                            #[allow(unreachable_code)]
                            Ok::<(), Cancelled>(())
                        }
                    });
                let outcome = worker.await;
                assert!(outcome.unwrap_err().is_cancelled());
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert!(error.is_timeout());
        assert!(error.failures().is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Its own handle's cancel is not a failure either.
        let value = TaskGroup::new()
            .run(|group| async move {
                let worker = group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(|_attempt| pending::<Result<(), Cancelled>>());
                worker.cancel();
                let restarts = worker.restarts();
                assert!(worker.await.unwrap_err().is_cancelled());
                Ok::<_, Cancelled>(restarts)
            })
            .await
            .unwrap();
        assert_eq!(value, 0);
    }

    async fn a_group_cancelled_during_a_backoff_ends_promptly() {
        for grace in [None, Some(Duration::from_secs(3600))] {
            let started = Instant::now();
            let mut group = TaskGroup::new()
                .supervise(Supervision::restart().backoff(Duration::from_secs(3600)));
            if let Some(grace) = grace {
                group = group.grace(grace);
            }
            let error = group
                .run(|group| async move {
                    let worker =
                        group
                            .child()
                            .supervised(group.supervision())
                            .start_soon(|_attempt| async { Err::<(), _>(Refused(1)) });
                    // The attempt failed at once: the child is in its backoff.
                    sleep(Duration::from_millis(20)).await;
                    assert!(!worker.is_finished());
                    group.cancel();
                    let outcome = worker.await;
                    assert!(outcome.unwrap_err().is_cancelled());
                    checkpoint().await?;
                    Ok::<_, Cancelled>(())
                })
                .await
                .unwrap_err();
            assert!(error.is_cancelled(), "{error}");
            assert!(error.failures().is_empty(), "{error}");
            assert!(started.elapsed() < GENEROUS, "grace {grace:?}: {:?}", started.elapsed());
        }
    }

    async fn restarts_older_than_the_window_no_longer_count() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let (value, restarts) = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(1).within(Duration::from_millis(10)))
            .run(|group| async move {
                let mut worker = group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(move |_attempt| {
                        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            // Each attempt outlives the window before it fails.
                            sleep(Duration::from_millis(30)).await;
                            if call < 4 {
                                return Err(Refused(call));
                            }
                            Ok(call)
                        }
                    });
                let value = (&mut worker).await.unwrap();
                Ok::<_, Cancelled>((value, worker.restarts()))
            })
            .await
            .unwrap();
        assert_eq!((value, restarts), (4, 3));
    }

    async fn ignore_leaves_a_spent_budget_to_the_handle() {
        let value = TaskGroup::new()
            .on_child_error(FailurePolicy::Ignore)
            .supervise(Supervision::restart().max_restarts(0))
            .run(|group| async move {
                let worker = group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(|_attempt| async { Err::<(), _>(Refused(1)) });
                let fine = group.start_soon(async { Ok::<_, Cancelled>(7) });
                let error = worker.await.unwrap_err();
                assert_eq!(error.restarts_exhausted().unwrap().restarts(), 0);
                Ok::<_, Cancelled>(fine.await.unwrap())
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }

    /// The factory gets the attempt number (1, 2, ...), so a flaky step on
    /// one item retries that same item: the item is captured once, by the
    /// factory, and lent to each attempt.
    async fn the_factory_gets_the_attempt_number_and_retries_the_same_item() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let value = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(5).backoff(Duration::from_millis(1)))
            .run(|group| async move {
                let item = Arc::new(String::from("order-17"));
                let worker = group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(move |attempt: u32| {
                        let item = item.clone();
                        let record = record.clone();
                        async move {
                            record.lock().unwrap().push((attempt, item.to_string()));
                            if attempt < 3 {
                                return Err(Refused(attempt));
                            }
                            Ok(format!("{item} done on attempt {attempt}"))
                        }
                    });
                assert_eq!(worker.restarts(), 0);
                let mut worker = worker;
                let value = (&mut worker).await.unwrap();
                assert_eq!(worker.restarts(), 2);
                Ok::<_, Cancelled>(value)
            })
            .await
            .unwrap();
        assert_eq!(value, "order-17 done on attempt 3");
        let order = String::from("order-17");
        assert_eq!(
            *seen.lock().unwrap(),
            [(1, order.clone()), (2, order.clone()), (3, order)]
        );
    }
}

/// Supervised children spawned on a multi-thread tokio runtime and on a
/// smol executor with threads of its own.
mod spawned {
    use super::*;

    use cancelable_tests::executor::smol_executor;

    /// What every executor must show: a spawned supervised child restarts
    /// until it succeeds; one that spends its budget cancels its spawned
    /// siblings and fails the group.
    async fn restarts_and_gives_up(group: impl Fn() -> TaskGroup) {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let (value, restarts) = group()
            .run(|group| async move {
                let mut worker = group
                    .child()
                    .supervised(group.supervision())
                    .spawn(move |_attempt| {
                        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            if call < 3 {
                                panic!("attempt {call} crashed");
                            }
                            Ok::<_, Refused>(call)
                        }
                    })
                    .unwrap();
                let value = (&mut worker).await.unwrap();
                Ok::<_, Cancelled>((value, worker.restarts()))
            })
            .await
            .unwrap();
        assert_eq!((value, restarts), (3, 2));

        let live = Live::default();
        let siblings = live.clone();
        let error = group()
            .run(|group| async move {
                for _ in 0..3 {
                    group.spawn(until_cancelled(siblings.clone())).unwrap();
                }
                group
                    .child()
                    .name("flaky")
                    .supervised(group.supervision())
                    .spawn(|_attempt| async {
                        sleep(Duration::from_millis(2)).await;
                        Err::<(), _>(Refused(0))
                    })
                    .unwrap();
                pending::<()>().await;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(live.count(), 0, "a spawned sibling outlived its group");
        let failure = error.primary().unwrap();
        assert_eq!(failure.name(), Some("flaky"));
        assert_eq!(failure.error().restarts_exhausted().unwrap().restarts(), 3);
    }

    #[test]
    fn tokio_multi_thread_spawned_supervised_children() {
        cancelable_tests::with_watchdog("tokio spawned supervised", || {
            cancelable_tests::tokio_multi_thread(restarts_and_gives_up(TaskGroup::new));
        });
    }

    #[test]
    fn smol_executor_spawned_supervised_children() {
        cancelable_tests::with_watchdog("smol spawned supervised", || {
            let (executor, _threads) = smol_executor();
            smol::block_on(restarts_and_gives_up(|| TaskGroup::new().on(&executor)));
        });
    }
}
