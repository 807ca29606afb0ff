//! A scope that nothing but its body reaches makes its shared state only
//! when something asks for it (a handle, its token, a nested scope, a
//! passed deadline): what it would have had from its start must show
//! then, and everything a scope does must still hold.

use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cancelable::{
    checkpoint, current_scope, current_token, CancelReason, CancelScope, CancellationToken,
    OperationStatus, ScopeHandle,
};
use cancelable_tests::{on_every_backend, poll_once_by_hand, sleep};
use futures::FutureExt;

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// Runs `cancel` on `token` from another thread, 5 ms from now: while the
/// scope under test pends.
fn cancel_soon(
    token: &CancellationToken,
    cancel: impl FnOnce(&CancellationToken) + Send + 'static,
) {
    let token = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        cancel(&token);
    });
}

on_every_backend! {
    async fn state_made_inside_the_body_has_the_name_start_and_deadline_of_the_start() {
        let before = Instant::now();
        let (id, elapsed, name, deadline, status) = CancelScope::new()
            .name("lazy")
            .deadline(before + Duration::from_secs(3600))
            .run(async {
                // Nothing has asked for the scope yet: its state is made
                // here, 5 ms after its start.
                std::thread::sleep(Duration::from_millis(5));
                let scope = current_scope().expect("inside a scope");
                let context = scope.context();
                (
                    context.id,
                    context.elapsed.expect("started"),
                    context.name,
                    scope.deadline(),
                    scope.status(),
                )
            })
            .await
            .unwrap();
        assert_ne!(id, 0);
        assert!(elapsed >= Duration::from_millis(5), "elapsed {elapsed:?}");
        assert_eq!(name.as_deref(), Some("lazy"));
        assert_eq!(deadline, Some(before + Duration::from_secs(3600)));
        assert_eq!(status, OperationStatus::Running);
    }

    async fn a_handle_taken_after_pends_reads_the_final_status() {
        let taken: Arc<Mutex<Option<ScopeHandle>>> = Arc::default();
        let keep = taken.clone();
        CancelScope::new()
            .name("pends first")
            .run(async move {
                sleep(Duration::from_millis(1)).await;
                sleep(Duration::from_millis(1)).await;
                *keep.lock().unwrap() = current_scope();
                sleep(Duration::from_millis(1)).await;
            })
            .await
            .unwrap();
        let handle = taken.lock().unwrap().take().expect("taken inside");
        assert_eq!(handle.status(), OperationStatus::Completed);
        assert_eq!(handle.context().name.as_deref(), Some("pends first"));
        assert!(handle.context().ended_at.is_some());
    }

    async fn a_busy_loop_sees_the_deadline() {
        // The checkpoints yield every 256th call, so the scope pends: it
        // then ends either through its body (a checkpoint saw the
        // deadline) or on its own (the deadline fired while it pended).
        let started = Instant::now();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(20))
            .run(async {
                loop {
                    checkpoint().await?;
                    std::hint::spin_loop();
                }
                #[allow(unreachable_code)]
                Ok::<(), cancelable::Cancelled>(())
            })
            .await;
        let cancelled = match outcome {
            Ok(body) => body.unwrap_err(),
            Err(scope) => scope,
        };
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn a_checkpoint_before_the_first_pend_sees_a_passed_deadline() {
        // The scope has not pended (no shared state yet) when a checkpoint
        // checks its deadline, which has passed: the body sees the
        // timeout within 32 checkpoints, before any yield.
        let mut checkpoints = 0u32;
        let outcome = CancelScope::new()
            .name("passed")
            .deadline(Instant::now())
            .run(async {
                loop {
                    checkpoints += 1;
                    checkpoint().await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), cancelable::Cancelled>(())
            })
            .await
            .expect("the body returns the cancellation it saw");
        let cancelled = outcome.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert_eq!(cancelled.operation_name(), Some("passed"));
        assert!(checkpoints <= 32, "{checkpoints} checkpoints");
    }

    async fn a_deadline_ends_a_body_that_never_looks_at_it() {
        // Nothing reaches the scope and its body never checks: the
        // deadline shard wakes its task, and the scope ends itself.
        let started = Instant::now();
        let cancelled = CancelScope::new()
            .name("never looks")
            .timeout(Duration::from_millis(20))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert!(cancelled.is_timeout());
        assert_eq!(cancelled.message(), None);
        assert_eq!(cancelled.operation_name(), Some("never looks"));
        assert!(cancelled.elapsed().is_some_and(|elapsed| elapsed >= Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn the_deadline_wakes_the_waker_of_the_last_poll() {
        // First polled with a waker nobody listens to, then awaited by
        // this task: the deadline must wake the task, not the first waker.
        let mut run = Box::pin(
            CancelScope::new()
                .timeout(Duration::from_millis(20))
                .run(pending::<()>()),
        );
        let first = poll_once_by_hand(run.as_mut());
        assert!(first.is_pending());
        // The sleep first: polled first when both are ready, it wins a tie
        // (a task woken only by it).
        let waited = futures::future::select(Box::pin(sleep(GENEROUS)), run).await;
        match waited {
            futures::future::Either::Left(_) => panic!("the deadline never woke the task"),
            futures::future::Either::Right((outcome, _)) => {
                assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Timeout)
            }
        }
    }

    async fn a_token_source_cancelled_while_the_body_pends_ends_the_scope_with_its_reason() {
        let token = CancellationToken::new();
        let canceller = token.clone();
        let cancelled = CancelScope::new()
            .name("watching")
            .token(&token)
            .timeout(GENEROUS)
            .run(async move {
                // Asked for from inside the body, so at least 5 ms after the
                // scope's start however loaded the machine is.
                cancel_soon(&canceller, |token| {
                    token.cancel_with(CancelReason::Condition, "disk full");
                });
                pending::<()>().await
            })
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        assert_eq!(cancelled.message(), Some("disk full"));
        assert_eq!(cancelled.operation_name(), Some("watching"));
        // What a scope's error says of itself, as with shared state.
        assert!(cancelled.operation_id().is_some_and(|id| id != 0));
        let elapsed = cancelled.elapsed().expect("a scope's error has its times");
        let after = cancelled.cancelled_after().expect("and when it was cancelled");
        assert!(elapsed >= Duration::from_millis(5), "elapsed {elapsed:?}");
        assert!(after >= Duration::from_millis(5) && after <= elapsed, "{after:?} of {elapsed:?}");
        assert_eq!(cancelled.grace_outcome(), cancelable::GraceOutcome::NoGrace);
    }

    async fn two_lazy_scopes_cancelled_by_one_token_have_their_own_ids() {
        let token = CancellationToken::new();
        cancel_soon(&token, |token| {
            token.cancel();
        });
        let (first, second) = futures::join!(
            CancelScope::new().token(&token).run(pending::<()>()),
            CancelScope::new().token(&token).run(pending::<()>()),
        );
        let (first, second) = (first.unwrap_err(), second.unwrap_err());
        assert_eq!(first.reason(), &CancelReason::Manual);
        assert_ne!(first.operation_id(), second.operation_id());
    }

    async fn the_first_checkpoint_sees_a_token_source_cancelled_before_the_start() {
        let token = CancellationToken::new();
        token.cancel();
        let outcome = CancelScope::new()
            .token(&token)
            .run(async { checkpoint().await })
            .await
            .expect("the body returns the cancellation it saw");
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
    }

    async fn the_first_of_its_deadline_and_its_token_to_fire_gives_the_reason() {
        // Both fire while nothing polls the scope: its deadline first, its
        // token 30 ms later. The first to fire cancels the scope.
        let token = CancellationToken::new();
        let mut run = Box::pin(
            CancelScope::new()
                .token(&token)
                .timeout(Duration::from_millis(10))
                .run(pending::<()>()),
        );
        let first = poll_once_by_hand(run.as_mut());
        assert!(first.is_pending());
        std::thread::sleep(Duration::from_millis(40));
        token.cancel_with(CancelReason::Condition, "too late");
        let cancelled = run.await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        // And the other way round: the token first, the deadline long after.
        let token = CancellationToken::new();
        cancel_soon(&token, |token| {
            token.cancel_with(CancelReason::Condition, "first");
        });
        let cancelled = CancelScope::new()
            .token(&token)
            .timeout(GENEROUS)
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
    }

    async fn a_pending_scope_counts_among_its_token_source_s_children() {
        let token = CancellationToken::new();
        {
            let mut run = Box::pin(CancelScope::new().token(&token).run(pending::<()>()));
            let first = poll_once_by_hand(run.as_mut());
            assert!(first.is_pending());
            assert_eq!(token.child_count(), 1);
        }
        assert_eq!(token.child_count(), 0, "a dropped scope stays registered");
        // A scope that pended and finished leaves no waiter behind either.
        CancelScope::new()
            .token(&token)
            .run(sleep(Duration::from_millis(1)))
            .await
            .unwrap();
        assert_eq!(token.child_count(), 0, "a finished scope stays registered");
    }

    async fn a_token_source_cancelled_after_the_state_was_made_cancels_that_state() {
        let token = CancellationToken::new();
        let canceller = token.clone();
        let outcome = CancelScope::new()
            .token(&token)
            .run(async move {
                sleep(Duration::from_millis(1)).await;
                // The state is made here, linked under the source.
                let mine = current_token().expect("inside a scope");
                canceller.cancel_with(CancelReason::Condition, "after");
                assert!(mine.is_cancelled());
                checkpoint().await
            })
            .await;
        let cancelled = match outcome {
            Ok(body) => body.unwrap_err(),
            Err(scope) => scope,
        };
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        assert_eq!(cancelled.message(), Some("after"));
    }

    async fn a_scope_nested_after_pends_is_cancelled_with_its_parent() {
        // The outer scope's body returns the inner scope's error in the
        // poll in which the outer scope is cancelled: the outer scope
        // returns that value (the documented poll order).
        let inner = CancelScope::new()
            .run(async {
                sleep(Duration::from_millis(1)).await;
                let outer = current_scope().expect("inside a scope");
                let parent_id = outer.id();
                let inner = CancelScope::new()
                    .run(async move {
                        sleep(Duration::from_millis(1)).await;
                        assert_eq!(
                            current_scope().expect("inside").context().parent_id,
                            Some(parent_id)
                        );
                        outer.cancel();
                        pending::<()>().await
                    })
                    .await;
                checkpoint().await.expect_err("the outer scope is cancelled");
                inner
            })
            .await;
        match inner {
            Ok(inner) => assert_eq!(
                inner.unwrap_err().reason(),
                &CancelReason::Parent(Box::new(CancelReason::Manual))
            ),
            Err(outer) => assert_eq!(outer.reason(), &CancelReason::Manual),
        }
    }

    async fn a_token_handed_out_in_the_first_poll_cancels_the_scope() {
        let cancelled = CancelScope::new()
            .run(async {
                let token = current_token().expect("inside a scope");
                cancel_soon(&token, |token| {
                    token.cancel();
                });
                pending::<()>().await
            })
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
    }

    async fn a_panic_after_the_state_was_made_marks_the_operation_failed() {
        let taken: Arc<Mutex<Option<ScopeHandle>>> = Arc::default();
        let keep = taken.clone();
        let outcome = std::panic::AssertUnwindSafe(CancelScope::new().run(async move {
            sleep(Duration::from_millis(1)).await;
            *keep.lock().unwrap() = current_scope();
            panic!("the body fails");
        }))
        .catch_unwind()
        .await;
        assert!(outcome.is_err());
        let handle = taken.lock().unwrap().take().expect("taken inside");
        assert_eq!(handle.status(), OperationStatus::Failed);
        // The slot is restored: outside any scope again.
        assert!(current_scope().is_none());
    }

    async fn a_panic_in_a_scope_nothing_reached_leaves_no_current_scope() {
        let outcome = std::panic::AssertUnwindSafe(CancelScope::new().run(async {
            sleep(Duration::from_millis(1)).await;
            panic!("the body fails");
        }))
        .catch_unwind()
        .await;
        assert!(outcome.is_err());
        assert!(current_scope().is_none());
        // The next scope starts as usual.
        let inside = CancelScope::new()
            .name("next")
            .run(async { current_scope().and_then(|scope| scope.context().name) })
            .await
            .unwrap();
        assert_eq!(inside.as_deref(), Some("next"));
    }
}
