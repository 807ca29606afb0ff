//! `CancellationToken`: cancel from anywhere, reasons, waiters, trees, callbacks.

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
}

#[test]
fn token_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<CancellationToken>();
    assert!(std::mem::size_of::<CancellationToken>() <= std::mem::size_of::<usize>());
}
