//! The child builder of task groups (`Group::child()`: `name`,
//! `in_scope`, `supervised`, then `start_soon` / `spawn`) on every
//! backend: the name reaches the child's scope whichever order it is
//! given in, a child's own scope bounds it, a child started with
//! readiness (`start`) runs named in its own scope, a child's own supervision
//! policy replaces the group's, spawned children run on the group's
//! executor, and the deprecated spawn variants still do what they did.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cancelable::group::{ChildState, Supervision, TaskGroup};
use cancelable::{current_scope, CancelScope, Cancelled};
use cancelable_tests::executor::smol_executor;
use cancelable_tests::{on_every_backend, sleep};

/// A failed attempt: its error names the attempt.
fn refused(attempt: u32) -> std::io::Error {
    std::io::Error::other(format!("connection refused (attempt {attempt})"))
}

/// The name of the current scope, from inside a child.
fn scope_name() -> Option<String> {
    current_scope().and_then(|scope| scope.context().name.map(|name| name.to_string()))
}

on_every_backend! {
    async fn a_named_child_runs_in_a_scope_of_that_name() {
        let (names, summary) = TaskGroup::new()
            .run(|group| async move {
                let fetch = group
                    .child()
                    .name("fetch")
                    .start_soon(async { Ok::<_, Cancelled>(scope_name()) });
                let plain = group.child().start_soon(async { Ok::<_, Cancelled>(scope_name()) });
                Ok::<_, Cancelled>((fetch.await.unwrap(), plain.await.unwrap()))
            })
            .with_summary()
            .await;
        assert_eq!(names.unwrap(), (Some("fetch".to_owned()), None));
        let named: Vec<_> = summary.children().iter().filter_map(|child| child.name()).collect();
        assert_eq!(named, ["fetch"]);
    }

    async fn a_builder_child_started_with_readiness_runs_named_in_its_own_scope() {
        let (result, summary) = TaskGroup::new()
            .run(|group| async move {
                // Ready with its scope's name, then bounded by its own
                // timeout: it times out, the group does not fail.
                let name = group
                    .child()
                    .name("listener")
                    .in_scope(CancelScope::new().timeout(Duration::from_millis(5)))
                    .start(|ready| async move {
                        ready.ready(scope_name());
                        std::future::pending::<Result<(), Cancelled>>().await
                    })
                    .await
                    .unwrap();
                // A failure before readiness goes to the starter.
                let error = group
                    .child()
                    .name("broken")
                    .start(|_ready: cancelable::group::Ready<()>| async { Err::<(), _>(refused(1)) })
                    .await
                    .unwrap_err();
                Ok::<_, Cancelled>((name, error.to_string()))
            })
            .with_summary()
            .await;
        let (name, error) = result.unwrap();
        assert_eq!(name.as_deref(), Some("listener"));
        assert!(error.contains("connection refused (attempt 1)"), "{error}");
        let listener = summary
            .children()
            .iter()
            .find(|child| child.name() == Some("listener"))
            .expect("the listener in the summary");
        assert_eq!(listener.state(), ChildState::TimedOut, "{listener:?}");
    }

    async fn the_name_holds_whichever_order_it_is_given_in_with_the_scope() {
        let (result, summary) = TaskGroup::new()
            .run(|group| async move {
                let before = group
                    .child()
                    .name("before")
                    .in_scope(CancelScope::new().timeout(Duration::from_millis(5)))
                    .start_soon(std::future::pending::<Result<(), Cancelled>>());
                let after = group
                    .child()
                    .in_scope(CancelScope::new().name("inner").timeout(Duration::from_millis(5)))
                    .name("after")
                    .start_soon(std::future::pending::<Result<(), Cancelled>>());
                // The child's own scope bounds it: its own timeout, a
                // cancellation rather than a failure.
                assert!(before.await.unwrap_err().cancelled().unwrap().is_timeout());
                assert!(after.await.unwrap_err().cancelled().unwrap().is_timeout());
                Ok::<_, Cancelled>(())
            })
            .with_summary()
            .await;
        result.unwrap();
        let mut late: Vec<_> = summary.in_state(ChildState::TimedOut).filter_map(|child| child.name()).collect();
        late.sort_unstable();
        assert_eq!(late, ["after", "before"]);
    }

    async fn a_childs_own_supervision_replaces_the_groups() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let error = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(5))
            .run(|group| async move {
                group
                    .child()
                    .name("flaky")
                    .supervised(Supervision::restart().max_restarts(1))
                    .start_soon(move |attempt| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async move { Err::<(), _>(refused(attempt)) }
                    });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        let failure = error.primary().unwrap();
        assert_eq!(failure.name(), Some("flaky"));
        assert_eq!(failure.error().restarts_exhausted().unwrap().restarts(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    async fn the_groups_supervision_is_read_back_for_a_child() {
        let error = TaskGroup::new()
            .supervise(Supervision::restart().max_restarts(2))
            .run(|group| async move {
                assert_eq!(group.supervision(), Supervision::restart().max_restarts(2));
                group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(|attempt| async move { Err::<(), _>(refused(attempt)) });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        let gave_up = error.primary().unwrap().error().restarts_exhausted().unwrap();
        assert_eq!(gave_up.restarts(), 2);
        assert_eq!(gave_up.last_error().to_string(), "task failed: connection refused (attempt 3)");
    }

    async fn spawned_builder_children_run_on_the_groups_executor() {
        let (executor, _threads) = smol_executor();
        let (values, summary) = TaskGroup::new()
            .on(&executor)
            .run(|group| async move {
                let named = group
                    .child()
                    .name("parallel")
                    .spawn(async {
                        sleep(Duration::from_millis(1)).await;
                        Ok::<_, Cancelled>(scope_name())
                    })
                    .unwrap();
                let mut restarted = group
                    .child()
                    .name("restarted")
                    .supervised(Supervision::restart().max_restarts(3))
                    .spawn(|attempt| async move {
                        if attempt < 3 {
                            return Err(refused(attempt));
                        }
                        Ok(attempt)
                    })
                    .unwrap();
                let attempt = (&mut restarted).await.unwrap();
                Ok::<_, Cancelled>((named.await.unwrap(), attempt, restarted.restarts()))
            })
            .with_summary()
            .await;
        assert_eq!(values.unwrap(), (Some("parallel".to_owned()), 3, 2));
        assert_eq!(summary.counts().ok, 2);
    }

    async fn a_closed_group_refuses_builder_children() {
        TaskGroup::new()
            .run(|group| async move {
                group.close();
                let refused = group
                    .child()
                    .name("late")
                    .start_soon(async { Ok::<_, Cancelled>(()) });
                assert!(matches!(refused.await, Err(cancelable::group::TaskError::NotStarted)));
                let spawned = group.child().spawn(async { Ok::<_, Cancelled>(()) });
                assert!(spawned.is_err());
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    #[allow(deprecated)]
    async fn the_deprecated_spawn_variants_forward_to_the_builder() {
        let (executor, _threads) = smol_executor();
        let values = TaskGroup::new()
            .on(&executor)
            .supervise(Supervision::restart().max_restarts(1))
            .run(|group| async move {
                let soon = group.start_soon_in(CancelScope::new().name("soon"), async {
                    Ok::<_, Cancelled>(scope_name())
                });
                let spawned = group
                    .spawn_in(CancelScope::new().name("spawned"), async {
                        Ok::<_, Cancelled>(scope_name())
                    })
                    .unwrap();
                let supervised = group.start_supervised(|attempt| async move {
                    if attempt == 1 {
                        return Err(refused(attempt));
                    }
                    Ok(attempt)
                });
                let supervised_in = group.start_supervised_in(CancelScope::new().name("s-in"), |attempt| async move {
                    Ok::<_, std::io::Error>((attempt, scope_name()))
                });
                let spawned_supervised = group
                    .spawn_supervised(|attempt| async move { Ok::<_, std::io::Error>(attempt) })
                    .unwrap();
                let spawned_supervised_in = group
                    .spawn_supervised_in(CancelScope::new().name("ss-in"), |attempt| async move {
                        Ok::<_, std::io::Error>(attempt)
                    })
                    .unwrap();
                Ok::<_, Cancelled>((
                    soon.await.unwrap(),
                    spawned.await.unwrap(),
                    supervised.await.unwrap(),
                    supervised_in.await.unwrap().0,
                    spawned_supervised.await.unwrap(),
                    spawned_supervised_in.await.unwrap(),
                ))
            })
            .await
            .unwrap();
        assert_eq!(
            values,
            (Some("soon".to_owned()), Some("spawned".to_owned()), 2, 1, 1, 1)
        );
    }
}
