//! Model checking of the token's state machine with loom.
//!
//! Run with `RUSTFLAGS="--cfg cancelable_loom" cargo test -p cancelable --release --test loom`
//! (a project-specific cfg: plain `--cfg loom` breaks dependencies of
//! async-io). Every interleaving of the threads below is explored, up to
//! `LOOM_MAX_PREEMPTIONS` preemptions.
#![cfg(cancelable_loom)]

use cancelable::{CancelReason, CancellationToken};
use loom::thread;

#[test]
fn concurrent_cancels_record_exactly_one_reason() {
    loom::model(|| {
        let token = CancellationToken::new();
        let other = token.clone();
        let racer = thread::spawn(move || other.cancel_with(CancelReason::Timeout, "timer"));
        let mine = token.cancel_with(CancelReason::Condition, "predicate");
        let theirs = racer.join().unwrap();
        assert!(mine ^ theirs, "exactly one cancel wins");
        let expected = if theirs {
            (CancelReason::Timeout, "timer")
        } else {
            (CancelReason::Condition, "predicate")
        };
        assert_eq!(token.reason(), Some(expected.0));
        assert_eq!(token.message().as_deref(), Some(expected.1));
    });
}

#[test]
fn a_waiter_is_never_lost() {
    loom::model(|| {
        let token = CancellationToken::new();
        let other = token.clone();
        let canceller = thread::spawn(move || {
            other.cancel();
        });
        loom::future::block_on(token.cancelled());
        assert!(token.is_cancelled());
        canceller.join().unwrap();
    });
}

#[test]
fn a_child_created_during_cancel_is_cancelled() {
    loom::model(|| {
        let parent = CancellationToken::new();
        let other = parent.clone();
        let canceller = thread::spawn(move || {
            other.cancel();
        });
        let child = parent.child();
        canceller.join().unwrap();
        assert!(child.is_cancelled());
        assert_eq!(
            child.reason(),
            Some(CancelReason::Parent(Box::new(CancelReason::Manual)))
        );
    });
}

#[test]
fn a_child_dropped_during_cancel_leaves_no_entry() {
    loom::model(|| {
        let parent = CancellationToken::new();
        let child = parent.child();
        let dropper = thread::spawn(move || drop(child));
        parent.cancel();
        dropper.join().unwrap();
        assert_eq!(parent.child_count(), 0);
    });
}

#[test]
#[ignore = "open: loom reports a causality violation (the canceller loads the new \
            node's flag after upgrading std's `Weak`, which loom does not model); \
            `child()` in the same race passes; to be explained before enabling"]
fn a_token_linked_while_its_first_parent_cancels_is_cancelled_and_unlinks_from_both() {
    loom::model(|| {
        let first = CancellationToken::new();
        let second = CancellationToken::new();
        let remote = first.clone();
        let canceller = thread::spawn(move || {
            remote.cancel();
        });
        let linked = CancellationToken::linked([&first, &second]);
        canceller.join().unwrap();
        assert!(linked.is_cancelled());
        assert_eq!(
            linked.reason(),
            Some(CancelReason::Parent(Box::new(CancelReason::Manual)))
        );
        drop(linked);
        assert_eq!(first.child_count(), 0);
        assert_eq!(second.child_count(), 0);
    });
}

#[test]
fn a_child_dropped_without_cancel_detaches() {
    loom::model(|| {
        let parent = CancellationToken::new();
        let first = parent.child();
        let second = parent.child();
        let dropper = thread::spawn(move || drop(first));
        drop(second);
        dropper.join().unwrap();
        assert_eq!(parent.child_count(), 0);
        assert!(!parent.is_cancelled());
    });
}

#[test]
fn a_callback_registered_during_cancel_runs_exactly_once() {
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    loom::model(|| {
        let token = CancellationToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let other = token.clone();
        let canceller = thread::spawn(move || {
            other.cancel();
        });
        let counted = calls.clone();
        token
            .on_cancel(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .detach();
        canceller.join().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn cancel_child_creation_child_drop_and_waiting_all_at_once() {
    loom::model(|| {
        let parent = CancellationToken::new();
        let doomed = parent.child();
        let canceller = {
            let parent = parent.clone();
            thread::spawn(move || parent.cancel_with(CancelReason::Timeout, ""))
        };
        let waiter = {
            let parent = parent.clone();
            thread::spawn(move || {
                let child = parent.child();
                loom::future::block_on(child.cancelled());
                child.reason()
            })
        };
        drop(doomed);
        let won = parent.cancel();
        let timer_won = canceller.join().unwrap();
        assert!(won ^ timer_won);
        let root = if timer_won {
            CancelReason::Timeout
        } else {
            CancelReason::Manual
        };
        assert_eq!(
            waiter.join().unwrap(),
            Some(CancelReason::Parent(Box::new(root)))
        );
        assert_eq!(parent.child_count(), 0);
    });
}

#[test]
fn a_token_read_as_cancelled_has_its_subtree_cancelled() {
    loom::model(|| {
        let parent = CancellationToken::new();
        let child = parent.child();
        let grandchild = child.child();
        let canceller = {
            let parent = parent.clone();
            thread::spawn(move || parent.cancel())
        };
        // Whoever observes the parent cancelled — by waiting or by reading
        // the flag — finds the whole subtree cancelled.
        loom::future::block_on(parent.cancelled());
        assert!(child.is_cancelled());
        assert!(grandchild.is_cancelled());
        assert!(canceller.join().unwrap());
    });
}

/// A scope without shared state whose one source is a token waits on it
/// with a waiter of its own (`Listener::Scope`, `scope/lazy.rs`): a cancel
/// racing its pend is never lost, the scope ends with the token's reason,
/// and its waiter leaves the token however the race went.
#[test]
fn a_lazy_scope_waiting_on_its_token_source_is_never_lost() {
    loom::model(|| {
        let token = CancellationToken::new();
        let other = token.clone();
        let canceller = thread::spawn(move || other.cancel_with(CancelReason::Condition, "done"));
        let outcome = loom::future::block_on(
            cancelable::CancelScope::new()
                .token(&token)
                .run(std::future::pending::<()>()),
        );
        let cancelled = outcome.expect_err("the token's cancel ends the scope");
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        assert_eq!(cancelled.message(), Some("done"));
        assert!(canceller.join().unwrap());
        assert_eq!(token.child_count(), 0, "the scope's waiter left the token");
    });
}

/// A model of how a task group's child and its handle agree on the child's
/// scope state (`group/slot.rs`, `Slot`'s docs), written with loom's
/// primitives step for step as `Slot::scope` (the handle asking),
/// `TaskHandle`'s drop and `Slot::before_start` (the child's first poll)
/// do it. A state is an `Arc<AtomicBool>`: cancelled or not.
mod group_child_reach {
    use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use loom::sync::{Arc, Mutex};

    const HANDLE: u8 = 1;
    const MADE: u8 = 2;
    const KNOWN: u8 = 4;

    type State = Arc<AtomicBool>;

    enum Reach {
        Unknown,
        Made(State),
        Known(State),
    }

    pub(super) struct Slot {
        reach: AtomicU8,
        scope: Mutex<Reach>,
    }

    impl Slot {
        pub(super) fn new() -> Self {
            Slot {
                reach: AtomicU8::new(HANDLE),
                scope: Mutex::new(Reach::Unknown),
            }
        }

        /// `Slot::scope`: the handle asks for the child's state.
        fn scope(&self) -> State {
            let mut scope = self.scope.lock().unwrap();
            match &*scope {
                Reach::Known(state) | Reach::Made(state) => state.clone(),
                Reach::Unknown => {
                    let state = State::default();
                    *scope = Reach::Made(state.clone());
                    self.reach.fetch_or(MADE, Ordering::Release);
                    state
                }
            }
        }

        /// `TaskHandle::cancel`: `true` if this call cancelled the state.
        pub(super) fn cancel(&self) -> bool {
            !self.scope().swap(true, Ordering::AcqRel)
        }

        /// `TaskHandle`'s drop.
        pub(super) fn drop_handle(&self) {
            self.reach.fetch_and(!HANDLE, Ordering::Release);
        }

        /// `Slot::before_start`: the state the child runs in, `None` for a
        /// lazy start.
        pub(super) fn before_start(&self) -> Option<State> {
            let reach = self.reach.load(Ordering::Acquire);
            if reach & MADE == 0 && (reach & HANDLE == 0 || reach & KNOWN != 0) {
                return None;
            }
            let mut scope = self.scope.lock().unwrap();
            let state = match std::mem::replace(&mut *scope, Reach::Unknown) {
                Reach::Made(state) => state,
                Reach::Known(state) => {
                    *scope = Reach::Known(state.clone());
                    return Some(state);
                }
                Reach::Unknown => State::default(),
            };
            *scope = Reach::Known(state.clone());
            self.reach.fetch_or(KNOWN, Ordering::Release);
            Some(state)
        }
    }
}

#[test]
fn a_group_child_s_handle_never_loses_a_cancel_racing_the_child_s_start() {
    loom::model(|| {
        let slot = std::sync::Arc::new(group_child_reach::Slot::new());
        let handle = slot.clone();
        let handle = thread::spawn(move || {
            let cancelled = handle.cancel();
            handle.drop_handle();
            cancelled
        });
        let state = slot.before_start();
        let cancelled = handle.join().unwrap();
        assert!(cancelled, "the first cancel of a child that has not ended");
        // The child runs in the one state the handle cancelled: never
        // lazy, never in a state of its own beside the handle's.
        let state = state.expect("a child its handle reached is not lazy");
        assert!(state.load(std::sync::atomic::Ordering::Acquire));
    });
}

#[test]
fn a_group_child_whose_handle_is_dropped_starts_lazy_or_reachable_never_split() {
    loom::model(|| {
        let slot = std::sync::Arc::new(group_child_reach::Slot::new());
        let handle = slot.clone();
        let dropper = thread::spawn(move || handle.drop_handle());
        // Lazy (`None`) or with a state: either is right; neither may
        // deadlock or leave a state the child did not adopt.
        let _ = slot.before_start();
        dropper.join().unwrap();
    });
}

/// A model of a task group's run queue (`group/local.rs`), written with
/// loom's primitives step for step as `Local::wake` (a child's waker),
/// `Local::unqueue` and `LocalSet::poll` (the group's pass) do it. The
/// child waits on a channel that another thread fills: its poll registers
/// interest under the channel's lock, as a real wait registers its waker.
mod group_local_wake {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::{Arc, Mutex};

    /// The group's side: its `ready` list and whether its task was woken.
    #[derive(Default)]
    pub(super) struct Group {
        ready: Mutex<Vec<usize>>,
        woken: AtomicBool,
    }

    /// One child: its `Local` (key 0) and the channel it waits on.
    pub(super) struct Child {
        group: Arc<Group>,
        queued: AtomicBool,
        /// The channel: its value, and whether the child waits on it.
        channel: Mutex<(bool, bool)>,
        pub(super) done: AtomicBool,
    }

    impl Child {
        /// A child that pended once (unqueued, waiting on the channel).
        pub(super) fn pending(group: &Arc<Group>) -> Self {
            Child {
                group: group.clone(),
                queued: AtomicBool::new(false),
                channel: Mutex::new((false, true)),
                done: AtomicBool::new(false),
            }
        }

        /// `Local::wake`.
        pub(super) fn wake(&self) {
            if !self.queued.swap(true, Ordering::AcqRel) {
                self.group.ready.lock().unwrap().push(0);
                self.group.woken.store(true, Ordering::Release);
            }
        }

        /// The other thread: fills the channel and wakes the waiter.
        pub(super) fn send(&self) {
            let waiting = {
                let mut channel = self.channel.lock().unwrap();
                channel.0 = true;
                std::mem::replace(&mut channel.1, false)
            };
            if waiting {
                self.wake();
            }
        }

        /// `LocalSet::poll`: one pass over the ready list, each child
        /// unqueued (`Local::unqueue`) before its poll.
        pub(super) fn group_pass(&self) {
            // The group's task is being polled: its earlier wake is spent.
            self.group.woken.store(false, Ordering::Release);
            let batch = std::mem::take(&mut *self.group.ready.lock().unwrap());
            for _key in batch {
                if self.done.load(Ordering::Acquire) {
                    continue;
                }
                self.queued.store(false, Ordering::Release);
                let mut channel = self.channel.lock().unwrap();
                if channel.0 {
                    self.done.store(true, Ordering::Release);
                } else {
                    channel.1 = true;
                }
            }
        }

        /// Woken and queued for the group's next pass.
        pub(super) fn queued_for_next_pass(&self) -> bool {
            self.group.woken.load(Ordering::Acquire) && !self.group.ready.lock().unwrap().is_empty()
        }
    }
}

#[test]
fn a_group_child_s_wake_is_never_lost_racing_the_group_s_pass() {
    loom::model(|| {
        let group = loom::sync::Arc::new(group_local_wake::Group::default());
        let child = std::sync::Arc::new(group_local_wake::Child::pending(&group));
        // A spurious wake queued the child: the group's pass polls it
        // while the channel is filled from another thread.
        child.wake();
        let sender = child.clone();
        let sender = thread::spawn(move || sender.send());
        child.group_pass();
        sender.join().unwrap();
        // Either the pass saw the value, or the child is queued again and
        // the group's task woken: the next pass sees it.
        assert!(
            child.done.load(std::sync::atomic::Ordering::Acquire) || child.queued_for_next_pass(),
            "a wake was lost"
        );
    });
}
