//! A task group's child makes no shared state unless something asks for
//! it (`cancelable/src/scope/lazy.rs`, `group/slot.rs`): a child nothing
//! outside reaches still sees its group's cancellation and deadlines,
//! knows its group as its parent, and a handle reaches the one scope its
//! child runs in, whenever and from wherever it asks.

use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::group::{ChildResults, TaskGroup};
use cancelable::{cancel_point, current_scope, CancelReason, Cancelled};
use cancelable_tests::{on_every_backend, sleep, yield_once};
use futures::future::{select, Either};
use futures::StreamExt;

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// The reasons of the cancelled outcomes `results` streamed, once its
/// group has ended.
async fn cancel_reasons(results: ChildResults) -> Vec<Option<CancelReason>> {
    results
        .map(|outcome| {
            outcome
                .error()
                .and_then(|error| error.cancelled())
                .map(|cancelled| cancelled.reason().clone())
        })
        .collect()
        .await
}

on_every_backend! {
    async fn children_nothing_reaches_end_with_their_group_s_cancellation() {
        let stream = Arc::new(Mutex::new(None));
        let keep = stream.clone();
        let group = TaskGroup::new().run(|group| async move {
            *keep.lock().unwrap() = Some(group.results());
            for _ in 0..3 {
                // The handle dropped at once: nothing outside reaches the child.
                drop(group.start_soon(async {
                    pending::<()>().await;
                    Ok::<_, Cancelled>(())
                }));
            }
            // The children start and pend.
            yield_once().await;
            group.cancel();
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        });
        // A plain timer, not a scope: it does not depend on the mechanism
        // under test.
        let outcome = match select(Box::pin(group), Box::pin(sleep(GENEROUS))).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(_) => panic!("the children never saw their group's cancellation"),
        };
        assert_eq!(
            outcome.unwrap_err().cancelled().map(Cancelled::reason),
            Some(&CancelReason::Manual)
        );
        let results = stream.lock().unwrap().take().expect("made in the body");
        let parent_manual = Some(CancelReason::Parent(Box::new(CancelReason::Manual)));
        assert_eq!(cancel_reasons(results).await, vec![parent_manual; 3]);
    }

    async fn a_child_nothing_reaches_sees_its_group_s_deadline_in_a_loop_that_never_awaits() {
        let stream = Arc::new(Mutex::new(None));
        let keep = stream.clone();
        let started = Instant::now();
        let outcome = TaskGroup::new()
            .timeout(Duration::from_millis(20))
            .run(|group| async move {
                *keep.lock().unwrap() = Some(group.results());
                drop(group.start_soon(async {
                    // Never awaits: only a checkpoint reading the clock
                    // can see the group's deadline (its timer cannot run
                    // on this thread meanwhile).
                    let started = Instant::now();
                    loop {
                        cancel_point!();
                        if started.elapsed() > GENEROUS {
                            return Ok::<_, Cancelled>(());
                        }
                    }
                }));
                Ok::<_, Cancelled>(())
            })
            .await;
        assert!(
            started.elapsed() < GENEROUS,
            "the child ran out its own bound: it never saw the deadline"
        );
        assert!(outcome.unwrap_err().is_timeout());
        let results = stream.lock().unwrap().take().expect("made in the body");
        let parent_timeout = Some(CancelReason::Parent(Box::new(CancelReason::Timeout)));
        assert_eq!(cancel_reasons(results).await, vec![parent_timeout]);
    }

    async fn a_child_nothing_reaches_knows_its_group_as_its_parent() {
        let seen = Arc::new(Mutex::new(None));
        let record = seen.clone();
        let group_id = TaskGroup::new()
            .run(|group| async move {
                drop(group.start_soon(async move {
                    // Asked only after a pend: the child started lazy.
                    yield_once().await;
                    let context = current_scope().expect("a child runs in a scope").context();
                    *record.lock().unwrap() = Some(context.parent_id);
                    Ok::<_, Cancelled>(())
                }));
                Ok::<_, Cancelled>(group.scope().id())
            })
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(Some(group_id)));
    }

    async fn a_handle_reaches_the_one_scope_its_child_runs_in() {
        TaskGroup::new()
            .run(|group| async move {
                // Asked before the child's first poll: the child adopts it.
                let early = group.start_soon(async {
                    Ok::<_, Cancelled>(current_scope().unwrap().id())
                });
                let scope = early.scope().expect("not started yet");
                let id = scope.id();
                assert_eq!(early.await.unwrap(), id);
                // Asked after it: the child, whose handle lives, made it.
                let late = group.start_soon(async {
                    yield_once().await;
                    yield_once().await;
                    Ok::<_, Cancelled>(current_scope().unwrap().id())
                });
                yield_once().await;
                let scope = late.scope().expect("running");
                assert_eq!(scope.context().parent_id, Some(group.scope().id()));
                let id = scope.id();
                assert_eq!(late.await.unwrap(), id);
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    async fn a_cancel_from_another_thread_racing_the_child_s_start_is_never_lost() {
        TaskGroup::new()
            .run(|group| async move {
                for _ in 0..50 {
                    let child = group.start_soon(async {
                        pending::<()>().await;
                        Ok::<_, Cancelled>(())
                    });
                    let (back, returned) = futures::channel::oneshot::channel();
                    // Cancelled on another thread while the group polls
                    // (and starts) the child on this one.
                    std::thread::spawn(move || {
                        assert!(child.cancel(), "the first cancel of a running child");
                        let _ = back.send(child);
                    });
                    let child = returned.await.expect("sent back");
                    let ended = match select(child, Box::pin(sleep(GENEROUS))).await {
                        Either::Left((ended, _)) => ended,
                        Either::Right(_) => panic!("the cancel was lost"),
                    };
                    let cancelled = ended.unwrap_err();
                    let cancelled = cancelled.cancelled().expect("cancelled, not failed");
                    assert_eq!(cancelled.reason(), &CancelReason::Manual);
                }
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }
}
