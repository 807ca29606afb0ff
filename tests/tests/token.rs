//! `CancellationToken`: cancel from anywhere, reasons, waiters, trees, callbacks,
//! conversions to and from `tokio_util` tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cancelable::{CancelReason, CancellationToken};
use cancelable_tests::{on_every_backend, sleep};

on_every_backend! {
    async fn cancel_from_a_plain_thread_wakes_the_waiter() {
        let token = CancellationToken::new();
        let remote = token.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.cancel()
        });
        token.cancelled().await;
        assert!(token.is_cancelled());
        assert!(thread.join().unwrap(), "the thread's cancel was the first");
        assert_eq!(token.reason(), Some(CancelReason::Manual));
    }

    async fn every_waiter_is_woken() {
        let token = CancellationToken::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let waiters = (0..16).map(|_| {
            let token = token.clone();
            let woken = woken.clone();
            async move {
                token.cancelled().await;
                woken.fetch_add(1, Ordering::SeqCst);
            }
        });
        let canceller = async {
            sleep(Duration::from_millis(10)).await;
            token.cancel();
        };
        futures::join!(futures::future::join_all(waiters), canceller);
        assert_eq!(woken.load(Ordering::SeqCst), 16);
    }

    async fn first_reason_and_message_win() {
        let token = CancellationToken::new();
        assert!(token.cancel_with(CancelReason::Timeout, "budget spent"));
        assert!(!token.cancel());
        assert!(!token.cancel_with(CancelReason::Condition, "later"));
        assert_eq!(token.reason(), Some(CancelReason::Timeout));
        assert_eq!(token.message().as_deref(), Some("budget spent"));
        // Waiting on a cancelled token completes at once.
        token.cancelled().await;
        token.clone().cancelled_owned().await;
    }

    async fn cancelling_a_parent_cancels_the_subtree_with_parent_reason() {
        let root = CancellationToken::new();
        let child = root.child();
        let grandchild = child.child();
        let waiter = grandchild.clone();
        let wait = async move { waiter.cancelled().await };
        let cancel = async {
            sleep(Duration::from_millis(5)).await;
            root.cancel_with(CancelReason::Timeout, "")
        };
        futures::join!(wait, cancel);
        let inherited = Some(CancelReason::Parent(Box::new(CancelReason::Timeout)));
        assert_eq!(child.reason(), inherited);
        // Deeper descendants carry the root reason, not Parent(Parent(..)).
        assert_eq!(grandchild.reason(), inherited);
        assert_eq!(root.message(), None, "an empty message is recorded as none");
    }

    async fn cancelling_a_child_leaves_the_parent_alone() {
        let parent = CancellationToken::new();
        let child = parent.child();
        child.cancel();
        assert!(child.is_cancelled());
        assert!(!parent.is_cancelled());
        // A child of a cancelled parent is born cancelled.
        parent.cancel();
        let late = parent.child();
        assert!(late.is_cancelled());
        late.cancelled().await;
    }

    async fn dropped_children_detach_from_the_parent() {
        let parent = CancellationToken::new();
        for _ in 0..1000 {
            let child = parent.child();
            let clone = child.clone();
            drop(child);
            assert_eq!(parent.child_count(), 1, "a live clone keeps the child registered");
            drop(clone);
        }
        assert_eq!(parent.child_count(), 0);
        let kept: Vec<_> = (0..10).map(|_| parent.child()).collect();
        assert_eq!(parent.child_count(), 10);
        drop(kept);
        assert_eq!(parent.child_count(), 0);
    }

    async fn callbacks_run_once_and_a_dropped_guard_unregisters() {
        let token = CancellationToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let kept = token.on_cancel(move |reason| {
            assert_eq!(reason, &CancelReason::Manual);
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let dropped_calls = calls.clone();
        drop(token.on_cancel(move |_| {
            dropped_calls.fetch_add(100, Ordering::SeqCst);
        }));
        // A panicking callback is contained; the others still run.
        token.on_cancel(|_| panic!("callback panics on purpose")).detach();
        token.cancel();
        token.cancel();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        drop(kept);
        // Registered after the cancel: runs at once.
        let late = calls.clone();
        token
            .on_cancel(move |_| {
                late.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(token.is_cancelled(), "the token stays usable after a callback panicked");
    }

    async fn dropping_a_waiter_before_cancel_loses_no_wakeup_for_others() {
        let token = CancellationToken::new();
        {
            let mut first = Box::pin(token.cancelled());
            assert!(futures::poll!(first.as_mut()).is_pending());
        }
        let remote = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel();
        });
        token.cancelled().await;
    }

    async fn converts_into_a_tokio_util_token() {
        let token = CancellationToken::new();
        let foreign: tokio_util::sync::CancellationToken = token.to_tokio_util();
        assert!(!foreign.is_cancelled());
        std::thread::spawn(move || token.cancel());
        foreign.cancelled().await;
    }

    async fn cancelling_one_conversion_into_tokio_util_leaves_the_token_and_the_others_alone() {
        let token = CancellationToken::new();
        let first = token.to_tokio_util();
        let second: tokio_util::sync::CancellationToken = token.clone().into();
        let grandchild = second.child_token();
        first.cancel();
        assert!(!token.is_cancelled(), "a conversion never cancels the token");
        assert!(!second.is_cancelled() && !grandchild.is_cancelled());
        // Cancelling the token cancels the live conversions at once.
        token.cancel_with(CancelReason::Timeout, "budget spent");
        assert!(second.is_cancelled() && grandchild.is_cancelled());
        grandchild.cancelled().await;
        // A cancelled token converts into a cancelled one.
        let late = token.to_tokio_util();
        assert!(late.is_cancelled());
        late.cancelled().await;
        assert_eq!(token.reason(), Some(CancelReason::Timeout));
    }

    async fn converts_from_a_tokio_util_token() {
        let foreign = tokio_util::sync::CancellationToken::new();
        let token = CancellationToken::from(foreign.clone());
        let child = token.child();
        assert!(!token.is_cancelled());
        let remote = foreign.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel();
        });
        // Children are cancelled before their parent reads as cancelled:
        // wait on the parent to see both.
        token.cancelled().await;
        assert_eq!(token.reason(), Some(CancelReason::Manual));
        assert_eq!(token.message(), None);
        assert_eq!(child.reason(), Some(CancelReason::Parent(Box::new(CancelReason::Manual))));
    }

    async fn a_token_converted_from_tokio_util_is_cancelled_before_their_cancel_returns() {
        let foreign = tokio_util::sync::CancellationToken::new();
        let token = CancellationToken::from(foreign.clone());
        let ran_on = Arc::new(std::sync::Mutex::new(None));
        let recorded = ran_on.clone();
        let callback_foreign = foreign.clone();
        token
            .on_cancel(move |reason| {
                assert_eq!(reason, &CancelReason::Manual);
                // Their token is usable from our callbacks: no lock of
                // theirs is held while ours is cancelled.
                assert!(callback_foreign.is_cancelled());
                assert!(callback_foreign.child_token().is_cancelled());
                *recorded.lock().unwrap() = Some(std::thread::current().id());
            })
            .detach();
        let cancelling = std::thread::spawn(move || {
            foreign.cancel();
            (std::thread::current().id(), token.is_cancelled())
        });
        let (thread, cancelled) = cancelling.join().unwrap();
        assert!(cancelled, "ours is cancelled when their cancel() returns");
        assert_eq!(*ran_on.lock().unwrap(), Some(thread), "callbacks run on the cancelling thread");
    }

    async fn a_tokio_util_parent_cancels_a_token_converted_from_its_child() {
        let parent = tokio_util::sync::CancellationToken::new();
        // Their child is dropped at once: our token keeps the link alive.
        let token = CancellationToken::from(parent.child_token());
        let waiter = token.clone();
        let wait = async move { waiter.cancelled().await };
        let cancel = async {
            sleep(Duration::from_millis(5)).await;
            parent.cancel();
        };
        futures::join!(wait, cancel);
        assert_eq!(token.reason(), Some(CancelReason::Manual));
    }

    async fn cancelling_a_token_converted_from_tokio_util_leaves_theirs_alone() {
        let foreign = tokio_util::sync::CancellationToken::new();
        let token = CancellationToken::from(foreign.clone());
        token.cancel_with(CancelReason::Condition, "ours only");
        token.cancelled().await;
        assert!(!foreign.is_cancelled());
        // Later, their cancel no longer reaches our token.
        foreign.cancel();
        assert_eq!(token.reason(), Some(CancelReason::Condition));
        assert_eq!(token.message().as_deref(), Some("ours only"));
    }

    async fn a_cancelled_tokio_util_token_converts_into_a_cancelled_token() {
        let foreign = tokio_util::sync::CancellationToken::new();
        foreign.cancel();
        let token = CancellationToken::from(foreign);
        assert!(token.is_cancelled());
        assert_eq!(token.reason(), Some(CancelReason::Manual));
        token.cancelled().await;
    }

    async fn a_token_survives_a_round_trip_through_tokio_util() {
        let token = CancellationToken::new();
        let back = CancellationToken::from(token.to_tokio_util());
        assert_ne!(back, token, "the round trip makes a new token");
        let remote = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel_with(CancelReason::Timeout, "");
        });
        // The reason does not travel through tokio-util.
        back.cancelled().await;
        assert_eq!(back.reason(), Some(CancelReason::Manual));
        assert_eq!(token.reason(), Some(CancelReason::Timeout));
    }

    async fn a_scope_linked_to_a_token_converted_from_tokio_util_is_cancelled() {
        let foreign = tokio_util::sync::CancellationToken::new();
        let token = CancellationToken::from(foreign.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            foreign.cancel();
        });
        let cancelled = cancelable::CancelScope::new()
            .token(&token)
            .run(std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
    }
}

on_every_backend! {
    async fn a_drop_guard_cancels_its_token_when_dropped() {
        let token = CancellationToken::new();
        let guard = token.clone().drop_guard();
        assert_eq!(guard.token(), &token);
        assert!(!token.is_cancelled());
        drop(guard);
        assert!(token.is_cancelled());
        assert_eq!(token.reason(), Some(CancelReason::Manual));
    }

    async fn a_disarmed_drop_guard_leaves_its_token_alone() {
        let token = CancellationToken::new();
        let back = token.clone().drop_guard().disarm();
        assert_eq!(back, token);
        assert!(!token.is_cancelled());

        let borrowed = token.drop_guard_ref().disarm();
        assert_eq!(borrowed, &token);
        assert!(!token.is_cancelled());
    }

    async fn a_borrowing_drop_guard_cancels_its_token_when_dropped() {
        let token = CancellationToken::new();
        {
            let _guard = token.drop_guard_ref();
        }
        assert!(token.is_cancelled());
    }

    async fn a_drop_guard_cancels_when_its_owner_unwinds() {
        let token = CancellationToken::new();
        let owned = token.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = owned.drop_guard();
            panic!("the owner fails");
        }));
        assert!(outcome.is_err());
        assert!(token.is_cancelled());
    }

    async fn run_until_cancelled_returns_the_output_or_none_when_cancelled_from_a_thread() {
        let token = CancellationToken::new();
        assert_eq!(token.run_until_cancelled(async { 7 }).await, Some(7));

        let remote = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            remote.cancel();
        });
        let run = token.clone().run_until_cancelled_owned(std::future::pending::<()>());
        assert_eq!(run.await, None);
    }

    async fn run_until_cancelled_prefers_the_output_once_started() {
        // Cancelled and done in the same (second) poll: the output wins,
        // as in tokio-util.
        let token = CancellationToken::new();
        let canceller = token.clone();
        let mut first = true;
        let body = std::future::poll_fn(move |cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            } else {
                canceller.cancel();
                std::task::Poll::Ready("done")
            }
        });
        assert_eq!(token.run_until_cancelled(body).await, Some("done"));
        assert!(token.is_cancelled());
    }

    async fn a_linked_token_is_cancelled_by_any_parent_with_its_reason() {
        for cancelled_parent in 0..3 {
            let parents = [
                CancellationToken::new(),
                CancellationToken::new(),
                CancellationToken::new(),
            ];
            let linked = CancellationToken::linked(&parents);
            assert!(!linked.is_cancelled());
            let remote = parents[cancelled_parent].clone();
            let thread =
                std::thread::spawn(move || remote.cancel_with(CancelReason::Timeout, "too slow"));
            linked.cancelled().await;
            // The parent publishes its own flag after its children's.
            assert!(thread.join().unwrap());
            assert_eq!(
                linked.reason(),
                Some(CancelReason::Parent(Box::new(CancelReason::Timeout)))
            );
            assert_eq!(linked.message().as_deref(), Some("too slow"));
            for (i, parent) in parents.iter().enumerate() {
                assert_eq!(parent.is_cancelled(), i == cancelled_parent);
            }
        }
    }

    async fn a_linked_token_keeps_the_first_parents_reason() {
        let first = CancellationToken::new();
        let second = CancellationToken::new();
        let linked = CancellationToken::linked([&first, &second]);
        first.cancel_with(CancelReason::Timeout, "");
        second.cancel();
        assert_eq!(
            linked.reason(),
            Some(CancelReason::Parent(Box::new(CancelReason::Timeout)))
        );
    }

    async fn cancelling_a_linked_token_leaves_its_parents_alone() {
        let first = CancellationToken::new();
        let second = CancellationToken::new();
        let linked = CancellationToken::linked([&first, &second]);
        let grandchild = linked.child();
        assert!(linked.cancel());
        assert!(grandchild.is_cancelled());
        assert!(!first.is_cancelled());
        assert!(!second.is_cancelled());
    }

    async fn a_token_linked_to_a_cancelled_parent_is_cancelled_at_once() {
        let live = CancellationToken::new();
        let cancelled = CancellationToken::new();
        cancelled.cancel_with(CancelReason::Timeout, "");
        let linked = CancellationToken::linked([&live, &cancelled]);
        assert!(linked.is_cancelled());
        assert_eq!(
            linked.reason(),
            Some(CancelReason::Parent(Box::new(CancelReason::Timeout)))
        );
        assert!(!live.is_cancelled());
    }

    async fn a_token_linked_to_no_parent_is_a_plain_token() {
        let linked = CancellationToken::linked([]);
        assert!(!linked.is_cancelled());
        assert!(linked.cancel());
        assert_eq!(linked.reason(), Some(CancelReason::Manual));
    }

    async fn dropping_a_linked_token_unlinks_it_from_every_parent() {
        let first = CancellationToken::new();
        let second = CancellationToken::new();
        let linked = CancellationToken::linked([&first, &second]);
        let clone = linked.clone();
        assert_eq!(first.child_count(), 1);
        assert_eq!(second.child_count(), 1);
        drop(linked);
        assert_eq!(first.child_count(), 1, "a live clone keeps it linked");
        drop(clone);
        assert_eq!(first.child_count(), 0);
        assert_eq!(second.child_count(), 0);

        let many: Vec<_> = (0..10)
            .map(|_| CancellationToken::linked([&first, &second]))
            .collect();
        assert_eq!(first.child_count(), 10);
        assert_eq!(second.child_count(), 10);
        drop(many);
        assert_eq!(first.child_count(), 0);
        assert_eq!(second.child_count(), 0);
    }

    async fn a_scope_linked_to_a_linked_token_ends_with_its_parents_reason() {
        let shutdown = CancellationToken::new();
        let request = CancellationToken::new();
        let linked = CancellationToken::linked([&shutdown, &request]);
        let remote = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            remote.cancel();
        });
        let cancelled = cancelable::CancelScope::new()
            .token(&linked)
            .run(std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(
            cancelled.reason(),
            &CancelReason::Parent(Box::new(CancelReason::Manual))
        );
    }

    async fn tokens_are_equal_and_hash_alike_only_when_clones() {
        tokens_as_set_keys();
    }
}

/// Tokens as keys: they hash by identity, which cancelling does not
/// change (hence the allowed lint, which only sees interior mutability).
#[allow(clippy::mutable_key_type)]
fn tokens_as_set_keys() {
    let token = CancellationToken::new();
    let set: std::collections::HashSet<_> = [token.clone(), token.clone(), token.child()]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 2);
    assert!(set.contains(&token));
    token.cancel();
    assert!(set.contains(&token), "cancelling does not change the hash");
}

#[test]
fn token_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<CancellationToken>();
    assert!(std::mem::size_of::<CancellationToken>() <= std::mem::size_of::<usize>());
}
