//! Task-group tests ported from the libraries task groups follow: trio's
//! `_core/_tests/test_run.py` (nurseries, cancel scopes) and anyio's
//! `tests/test_taskgroups.py`, each on every backend — plus the
//! regressions they found (a child's own error lost to the group's
//! cancellation, a child's own grace overridden by the group's).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::group::{FailurePolicy, Ready, StartError, TaskError, TaskGroup, TaskHandle};
use cancelable::{checkpoint, shield, CancelReason, CancelScope, Cancelled, GraceOutcome};
use cancelable_tests::{drop_flag, on_every_backend, sleep};
use futures::FutureExt;

/// trio's `KeyError`-like failure.
#[derive(Debug)]
struct KeyError;

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyError")
    }
}

impl std::error::Error for KeyError {}

/// trio's `ValueError`-like failure.
#[derive(Debug)]
struct ValueError;

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueError")
    }
}

impl std::error::Error for ValueError {}

/// Handles a body hands out of the group, read once the group ended.
type Handles = Arc<Mutex<Vec<TaskHandle<()>>>>;

/// The error a finished child's handle resolves to.
fn ended_with(handle: TaskHandle<()>) -> TaskError {
    handle
        .now_or_never()
        .expect("the child ended with its group")
        .unwrap_err()
}

/// The failures' errors as text, in the order the group recorded them.
fn failure_texts(error: &cancelable::group::GroupError) -> Vec<String> {
    let mut texts: Vec<String> = error
        .failures()
        .iter()
        .map(|failure| match failure.error() {
            TaskError::Failed(inner) => inner.to_string(),
            other => panic!("not a failure of its own: {other:?}"),
        })
        .collect();
    texts.sort();
    texts
}

on_every_backend! {
    // trio `test_two_child_crashes`.
    async fn two_child_crashes_are_both_reported() {
        let handles = Handles::default();
        let out = handles.clone();
        let error = TaskGroup::new()
            .run(|group| async move {
                let mut out = out.lock().unwrap();
                out.push(group.start_soon(async { Err::<(), _>(KeyError) }));
                out.push(group.start_soon(async { Err::<(), _>(ValueError) }));
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(failure_texts(&error), ["KeyError", "ValueError"], "{error}");
        assert!(!error.is_cancelled(), "{error}");
        let mut handles = std::mem::take(&mut *handles.lock().unwrap()).into_iter();
        let first = ended_with(handles.next().unwrap());
        let second = ended_with(handles.next().unwrap());
        assert!(matches!(&first, TaskError::Failed(e) if e.is::<KeyError>()), "{first:?}");
        assert!(matches!(&second, TaskError::Failed(e) if e.is::<ValueError>()), "{second:?}");
    }

    // trio `test_main_and_task_both_crash`.
    async fn main_and_task_both_crash_are_both_reported() {
        let error = TaskGroup::new()
            .run(|group| async move {
                group.start_soon(async { Err::<(), _>(ValueError) });
                Err::<(), _>(KeyError)
            })
            .await
            .unwrap_err();
        assert_eq!(failure_texts(&error), ["KeyError", "ValueError"], "{error}");
    }

    // trio `test_cancel_scope_exceptiongroup_filtering`: a child started
    // into a cancelled group fails on its own before it sees anything.
    async fn a_child_failing_in_a_cancelled_group_is_collected() {
        let error = TaskGroup::new()
            .on_child_error(FailurePolicy::Collect)
            .run(|group| async move {
                group.cancel();
                group.start_soon(async { Err::<(), _>(KeyError) });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(failure_texts(&error), ["KeyError"], "{error}");
        assert!(error.is_cancelled(), "the group's own cancellation is there too: {error}");
    }

    // The rule's other side: an `Err` after the child saw the cancellation
    // (a checkpoint or cancellation-aware wait returned it) is the
    // cancellation, whatever the error's type.
    async fn an_error_after_the_child_saw_the_cancellation_is_not_a_failure() {
        let handles = Handles::default();
        let out = handles.clone();
        let error = TaskGroup::new()
            .grace(Duration::from_secs(5))
            .run(|group| async move {
                out.lock().unwrap().push(group.start_soon(async {
                    match cancelable::sleep(Duration::from_secs(60)).await {
                        Err(_) => Err(ValueError),
                        Ok(()) => Ok(()),
                    }
                }));
                group.start_soon(async {
                    sleep(Duration::from_millis(5)).await;
                    Err::<(), _>(KeyError)
                });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(failure_texts(&error), ["KeyError"], "{error}");
        let first = ended_with(handles.lock().unwrap().pop().unwrap());
        assert!(first.is_cancelled(), "{first:?}");
    }

    // A supervised child cancelled by a sibling's failure, whose attempt
    // fails on its own at the same poll: its failure is reported, and it
    // is not restarted.
    async fn a_supervised_childs_own_error_in_a_cancelled_group_is_reported() {
        let error = TaskGroup::new()
            .run(|group| async move {
                group.start_soon(async { Err::<(), _>(KeyError) });
                group
                    .child()
                    .supervised(group.supervision())
                    .start_soon(|_attempt| async { Err::<(), _>(ValueError) });
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(failure_texts(&error), ["KeyError", "ValueError"], "{error}");
    }

    // Issue: a group's grace overrode a child's own scope grace, dropped
    // the child at its own timeout and said it finished within its grace.
    async fn a_childs_own_grace_is_honoured_in_a_group_with_a_grace() {
        for group_grace in [None, Some(Duration::from_secs(1))] {
            let cleaned = Arc::new(AtomicBool::new(false));
            let seen = cleaned.clone();
            let mut group = TaskGroup::new();
            if let Some(grace) = group_grace {
                group = group.grace(grace);
            }
            let outcome = group
                .run(|group| async move {
                    let child = group.child().in_scope(CancelScope::new()
                            .timeout(Duration::from_millis(20))
                            .grace(Duration::from_secs(1))).start_soon(async move {
                            let cancelled = cancelable::sleep(Duration::from_secs(60))
                                .await
                                .unwrap_err();
                            shield(async {
                                sleep(Duration::from_millis(5)).await;
                                seen.store(true, Ordering::SeqCst);
                            })
                            .await;
                            Err::<(), _>(cancelled)
                        });
                    let error = child.await.unwrap_err();
                    let cancelled = error.cancelled().expect("cancelled by its timeout");
                    assert!(cancelled.is_timeout(), "{cancelled:?}");
                    Ok::<_, Cancelled>(cancelled.grace_outcome())
                })
                .await
                .unwrap();
            assert!(cleaned.load(Ordering::SeqCst), "cleanup lost with group grace {group_grace:?}");
            assert_eq!(outcome, GraceOutcome::FinishedWithinGrace, "group grace {group_grace:?}");
        }
    }

    // anyio `test_empty_taskgroup_contains_yield_point`: leaving a group,
    // even an empty one, lets a sibling task run.
    async fn an_empty_group_is_a_schedule_point() {
        let ran = Arc::new(AtomicBool::new(false));
        let set = ran.clone();
        let sibling = async move {
            set.store(true, Ordering::SeqCst);
        };
        let opener = async {
            TaskGroup::new()
                .run(|_group| async { Ok::<_, Cancelled>(()) })
                .await
                .unwrap();
            ran.load(Ordering::SeqCst)
        };
        // `join` polls the opener first: only a yield lets the sibling in.
        let (saw_sibling, ()) = futures::join!(opener, sibling);
        assert!(saw_sibling, "the group returned without a schedule point");
    }

    // A loop that opens groups never starves a sibling waiting its turn.
    async fn a_loop_of_groups_lets_a_sibling_run() {
        let turns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = turns.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sibling = async move {
            while !stopped.load(Ordering::SeqCst) {
                count.fetch_add(1, Ordering::SeqCst);
                cancelable_tests::yield_once().await;
            }
        };
        let opener = async {
            for _ in 0..100 {
                TaskGroup::new()
                    .run(|group| async move {
                        group.start_soon(async { Ok::<_, Cancelled>(()) });
                        Ok::<_, Cancelled>(())
                    })
                    .await
                    .unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        };
        futures::join!(opener, sibling);
        assert!(turns.load(Ordering::SeqCst) >= 50, "the sibling ran {} times", turns.load(Ordering::SeqCst));
    }

    // The exit's schedule point checks for cancellation: an empty group
    // in a cancelled scope ends with the cancellation.
    async fn an_empty_group_in_a_cancelled_scope_ends_cancelled() {
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(TaskGroup::new().run(|_group| async { Ok::<_, Cancelled>(7) }))
            .await;
        match outcome {
            Err(cancelled) => assert_eq!(cancelled.reason(), &CancelReason::Manual),
            Ok(inner) => assert!(inner.unwrap_err().is_cancelled()),
        }
    }

    // trio `test_nursery_start`, the happy path: `start` waits for the
    // child's readiness and returns its value; the group then waits for
    // the child to end.
    async fn start_returns_the_value_once_ready_and_the_group_waits_for_the_child() {
        for wait in [Duration::from_millis(10), Duration::from_millis(20)] {
            let t0 = Instant::now();
            TaskGroup::new()
                .run(|group| async move {
                    assert_eq!(group.len(), 0);
                    let value = group
                        .start(move |ready| async move {
                            sleep(wait).await;
                            ready.ready(wait);
                            sleep(wait).await;
                            Ok::<_, Cancelled>(())
                        })
                        .await
                        .unwrap();
                    assert_eq!(value, wait);
                    assert!(t0.elapsed() >= wait);
                    assert_eq!((group.len(), group.active()), (1, 1), "the child runs on");
                    Ok::<_, Cancelled>(())
                })
                .await
                .unwrap();
            assert!(t0.elapsed() >= 2 * wait);
        }
    }

    // trio `test_nursery_start` / anyio `test_start_crash_before_started_call`:
    // the error comes out of `start`, and the group is not affected.
    async fn start_a_child_failing_before_ready_gives_the_starter_its_error() {
        let value = TaskGroup::new()
            .run(|group| async move {
                let error = group
                    .start(|_ready: Ready<()>| async { Err::<(), _>(KeyError) })
                    .await
                    .unwrap_err();
                let Some(TaskError::Failed(inner)) = error.task_error() else { panic!("{error:?}") };
                assert!(inner.is::<KeyError>());
                let error = group
                    .start(|_ready: Ready<()>| async { panic!("deliberate") as Result<(), Cancelled> })
                    .await
                    .unwrap_err();
                assert!(matches!(error.task_error(), Some(TaskError::Panicked(m)) if &**m == "deliberate"), "{error:?}");
                Ok::<_, Cancelled>(7)
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }

    // trio: "child exiting cleanly before calling started" / anyio
    // `test_start_no_started_call`.
    async fn start_a_child_ending_without_ready_is_an_error_that_says_so() {
        TaskGroup::new()
            .run(|group| async move {
                let error = group.start(|_ready: Ready<u8>| async { Ok::<_, Cancelled>(()) }).await.unwrap_err();
                assert!(matches!(error, StartError::EndedWithoutReady));
                assert!(error.to_string().contains("without reporting readiness"), "{error}");
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    // anyio `test_start_crash_after_started_call`: after readiness the
    // child's failure is the group's.
    async fn start_a_child_failing_after_ready_fails_the_group() {
        let error = TaskGroup::new()
            .run(|group| async move {
                let value = group
                    .start(|ready| async move {
                        ready.ready(1);
                        Err::<(), _>(ValueError)
                    })
                    .await
                    .unwrap();
                assert_eq!(value, 1);
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap_err();
        assert_eq!(failure_texts(&error), ["ValueError"]);
    }

    // trio: "if the call to start() is cancelled, then the call to
    // started() does nothing" — here the child is cancelled with it.
    async fn start_cancelled_before_ready_is_cancelled_and_cancels_the_child() {
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        TaskGroup::new()
            .run(|group| async move {
                let starter = CancelScope::new();
                starter.handle().cancel();
                let outcome = starter
                    .run(group.start(move |ready| async move {
                        ready.ready("hi");
                        checkpoint().await?;
                        done.store(true, Ordering::SeqCst);
                        Ok::<_, Cancelled>(())
                    }))
                    .await;
                match outcome {
                    Ok(start) => assert!(start.unwrap_err().is_cancelled()),
                    Err(cancelled) => assert_eq!(cancelled.reason(), &CancelReason::Manual),
                }
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert!(!finished.load(Ordering::SeqCst));
    }

    // anyio `test_start_native_host_cancelled`-like: the starter's scope
    // times out while the child gets ready: the child is cancelled.
    async fn start_a_starter_timing_out_cancels_the_child() {
        let t0 = Instant::now();
        let (guard, live) = drop_flag();
        TaskGroup::new()
            .run(|group| async move {
                let outcome = CancelScope::new()
                    .timeout(Duration::from_millis(20))
                    .run(group.start(move |_ready: Ready<()>| async move {
                        let _guard = guard;
                        cancelable::sleep(Duration::from_secs(60)).await
                    }))
                    .await;
                match outcome {
                    Ok(start) => assert!(start.unwrap_err().is_cancelled()),
                    Err(cancelled) => assert!(cancelled.is_timeout()),
                }
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert!(live.load(Ordering::SeqCst), "the child was not dropped");
        assert!(t0.elapsed() < GENEROUS);
    }

    // Dropping the `Start` future before readiness cancels the child.
    async fn start_dropped_before_ready_cancels_the_child() {
        let (guard, dropped) = drop_flag();
        TaskGroup::new()
            .run(|group| async move {
                let mut start = Box::pin(group.start(move |_ready: Ready<()>| async move {
                    let _guard = guard;
                    std::future::pending::<Result<(), Cancelled>>().await
                }));
                assert!(futures::poll!(start.as_mut()).is_pending());
                drop(start);
                group.wait().await;
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
        assert!(dropped.load(Ordering::SeqCst));
    }

    // trio: "trying to start in a closed nursery raises an error
    // immediately".
    async fn start_in_a_closed_group_fails_at_once() {
        TaskGroup::new()
            .run(|group| async move {
                group.close();
                let mut start = Box::pin(group.start(|ready| async move {
                    ready.ready(());
                    Ok::<_, Cancelled>(())
                }));
                let std::task::Poll::Ready(outcome) = futures::poll!(start.as_mut()) else {
                    panic!("a closed group's start pends");
                };
                assert!(matches!(outcome.unwrap_err().task_error(), Some(TaskError::NotStarted)));
                Ok::<_, Cancelled>(())
            })
            .await
            .unwrap();
    }

    // anyio `test_start_cancelled`: a start in a cancelled group runs the
    // child up to its first wait, which reports the cancellation.
    async fn start_in_a_cancelled_group() {
        let started = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let (s, f) = (started.clone(), finished.clone());
        let outcome = TaskGroup::new()
            .run(|group| async move {
                group.cancel();
                group
                    .start(move |_ready: Ready<()>| async move {
                        s.store(true, Ordering::SeqCst);
                        cancelable::sleep(Duration::from_secs(2)).await?;
                        f.store(true, Ordering::SeqCst);
                        Ok::<_, Cancelled>(())
                    })
                    .await
                    .ok();
                Ok::<_, Cancelled>(())
            })
            .await;
        assert!(outcome.unwrap_err().is_cancelled());
        assert!(started.load(Ordering::SeqCst));
        assert!(!finished.load(Ordering::SeqCst));
    }
}

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);
