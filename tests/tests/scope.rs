//! `CancelScope`: sources, poll order, nesting, deadlines, races.

use std::future::pending;
use std::time::{Duration, Instant};

use cancelable::{
    checkpoint, current_scope, current_token, CancelReason, CancelScope, CancellationToken,
    Cancelled, OperationStatus, Source,
};
use cancelable_tests::{on_every_backend, sleep};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

on_every_backend! {
    async fn many_scopes_sharing_a_timer_each_time_out_never_early() {
        // Scopes on one thread share one timer, armed at the earliest
        // deadline and re-armed for the next: each must still fire, and
        // none before its own deadline.
        let millis = [45u64, 5, 30, 15, 60, 10, 25, 50, 20, 35, 40, 55];
        let started = Instant::now();
        let scopes = millis.iter().map(|&ms| async move {
            let cancelled = CancelScope::new()
                .timeout(Duration::from_millis(ms))
                .run(pending::<()>())
                .await
                .unwrap_err();
            assert_eq!(cancelled.reason(), &CancelReason::Timeout);
            let elapsed = started.elapsed();
            assert!(
                elapsed >= Duration::from_millis(ms),
                "the {ms} ms scope fired after {elapsed:?}"
            );
        });
        futures::future::join_all(scopes).await;
        assert!(started.elapsed() < GENEROUS);
    }

    async fn a_later_deadline_fires_after_the_earliest_scope_ended() {
        // The shared timer is armed for the short scope, which completes
        // first; the long one must still time out.
        let short = CancelScope::new()
            .timeout(Duration::from_millis(15))
            .run(sleep(Duration::from_millis(2)));
        let long = CancelScope::new()
            .timeout(Duration::from_millis(40))
            .run(pending::<()>());
        let started = Instant::now();
        let (short, long) = futures::join!(short, long);
        short.unwrap();
        assert_eq!(long.unwrap_err().reason(), &CancelReason::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(started.elapsed() < GENEROUS);
    }

    async fn timeout_cancels_a_pending_body() {
        let started = Instant::now();
        let cancelled = CancelScope::new()
            .name("waits")
            .timeout(Duration::from_millis(20))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert_eq!(cancelled.operation_name(), Some("waits"));
        assert!(cancelled.operation_id().is_some());
        assert!(started.elapsed() >= Duration::from_millis(20), "not before the timeout");
        assert!(started.elapsed() < GENEROUS);
        assert!(cancelled.elapsed().unwrap() >= Duration::from_millis(20));
        assert!(cancelled.to_string().contains("`waits`"), "{cancelled}");
        assert!(cancelled.to_string().ends_with("timeout"), "{cancelled}");
    }

    async fn a_body_that_finishes_first_returns_ok() {
        let output = CancelScope::new()
            .timeout(Duration::from_secs(30))
            .run(async {
                sleep(Duration::from_millis(5)).await;
                7
            })
            .await;
        assert_eq!(output.unwrap(), 7);
    }

    async fn ready_body_wins_over_a_past_deadline() {
        // Like tokio::time::timeout: the body is polled first.
        let past = Instant::now() - Duration::from_millis(1);
        let output = CancelScope::new().deadline(past).run(async { 1 }).await;
        assert_eq!(output.unwrap(), 1);
    }

    async fn pending_body_under_a_past_deadline_ends_at_once() {
        let started = Instant::now();
        let past = Instant::now() - Duration::from_secs(1);
        let cancelled = CancelScope::new().deadline(past).run(pending::<()>()).await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        let zero = CancelScope::new().timeout(Duration::ZERO).run(pending::<()>()).await.unwrap_err();
        assert_eq!(zero.reason(), &CancelReason::Timeout);
        assert!(started.elapsed() < GENEROUS);
    }

    async fn token_source_reports_the_token_reason_and_message() {
        let token = CancellationToken::new();
        let remote = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            remote.cancel_with(CancelReason::Condition, "disk full");
        });
        let cancelled = CancelScope::new().token(&token).run(pending::<()>()).await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        assert_eq!(cancelled.message(), Some("disk full"));
        assert!(cancelled.to_string().contains("disk full"), "{cancelled}");
    }

    async fn handle_cancels_from_another_thread() {
        let scope = CancelScope::new().name("job");
        let handle = scope.handle();
        assert_eq!(handle.status(), OperationStatus::Pending);
        let remote = handle.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            remote.cancel();
        });
        let cancelled = scope.run(pending::<()>()).await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(handle.status(), OperationStatus::Cancelled);
        let context = handle.context();
        assert_eq!(context.status, OperationStatus::Cancelled);
        assert_eq!(context.reason, Some(CancelReason::Manual));
        assert_eq!(context.name.as_deref(), Some("job"));
        assert!(context.ended_at.is_some());
    }

    async fn deadline_moved_earlier_while_running() {
        let scope = CancelScope::new().timeout(Duration::from_secs(60));
        let handle = scope.handle();
        let started = Instant::now();
        let mover = async {
            sleep(Duration::from_millis(10)).await;
            handle.set_deadline(Some(Instant::now() + Duration::from_millis(10)));
        };
        let (outcome, ()) = futures::join!(scope.run(pending::<()>()), mover);
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Timeout);
        assert!(started.elapsed() < GENEROUS);
    }

    async fn deadline_moved_later_while_running() {
        let scope = CancelScope::new().timeout(Duration::from_millis(30));
        let handle = scope.handle();
        let outcome = scope
            .run(async {
                // Push the deadline out, then outlive the original one.
                handle.set_deadline(Some(Instant::now() + Duration::from_secs(60)));
                sleep(Duration::from_millis(80)).await;
                "done"
            })
            .await;
        assert_eq!(outcome.unwrap(), "done");
    }

    async fn nested_scope_reports_parent_timeout() {
        let outer = CancelScope::new().timeout(Duration::from_millis(20));
        let outer_handle = outer.handle();
        let outcome = outer
            .try_run(async {
                let inner = CancelScope::new()
                    .timeout(Duration::from_secs(60))
                    .run(pending::<()>())
                    .await;
                // The inner scope always ends (with the outer's reason) before
                // the outer one does, so the body can pass the error on.
                let inner = inner.unwrap_err();
                assert_eq!(
                    inner.reason(),
                    &CancelReason::Parent(Box::new(CancelReason::Timeout))
                );
                Err::<(), Cancelled>(inner)
            })
            .await;
        // The caller receives the inner error through the body, and still
        // learns it was a timeout.
        let error = outcome.unwrap_err();
        assert!(error.is_timeout());
        assert!(error.reason().is_from_parent());
        assert_eq!(outer_handle.status(), OperationStatus::Cancelled);
        assert_eq!(outer_handle.context().reason, Some(CancelReason::Timeout));
    }

    async fn inner_deadline_fires_alone() {
        let outcome = CancelScope::new()
            .timeout(Duration::from_secs(60))
            .run(async {
                let inner = CancelScope::new()
                    .timeout(Duration::from_millis(10))
                    .run(pending::<()>())
                    .await;
                assert_eq!(inner.unwrap_err().reason(), &CancelReason::Timeout);
                assert!(!current_token().unwrap().is_cancelled(), "outer scope untouched");
                "outer goes on"
            })
            .await;
        assert_eq!(outcome.unwrap(), "outer goes on");
    }

    async fn inner_scope_inherits_outer_deadline_for_checkpoints() {
        // A busy loop in an inner scope without a deadline of its own still
        // notices the outer deadline.
        let outer = CancelScope::new().timeout(Duration::from_millis(20));
        let outcome = outer
            .run(async {
                CancelScope::new()
                    .try_run(async {
                        loop {
                            checkpoint().await?;
                            std::hint::spin_loop();
                        }
                        #[allow(unreachable_code)]
                        Ok::<(), Cancelled>(())
                    })
                    .await
            })
            .await;
        let error = match outcome {
            Ok(inner) => inner.unwrap_err(),
            Err(outer) => outer,
        };
        assert!(error.is_timeout(), "{error}");
    }

    async fn checkpoint_leaves_a_busy_loop_after_a_timeout() {
        let started = Instant::now();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(20))
            .try_run(async {
                let mut iterations = 0u64;
                loop {
                    checkpoint().await?;
                    iterations += 1;
                    std::hint::black_box(iterations);
                }
                #[allow(unreachable_code)]
                Ok::<u64, Cancelled>(iterations)
            })
            .await;
        assert!(outcome.unwrap_err().is_timeout());
        assert!(started.elapsed() < GENEROUS);
    }

    async fn checkpoint_outside_a_scope_never_fails() {
        for _ in 0..10_000 {
            checkpoint().await.unwrap();
        }
        assert!(current_scope().is_none());
        assert!(current_token().is_none());
    }

    async fn body_error_after_observed_cancel_counts_as_cancelled() {
        #[derive(Debug)]
        struct JobError(#[allow(dead_code)] String);
        impl From<Cancelled> for JobError {
            fn from(cancelled: Cancelled) -> Self {
                JobError(cancelled.to_string())
            }
        }
        let scope = CancelScope::new().timeout(Duration::from_millis(5));
        let handle = scope.handle();
        let outcome: Result<(), JobError> = scope
            .try_run(async {
                loop {
                    if checkpoint().await.is_err() {
                        return Err(JobError("gave up".into()));
                    }
                    sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(handle.status(), OperationStatus::Cancelled);

        let failing = CancelScope::new();
        let failing_handle = failing.handle();
        let outcome: Result<(), JobError> = failing.try_run(async { Err(JobError("own".into())) }).await;
        assert!(outcome.is_err());
        assert_eq!(failing_handle.status(), OperationStatus::Failed);
    }

    async fn any_of_and_all_of_compose() {
        // all_of waits for its last member.
        let started = Instant::now();
        let token = CancellationToken::new();
        token.cancel();
        let cancelled = CancelScope::new()
            .all_of([Source::token(&token), Source::timeout(Duration::from_millis(30))])
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout, "the last to fire");
        assert!(started.elapsed() >= Duration::from_millis(30));

        // any_of fires with the first.
        let token = CancellationToken::new();
        let remote = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel();
        });
        let cancelled = CancelScope::new()
            .source(Source::any_of([Source::token(&token), Source::timeout(Duration::from_secs(60))]))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);

        // An empty all_of never fires.
        let output = CancelScope::new()
            .all_of([])
            .run(async {
                sleep(Duration::from_millis(5)).await;
                1
            })
            .await;
        assert_eq!(output.unwrap(), 1);
    }

    async fn tokio_util_token_is_a_source() {
        let foreign = tokio_util::sync::CancellationToken::new();
        let remote = foreign.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel();
        });
        let cancelled = CancelScope::new()
            .tokio_util_token(&foreign)
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
    }

    async fn a_future_source_ends_the_scope_when_it_completes() {
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            let _ = stop.send(());
        });
        let cancelled = CancelScope::new()
            .source(Source::future(async move {
                let _ = stopped.await;
            }))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
    }

    async fn a_future_source_reports_the_reason_it_yields() {
        let cancelled = CancelScope::new()
            .source(Source::future_with_reason(async {
                sleep(Duration::from_millis(5)).await;
                CancelReason::Condition
            }))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
    }

    async fn a_future_source_that_never_completes_leaves_the_body_alone_and_is_dropped() {
        struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Dropped(dropped.clone());
        let output = CancelScope::new()
            .source(Source::future(async move {
                let _held = held;
                pending::<()>().await;
            }))
            .run(async {
                sleep(Duration::from_millis(5)).await;
                "body"
            })
            .await;
        assert_eq!(output.unwrap(), "body");
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "the source is dropped with the scope");
    }

    async fn a_panicking_future_source_cancels_the_scope_with_an_error() {
        let cancelled = CancelScope::new()
            .source(Source::future(async { panic!("the source broke") }))
            .run(pending::<()>())
            .await
            .unwrap_err();
        let CancelReason::Error(error) = cancelled.reason() else {
            panic!("expected an error reason, got {:?}", cancelled.reason());
        };
        assert!(error.to_string().contains("the source broke"), "{error}");
    }

    async fn a_future_source_composes_with_all_of() {
        let started = Instant::now();
        let cancelled = CancelScope::new()
            .source(Source::all_of([
                Source::future(async {}),
                Source::timeout(Duration::from_millis(20)),
            ]))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    async fn the_handles_cancel_token_is_the_scopes_own_token() {
        let scope = CancelScope::new();
        let handle = scope.handle();
        let own = handle.cancel_token();
        assert_eq!(own, scope.handle().cancel_token(), "one token per scope");
        let output = scope
            .run(async move {
                assert_eq!(current_token(), Some(own.clone()));
                own.cancel_with(CancelReason::Manual, "from inside");
                pending::<()>().await
            })
            .await;
        assert_eq!(output.unwrap_err().message(), Some("from inside"));
        assert!(handle.is_cancelled());
    }

    async fn dropped_scope_detaches_from_its_token_sources() {
        let first = CancellationToken::new();
        let second = CancellationToken::new();
        {
            // One scope linked to two tokens (the first kept inline, the
            // second among the other sources).
            let run = CancelScope::new()
                .token(&first)
                .token(&second)
                .run(pending::<()>());
            let mut run = Box::pin(run);
            assert!(futures::poll!(run.as_mut()).is_pending());
            assert_eq!(first.child_count(), 1);
            assert_eq!(second.child_count(), 1);
        }
        assert_eq!(first.child_count(), 0, "a dropped scope stays linked");
        assert_eq!(second.child_count(), 0, "a dropped scope stays linked");
        // A finished scope unlinks too.
        CancelScope::new()
            .token(&first)
            .token(&second)
            .run(sleep(Duration::from_millis(1)))
            .await
            .unwrap();
        assert_eq!(first.child_count(), 0);
        assert_eq!(second.child_count(), 0);
    }
}

#[test]
fn one_token_cancels_scopes_on_two_backends() {
    // A tokio thread cancels a scope running on smol (and one on async-std).
    let token = CancellationToken::new();
    let smol_token = token.clone();
    let smol_side = std::thread::spawn(move || {
        smol::block_on(CancelScope::new().token(&smol_token).run(pending::<()>()))
    });
    let std_token = token.clone();
    let async_std_side = std::thread::spawn(move || {
        async_std::task::block_on(CancelScope::new().token(&std_token).run(pending::<()>()))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            token.cancel_with(CancelReason::Manual, "from tokio");
        })
        .await
        .unwrap();
    });
    for side in [smol_side, async_std_side] {
        let cancelled = side.join().unwrap().unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("from tokio"));
    }
}

#[test]
fn tokio_paused_clock_drives_scope_timeouts() {
    // Tokio-only by nature: the paused clock.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = tokio::time::Instant::now();
        let cancelled = CancelScope::new()
            .timeout(Duration::from_secs(3600))
            .run(pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        // Auto-advance jumped exactly to the deadline, as with tokio::time::timeout.
        assert_eq!(started.elapsed(), Duration::from_secs(3600));

        let scope = CancelScope::new().timeout(Duration::from_secs(10));
        let run = tokio::spawn(scope.run(tokio::time::sleep(Duration::from_secs(9))));
        assert!(
            run.await.unwrap().is_ok(),
            "a body finishing before the deadline wins"
        );
    });
}

#[test]
fn scope_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let run = CancelScope::new()
        .timeout(Duration::from_secs(1))
        .run(async { 1 });
    assert_send(&run);
}

on_every_backend! {
    async fn a_deadline_set_through_a_dropped_handle_inside_the_body_still_fires() {
        // The body moves the deadline through a handle it drops before it
        // pends: nothing else holds the scope, yet its new deadline fires.
        let cancelled = CancelScope::new()
            .run(async {
                current_scope()
                    .expect("inside a scope")
                    .set_deadline(Some(Instant::now() + Duration::from_millis(20)));
                pending::<()>().await
            })
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
    }

    async fn a_token_handed_out_by_the_body_cancels_the_scope_after_it_pends() {
        // A scope without any source pends; the token its body handed to
        // another thread cancels it later, and the scope is woken.
        let started = Instant::now();
        let cancelled = CancelScope::new()
            .run(async {
                hand_out_token_and_pend().await
            })
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert!(started.elapsed() < GENEROUS);
    }

    async fn a_scope_reached_only_after_its_first_pends_is_cancelled_and_timed_out() {
        // The body pends twice with nothing but itself holding the scope,
        // then hands out its token (or sets a deadline through a handle it
        // drops): the scope reacts to it all the same.
        let cancelled = CancelScope::new()
            .run(async {
                sleep(Duration::from_millis(1)).await;
                sleep(Duration::from_millis(1)).await;
                hand_out_token_and_pend().await
            })
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        let started = Instant::now();
        let cancelled = CancelScope::new()
            .run(async {
                sleep(Duration::from_millis(1)).await;
                current_scope()
                    .expect("inside a scope")
                    .set_deadline(Some(Instant::now() + Duration::from_millis(20)));
                sleep(Duration::from_millis(1)).await;
                pending::<()>().await
            })
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(started.elapsed() < GENEROUS);
    }
}

on_every_backend! {
    async fn a_scope_started_after_others_ended_starts_fresh() {
        // Finished scopes hand their state back to a per-thread pool, and
        // the next scopes reuse it: nothing of the earlier scopes may show
        // through — not their cancellation, reason, name, deadline, id,
        // children or callbacks.
        let mut ids = Vec::new();
        for round in 0..20u32 {
            let parent = CancellationToken::new();
            let cancelled = CancelScope::new()
                .name("first")
                .timeout(Duration::from_secs(3600))
                .token(&parent)
                .run(async {
                    let inner = CancelScope::new()
                        .name("inner")
                        .run(async {
                            parent.cancel_with(CancelReason::Manual, "round over");
                            pending::<()>().await
                        })
                        .await;
                    assert!(inner.is_err());
                    pending::<()>().await
                })
                .await
                .unwrap_err();
            assert_eq!(cancelled.reason(), &CancelReason::Manual);
            // Two scopes ended (inner, outer): the next ones may reuse them.
            let fresh = CancelScope::new();
            let handle = fresh.handle();
            let outcome = fresh
                .run(async {
                    let scope = current_scope().expect("inside a scope");
                    let context = scope.context();
                    assert_eq!(context.name, None, "round {round}");
                    assert_eq!(scope.deadline(), None, "round {round}");
                    assert_eq!(context.reason, None, "round {round}");
                    assert_eq!(context.parent_id, None, "round {round}");
                    assert_eq!(context.status, OperationStatus::Running);
                    assert!(!current_token().unwrap().is_cancelled());
                    assert_eq!(current_token().unwrap().reason(), None);
                    checkpoint().await.expect("a fresh scope is not cancelled");
                    sleep(Duration::from_millis(1)).await;
                    scope.id()
                })
                .await
                .expect("a fresh scope runs to completion");
            assert!(!ids.contains(&outcome), "operation ids are never reused");
            ids.push(outcome);
            assert_eq!(handle.context().status, OperationStatus::Completed);
            // And one that nothing else holds, the case the pool reuses.
            let quiet = CancelScope::new().run(async { checkpoint().await }).await;
            assert!(matches!(quiet, Ok(Ok(()))), "round {round}: {quiet:?}");
        }
    }
}

/// Hands the current scope's token to another thread, which cancels it in
/// 20 ms, and pends until the scope ends.
async fn hand_out_token_and_pend() {
    let token = current_token().expect("inside a scope");
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
    });
    pending::<()>().await
}
