//! Stress: many threads cancelling, creating children and dropping them
//! while tasks await `cancelled()`; cancel racing completion.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cancelable::{CancelReason, CancelScope, CancellationToken};
use cancelable_tests::{on_every_backend, sleep};

const THREADS: usize = 4;
const CHILDREN_PER_THREAD: usize = 20_000;
const WAITERS: usize = 64;
const RACES: u32 = 10_000;

on_every_backend! {
    async fn threads_churn_children_while_tasks_wait() {
        let root = CancellationToken::new();
        let returned = Arc::new(AtomicUsize::new(0));
        // Tasks waiting on children (and grandchildren) of the root.
        let waiters: Vec<_> = (0..WAITERS)
            .map(|i| {
                let token = if i % 2 == 0 { root.child() } else { root.child().child() };
                let returned = returned.clone();
                async move {
                    token.cancelled().await;
                    assert!(token.reason().unwrap().is_from_parent() || token.reason() == Some(CancelReason::Manual));
                    returned.fetch_add(1, Ordering::SeqCst);
                }
            })
            .collect();
        let churners: Vec<_> = (0..THREADS)
            .map(|t| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..CHILDREN_PER_THREAD {
                        let child = root.child();
                        match i % 4 {
                            0 => drop(child),
                            1 => {
                                child.cancel();
                            }
                            2 => kept.push(child.child()),
                            _ => {
                                let grandchild = child.child();
                                drop(child);
                                grandchild.cancel_with(CancelReason::Condition, "churn");
                            }
                        }
                        if kept.len() > 64 {
                            kept.drain(..32);
                        }
                    }
                    t
                })
            })
            .collect();
        let canceller = async {
            sleep(Duration::from_millis(5)).await;
            let churned: Vec<usize> = churners.into_iter().map(|c| c.join().unwrap()).collect();
            assert_eq!(churned.len(), THREADS);
            root.cancel();
        };
        futures::join!(futures::future::join_all(waiters), canceller);
        assert_eq!(returned.load(Ordering::SeqCst), WAITERS, "every waiter returned");
        assert_eq!(root.child_count(), 0, "the parent's child list is empty again");
    }

    async fn cancel_racing_completion_never_gives_both() {
        let mut completed = 0u32;
        let mut cancelled = 0u32;
        for round in 0..RACES {
            let scope = CancelScope::new();
            let handle = scope.handle();
            // Cancel from another OS thread while the body may be finishing.
            let canceller = std::thread::spawn(move || handle.cancel());
            let outcome = scope
                .run(async move {
                    if round % 3 == 0 {
                        cancelable_tests::yield_once().await;
                    }
                    round
                })
                .await;
            let cancel_won_the_flag = canceller.join().unwrap();
            match outcome {
                Ok(value) => {
                    assert_eq!(value, round);
                    completed += 1;
                }
                Err(error) => {
                    assert!(cancel_won_the_flag, "cancelled without a cancel");
                    assert_eq!(error.reason(), &CancelReason::Manual);
                    cancelled += 1;
                }
            }
        }
        assert_eq!(completed + cancelled, RACES);
    }
}
