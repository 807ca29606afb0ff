//! tokio-util's own `CancellationToken` tests (`tests/sync_cancellation_token.rs`
//! of tokio-util), ported onto ours: every test with a counterpart, so that
//! users of tokio-util's token find the behaviour they know. Each runs on
//! every backend; the futures are polled by hand with a waker that counts
//! its wake-ups, as in the originals.
//!
//! Names: tokio-util's `child_token()` is our `child()`.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use cancelable::{CancellationToken, WaitForCancellation, WaitForCancellationOwned};
use cancelable_tests::on_every_backend;

/// A waker that counts how often it is woken.
struct CountWaker(AtomicUsize);

impl Wake for CountWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counting waker and its counter.
fn count_waker() -> (Waker, Arc<CountWaker>) {
    let counter = Arc::new(CountWaker(AtomicUsize::new(0)));
    (Waker::from(counter.clone()), counter)
}

fn wakes(counter: &CountWaker) -> usize {
    counter.0.load(Ordering::SeqCst)
}

/// Polls `future` once with `waker`.
fn poll<F: Future>(future: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(waker))
}

fn hash_of(token: &CancellationToken) -> u64 {
    let mut state = DefaultHasher::default();
    token.hash(&mut state);
    state.finish()
}

on_every_backend! {
    async fn cancel_token() {
        let (waker, counter) = count_waker();
        let token = CancellationToken::new();
        assert!(!token.is_cancelled());

        let mut wait = pin!(token.cancelled());
        assert_eq!(poll(wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(wakes(&counter), 0);

        let mut wait_2 = pin!(token.cancelled());
        token.cancel();
        assert_eq!(wakes(&counter), 1);
        assert!(token.is_cancelled());

        assert_eq!(poll(wait.as_mut(), &waker), Poll::Ready(()));
        assert_eq!(poll(wait_2.as_mut(), &waker), Poll::Ready(()));
    }

    async fn cancel_token_owned() {
        let (waker, counter) = count_waker();
        let token = CancellationToken::new();
        assert!(!token.is_cancelled());

        let mut wait = pin!(token.clone().cancelled_owned());
        assert_eq!(poll(wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(wakes(&counter), 0);

        let mut wait_2 = pin!(token.clone().cancelled_owned());
        token.cancel();
        assert_eq!(wakes(&counter), 1);
        assert!(token.is_cancelled());

        assert_eq!(poll(wait.as_mut(), &waker), Poll::Ready(()));
        assert_eq!(poll(wait_2.as_mut(), &waker), Poll::Ready(()));
    }

    async fn cancel_token_owned_drop_test() {
        let (waker, counter) = count_waker();
        let token = CancellationToken::new();
        let mut future = pin!(token.cancelled_owned());
        assert_eq!(poll(future.as_mut(), &waker), Poll::Pending);
        assert_eq!(wakes(&counter), 0);
        // Dropped while pinned and pending.
    }

    async fn cancel_child_token_through_parent() {
        let (waker, counter) = count_waker();
        let token = CancellationToken::new();
        let child = token.child();
        assert!(!child.is_cancelled());

        let mut child_wait = pin!(child.cancelled());
        let mut parent_wait = pin!(token.cancelled());
        assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(wakes(&counter), 0);

        token.cancel();
        assert_eq!(wakes(&counter), 2);
        assert!(token.is_cancelled());
        assert!(child.is_cancelled());
        assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Ready(()));
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Ready(()));
    }

    async fn cancel_grandchild_token_through_parent_if_child_was_dropped() {
        let (waker, counter) = count_waker();
        let token = CancellationToken::new();
        let intermediate = token.child();
        let child = intermediate.child();
        drop(intermediate);
        assert!(!child.is_cancelled());

        let mut child_wait = pin!(child.cancelled());
        let mut parent_wait = pin!(token.cancelled());
        assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(wakes(&counter), 0);

        token.cancel();
        assert_eq!(wakes(&counter), 2);
        assert!(token.is_cancelled());
        assert!(child.is_cancelled());
        assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Ready(()));
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Ready(()));
    }

    async fn cancel_child_token_without_parent() {
        let (waker, counter) = count_waker();
        let token = CancellationToken::new();
        let child_1 = token.child();

        let mut child_wait = pin!(child_1.cancelled());
        let mut parent_wait = pin!(token.cancelled());
        assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Pending);
        assert_eq!(wakes(&counter), 0);

        child_1.cancel();
        assert_eq!(wakes(&counter), 1);
        assert!(!token.is_cancelled());
        assert!(child_1.is_cancelled());
        assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Ready(()));
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Pending);

        let child_2 = token.child();
        let mut child_wait_2 = pin!(child_2.cancelled());
        assert_eq!(poll(child_wait_2.as_mut(), &waker), Poll::Pending);
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Pending);

        token.cancel();
        assert_eq!(wakes(&counter), 3);
        assert!(token.is_cancelled());
        assert!(child_2.is_cancelled());
        assert_eq!(poll(child_wait_2.as_mut(), &waker), Poll::Ready(()));
        assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Ready(()));
    }

    async fn create_child_token_after_parent_was_cancelled() {
        for drop_child_first in [true, false] {
            let (waker, counter) = count_waker();
            let token = CancellationToken::new();
            token.cancel();

            let child = token.child();
            assert!(child.is_cancelled());
            {
                let mut child_wait = pin!(child.cancelled());
                let mut parent_wait = pin!(token.cancelled());
                assert_eq!(poll(child_wait.as_mut(), &waker), Poll::Ready(()));
                assert_eq!(poll(parent_wait.as_mut(), &waker), Poll::Ready(()));
                assert_eq!(wakes(&counter), 0);
            }
            if drop_child_first {
                drop(child);
                drop(token);
            } else {
                drop(token);
                drop(child);
            }
        }
    }

    async fn drop_multiple_child_tokens() {
        for drop_first_child_first in [true, false] {
            let token = CancellationToken::new();
            let mut children = [None, None, None];
            for child in &mut children {
                *child = Some(token.child());
            }
            assert!(!token.is_cancelled());
            assert!(!children[0].as_ref().unwrap().is_cancelled());

            for i in 0..children.len() {
                if drop_first_child_first {
                    children[i] = None;
                } else {
                    children[children.len() - 1 - i] = None;
                }
                assert!(!token.is_cancelled());
            }
            drop(token);
        }
    }

    async fn cancel_only_all_descendants() {
        let (waker, counter) = count_waker();
        let parent = CancellationToken::new();
        let token = parent.child();
        let sibling = parent.child();
        let child1 = token.child();
        let child2 = token.child();
        let grandchild = child1.child();
        let grandchild2 = child1.child();
        let great_grandchild = grandchild.child();

        let all = [
            &parent, &token, &sibling, &child1, &child2, &grandchild, &grandchild2,
            &great_grandchild,
        ];
        assert!(all.iter().all(|token| !token.is_cancelled()));

        let mut waits: Vec<_> = all.iter().map(|token| Box::pin(token.cancelled())).collect();
        for wait in &mut waits {
            assert_eq!(poll(wait.as_mut(), &waker), Poll::Pending);
        }
        assert_eq!(wakes(&counter), 0);

        token.cancel();

        assert_eq!(wakes(&counter), 6);
        assert!(!parent.is_cancelled());
        assert!(token.is_cancelled());
        assert!(!sibling.is_cancelled());
        for descendant in [&child1, &child2, &grandchild, &grandchild2, &great_grandchild] {
            assert!(descendant.is_cancelled());
        }
        // Every wait but the parent's and the sibling's (indices 0 and 2).
        for (i, wait) in waits.iter_mut().enumerate() {
            if i != 0 && i != 2 {
                assert_eq!(poll(wait.as_mut(), &waker), Poll::Ready(()));
            }
        }
        assert_eq!(wakes(&counter), 6);
    }

    async fn drop_parent_before_child_tokens() {
        let token = CancellationToken::new();
        let child1 = token.child();
        let child2 = token.child();
        drop(token);
        assert!(!child1.is_cancelled());
        drop(child1);
        drop(child2);
    }

    async fn run_until_cancelled_test() {
        let (waker, _) = count_waker();
        {
            let token = CancellationToken::new();
            let mut run = pin!(token.run_until_cancelled(std::future::pending::<()>()));
            assert_eq!(poll(run.as_mut(), &waker), Poll::Pending);
            token.cancel();
            assert_eq!(poll(run.as_mut(), &waker), Poll::Ready(None));
        }
        {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let token = CancellationToken::new();
            let mut run = pin!(token.run_until_cancelled(async move {
                rx.await.unwrap();
                42
            }));
            assert_eq!(poll(run.as_mut(), &waker), Poll::Pending);
            tx.send(()).unwrap();
            assert_eq!(poll(run.as_mut(), &waker), Poll::Ready(Some(42)));
        }
        // The future is not polled when the token is already cancelled.
        {
            let token = CancellationToken::new();
            let mut run = pin!(
                token.run_until_cancelled(async { panic!("future polled after cancellation") })
            );
            token.cancel();
            assert_eq!(poll(run.as_mut(), &waker), Poll::Ready(None::<()>));
        }
    }

    async fn run_until_cancelled_owned_test() {
        let (waker, _) = count_waker();
        {
            let token = CancellationToken::new();
            let to_cancel = token.clone();
            let takes_ownership = move |token: CancellationToken| {
                token.run_until_cancelled_owned(std::future::pending::<()>())
            };
            let mut run = pin!(takes_ownership(token));
            assert_eq!(poll(run.as_mut(), &waker), Poll::Pending);
            to_cancel.cancel();
            assert_eq!(poll(run.as_mut(), &waker), Poll::Ready(None));
        }
        {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let token = CancellationToken::new();
            let takes_ownership =
                move |token: CancellationToken, rx: futures::channel::oneshot::Receiver<()>| {
                    token.run_until_cancelled_owned(async move {
                        rx.await.unwrap();
                        42
                    })
                };
            let mut run = pin!(takes_ownership(token, rx));
            assert_eq!(poll(run.as_mut(), &waker), Poll::Pending);
            tx.send(()).unwrap();
            assert_eq!(poll(run.as_mut(), &waker), Poll::Ready(Some(42)));
        }
    }

    async fn cloned_cancellation_tokens_are_considered_equal() {
        let token = CancellationToken::new();
        assert_eq!(token, token.clone());
    }

    async fn child_cancellation_tokens_are_not_considered_equal() {
        let token = CancellationToken::new();
        assert_ne!(token, token.child());
    }

    async fn independent_cancellation_tokens_are_not_considered_equal() {
        assert_ne!(CancellationToken::new(), CancellationToken::new());
    }

    async fn cloned_cancellation_tokens_have_same_hash() {
        let token = CancellationToken::new();
        assert_eq!(hash_of(&token), hash_of(&token.clone()));
    }

    async fn different_cancellation_tokens_have_different_hash() {
        assert_ne!(
            hash_of(&CancellationToken::new()),
            hash_of(&CancellationToken::new())
        );
    }

    async fn cancel_descendant_waker_can_access_ancestor() {
        struct ReenterLockOnWake {
            token: CancellationToken,
            woken: AtomicBool,
        }

        impl Wake for ReenterLockOnWake {
            fn wake(self: Arc<Self>) {
                assert!(self.token.child().is_cancelled());
                self.woken.store(true, Ordering::SeqCst);
            }
        }

        let root = CancellationToken::new();
        let child = root.child();
        let mut wait = pin!(child.cancelled());
        let state = Arc::new(ReenterLockOnWake {
            token: root.clone(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(state.clone());
        assert_eq!(poll(wait.as_mut(), &waker), Poll::Pending);
        drop(waker);

        root.cancel();
        assert!(state.woken.load(Ordering::SeqCst));
    }
}

#[test]
fn derives_send_sync() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<CancellationToken>();
    assert_sync::<CancellationToken>();
    assert_send::<WaitForCancellation<'static>>();
    assert_sync::<WaitForCancellation<'static>>();
    assert_send::<WaitForCancellationOwned>();
    assert_sync::<WaitForCancellationOwned>();
}
