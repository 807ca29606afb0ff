//! How a group's `start_soon` children are woken and polled again (the
//! group's own run queue, `group/local.rs`), on every backend: a wake
//! from another thread, wakers kept past their child's end (a stale key
//! in the queue), children that wake themselves at every poll, and
//! children without shared state, which watch their group's token with
//! no waiter of their own, woken by the group when it is cancelled.
//!
//! A lost wake would leave a group pending for ever: each test races its
//! group against a generous timer and fails, rather than hangs, if the
//! group does not end.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use cancelable::group::TaskGroup;
use cancelable::Cancelled;
use cancelable_tests::{on_every_backend, sleep, yield_once};
use futures::future::{select, Either};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// `group`'s output, or a failure if it has not ended within
/// [`GENEROUS`] (a lost wake).
async fn ends<F: Future>(group: F) -> F::Output {
    match select(Box::pin(group), Box::pin(sleep(GENEROUS))).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("the group did not end: a child's wake was lost"),
    }
}

/// Pends until `flag` is set, keeping the waker of its latest poll in
/// `waker` for whoever sets it.
async fn until_set(flag: Arc<AtomicBool>, waker: Arc<Mutex<Option<Waker>>>) {
    poll_fn(|cx| {
        *waker.lock().unwrap() = Some(cx.waker().clone());
        match flag.load(Ordering::SeqCst) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    })
    .await
}

on_every_backend! {
    async fn a_child_woken_from_another_thread_runs_again() {
        // Each child pends until a plain thread (no executor, no reactor)
        // sets its flag and wakes it: 50 children, one wake each.
        let done = Arc::new(AtomicUsize::new(0));
        let counted = done.clone();
        ends(TaskGroup::new().run(|group| async move {
            for _ in 0..50 {
                let flag = Arc::new(AtomicBool::new(false));
                let waker = Arc::new(Mutex::new(None::<Waker>));
                let counted = counted.clone();
                let (child_flag, child_waker) = (flag.clone(), waker.clone());
                group.start_soon(async move {
                    until_set(child_flag, child_waker).await;
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Cancelled>(())
                });
                std::thread::spawn(move || {
                    // Once the child has pended (its waker is there).
                    let waker = loop {
                        if let Some(waker) = waker.lock().unwrap().clone() {
                            break waker;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    };
                    flag.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Ok::<_, Cancelled>(())
        }))
        .await
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 50);
    }

    async fn a_waker_kept_past_its_childs_end_disturbs_no_other_child() {
        // The first child ends, leaving its waker behind; the next child
        // takes its place in the group. Waking the old waker polls the
        // new child at most spuriously: it still pends until its own flag
        // is set, then ends; and the old waker woken after the group ended
        // does nothing.
        let stale = Arc::new(Mutex::new(None::<Waker>));
        let kept = stale.clone();
        let second_polls = Arc::new(AtomicUsize::new(0));
        let polls = second_polls.clone();
        ends(TaskGroup::new().run(|group| async move {
            let first = group.start_soon(poll_fn(move |cx| {
                *kept.lock().unwrap() = Some(cx.waker().clone());
                Poll::Ready(Ok::<_, Cancelled>(()))
            }));
            first.await.unwrap();
            let flag = Arc::new(AtomicBool::new(false));
            let waker = Arc::new(Mutex::new(None::<Waker>));
            let (child_flag, child_waker) = (flag.clone(), waker.clone());
            let second = group.start_soon(async move {
                polls.fetch_add(1, Ordering::SeqCst);
                until_set(child_flag, child_waker).await;
                Ok::<_, Cancelled>("second")
            });
            yield_once().await;
            for _ in 0..5 {
                stale.lock().unwrap().as_ref().expect("kept").wake_by_ref();
                yield_once().await;
            }
            assert!(!second.is_finished(), "a stale wake ended another child");
            flag.store(true, Ordering::SeqCst);
            let own = waker.lock().unwrap().clone().expect("the second child pended");
            own.wake();
            assert_eq!(second.await.unwrap(), "second");
            Ok::<_, Cancelled>(stale)
        }))
        .await
        .map(|stale| {
            // After the group's end: nothing to wake, nothing to break.
            stale.lock().unwrap().take().expect("kept").wake();
        })
        .unwrap();
        assert_eq!(second_polls.load(Ordering::SeqCst), 1);
    }

    async fn a_child_that_wakes_itself_at_every_poll_starves_no_sibling() {
        // One child yields (waking itself) until a sibling, which needs a
        // poll of its own after a yield, sets the flag it waits for.
        let flag = Arc::new(AtomicBool::new(false));
        let (spinner_flag, setter_flag) = (flag.clone(), flag.clone());
        let spins = ends(TaskGroup::new().run(|group| async move {
            let spinner = group.start_soon(async move {
                let mut spins = 0u64;
                while !spinner_flag.load(Ordering::SeqCst) {
                    spins += 1;
                    yield_once().await;
                }
                Ok::<_, Cancelled>(spins)
            });
            group.start_soon(async move {
                yield_once().await;
                yield_once().await;
                setter_flag.store(true, Ordering::SeqCst);
                Ok::<_, Cancelled>(())
            });
            Ok::<_, Cancelled>(spinner.await.unwrap())
        }))
        .await
        .unwrap();
        assert!(flag.load(Ordering::SeqCst));
        assert!(spins >= 1);
    }

    async fn children_without_state_end_when_their_group_is_cancelled_from_another_thread() {
        // Their handles dropped before their first poll: the children
        // start lazy, watching the group's token without a waiter; the
        // group, cancelled from a plain thread, wakes them itself.
        let counts = ends(TaskGroup::new().run(|group| async move {
            for _ in 0..50 {
                drop(group.start_soon(async {
                    std::future::pending::<()>().await;
                    Ok::<_, Cancelled>(())
                }));
            }
            // Every child polled once, and pending.
            yield_once().await;
            let canceller = group.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                canceller.cancel();
            });
            std::future::pending::<()>().await;
            Ok::<_, Cancelled>(())
        }))
        .await;
        assert!(counts.unwrap_err().is_cancelled());
    }
}
