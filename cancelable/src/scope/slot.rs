//! The current-scope slot: a thread-local that a scope fills around each
//! poll of its body, so that code inside it finds it.
//!
//! A thread-local rather than `tokio::task_local!`, which exists only on
//! tokio. The slot holds a pointer to the running scope's state where its
//! future keeps it — its shared state, or a lazy scope's [`LazyScope`]
//! (`lazy.rs`) — so entering copies one pointer in and out: no
//! reference-count traffic, nothing to drop, and a thread-local without a
//! destructor. Whatever asks the slot for a lazy scope's state makes it
//! there, once, in the `LazyScope`, which the scope reads back after the
//! poll. Checkpoints and the public accessors reading the slot are in
//! `crate::current`; they reach the scope only through this file's
//! functions.
//!
//! # Invariants
//!
//! 1. **An occupant's pointer is valid while it is in the thread's slot.**
//!    Only [`enter_shared`] and [`enter_lazy`] make one,
//!    from a reference they hold for the whole call (a `&mut` for a lazy
//!    scope, which they do not use meanwhile), and they take it out of the
//!    slot before returning, unwinding included (`Restore`); a nested
//!    enter saves and restores the pointer around it the same way. The
//!    slot is a thread-local, so no other thread sees a pointer, and none
//!    is handed out: the functions here only read the state through it
//!    (or make a lazy scope's, running no user code meanwhile) and hand out
//!    clones of that state.
//! 2. **A lazy scope's state is made once**, into `LazyScope::made`; the
//!    slot then holds a pointer to that `Arc` instead, so every later
//!    reader in the same poll finds the same state.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::AccessError;

use super::lazy::LazyScope;
use super::state::{Parent, ScopeShared};
use crate::context::OperationStatus;
use crate::Cancelled;

/// The scope in the slot: a pointer into the future (or layer) running it,
/// valid while it is in the slot (invariant 1).
#[derive(Clone, Copy)]
enum Occupant {
    /// A scope with shared state.
    Shared(NonNull<Arc<ScopeShared>>),
    /// A scope with none yet (`lazy.rs`): nothing can cancel it.
    Lazy(NonNull<LazyScope>),
}

/// This thread's slot.
pub(crate) struct Current {
    /// The running scope, if any (invariant 1).
    scope: Cell<Option<Occupant>>,
    /// A shield runs between the current scope and the running code: the
    /// scope's cancellation and deadlines do not show there.
    pub(crate) shielded: Cell<bool>,
    /// The checkpoints' counter (see `crate::current`), kept here so that a
    /// checkpoint reads a single thread-local.
    pub(crate) ticks: Cell<u32>,
}

thread_local! {
    static CURRENT: Current = const {
        Current {
            scope: Cell::new(None),
            shielded: Cell::new(false),
            ticks: Cell::new(0),
        }
    };
}

impl Current {
    /// `read` applied to the current scope's shared state, made now if it
    /// had none (invariant 2); `None` outside any scope.
    #[allow(unsafe_code)]
    pub(crate) fn with_scope<R>(&self, read: impl FnOnce(&Arc<ScopeShared>) -> R) -> Option<R> {
        let shared = match self.scope.get()? {
            Occupant::Shared(shared) => shared,
            Occupant::Lazy(mut lazy) => {
                // SAFETY: the occupant of the thread's slot points to the
                // running lazy scope, which nothing else uses during this
                // call (invariant 1); no user code runs here.
                let lazy = unsafe { lazy.as_mut() };
                let shared = NonNull::from(lazy.share());
                self.scope.set(Some(Occupant::Shared(shared)));
                shared
            }
        };
        // SAFETY: the occupant of the thread's slot points to a live state
        // (invariant 1), read only for the length of `read`.
        Some(read(unsafe { shared.as_ref() }))
    }

    /// Whether the current scope is cancelled: `None` outside any scope,
    /// for a scope without shared state, whether its token source is (its
    /// deadline is the checkpoints' slow path, [`Current::cancellation`]).
    /// The checkpoints' hot path.
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) fn is_cancelled(&self) -> Option<bool> {
        match self.scope.get()? {
            // SAFETY: as in `with_scope`.
            Occupant::Shared(shared) => Some(unsafe { shared.as_ref() }.token.is_cancelled()),
            // SAFETY: as in `with_scope`.
            Occupant::Lazy(lazy) => Some(unsafe { lazy.as_ref() }.cancelled_by_source()),
        }
    }

    /// The current scope's cancellation as a checkpoint reports it (marked
    /// observed), if it is cancelled or a deadline of its chain has passed
    /// (enforced now); `None` otherwise and outside any scope.
    #[allow(unsafe_code)]
    pub(crate) fn cancellation(&self) -> Option<Cancelled> {
        if let Occupant::Lazy(lazy) = self.scope.get()? {
            // SAFETY: as in `with_scope`.
            let lazy = unsafe { lazy.as_ref() };
            if !lazy.cancelled_by_source()
                && !lazy.deadline_passed()
                && !lazy.parent_cancelled_now()
            {
                return None;
            }
            // Its token source or parent cancelled (the state made is
            // linked under it, cancelled with its cause) or its deadline
            // passed (the chain's deadlines are enforced below): its state
            // is made now.
        }
        self.with_scope(|scope| {
            (scope.token.is_cancelled() || scope.enforce_deadlines())
                .then(|| scope.observe_cancellation())
        })
        .flatten()
    }

    /// The current scope's shared state if it has any, without making it.
    #[cfg(feature = "testing")]
    #[allow(unsafe_code)]
    pub(crate) fn shared_if_made(&self) -> Option<Arc<ScopeShared>> {
        match self.scope.get()? {
            // SAFETY: as in `with_scope`.
            Occupant::Shared(shared) => Some(unsafe { shared.as_ref() }.clone()),
            Occupant::Lazy(_) => None,
        }
    }
}

/// Runs `read` on this thread's slot; `Err` while thread-local storage is
/// being torn down (thread exit).
#[inline]
pub(crate) fn try_with<R>(read: impl FnOnce(&Current) -> R) -> Result<R, AccessError> {
    CURRENT.try_with(read)
}

/// Runs `poll` with `occupant` as the current scope, not shielded,
/// restoring the previous state afterwards, even on panic.
///
/// One thread-local access: the slot is entered, polled and restored
/// inside it; a body that unwinds out of `poll` marks the operation failed.
#[inline(always)]
fn enter<R>(occupant: Option<Occupant>, poll: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        current: &'a Current,
        previous: Option<Occupant>,
        shielded: bool,
        /// `poll` returned: not unwinding.
        returned: bool,
    }
    impl Drop for Restore<'_> {
        #[inline]
        #[allow(unsafe_code)]
        fn drop(&mut self) {
            self.current.shielded.set(self.shielded);
            let ours = self.current.scope.replace(self.previous);
            if !self.returned {
                match ours {
                    // The body panicked: the panic propagates unchanged,
                    // the operation is recorded as failed.
                    // SAFETY: `ours` was in the slot until now: its scope
                    // is alive (invariant 1).
                    Some(Occupant::Shared(scope)) => {
                        unsafe { scope.as_ref() }.set_status(OperationStatus::Failed)
                    }
                    // A registered scope without state tells its
                    // registration (`lazy.rs`, invariant 3).
                    // SAFETY: as above; made from the `&mut` that
                    // `enter_lazy` holds for this whole call and does not
                    // use meanwhile (invariant 1).
                    #[cfg(feature = "registry")]
                    Some(Occupant::Lazy(mut lazy)) => unsafe { lazy.as_mut() }.panicked(),
                    _ => {}
                }
            }
        }
    }
    let mut poll = Some(poll);
    let entered = CURRENT.try_with(|current| {
        let mut restore = Restore {
            current,
            previous: current.scope.replace(occupant),
            shielded: current.shielded.replace(false),
            returned: false,
        };
        let output = (poll.take().expect("called once"))();
        restore.returned = true;
        output
    });
    match entered {
        Ok(output) => output,
        // Thread-local storage is being torn down (thread exit): poll
        // without a current scope.
        Err(_) => (poll.take().expect("not called: no slot"))(),
    }
}

/// Runs `poll` with the scope of `shared` as the current scope (see
/// `enter`).
#[inline(always)]
pub(crate) fn enter_shared<R>(shared: &Arc<ScopeShared>, poll: impl FnOnce() -> R) -> R {
    enter(Some(Occupant::Shared(NonNull::from(shared))), poll)
}

/// Runs `poll` with the scope without shared state `lazy` as the current
/// scope; its state, if the code inside made it, is then in
/// `lazy.made`.
#[inline(always)]
pub(crate) fn enter_lazy<R>(lazy: &mut LazyScope, poll: impl FnOnce() -> R) -> R {
    // From the `&mut` this call holds throughout and does not use
    // meanwhile (invariant 1).
    enter(Some(Occupant::Lazy(NonNull::from(lazy))), poll)
}

/// Runs `poll` shielded: the current scope stays current, but neither its
/// cancellation nor its deadlines show to checkpoints until a scope started
/// inside takes over; restores the previous state afterwards, even on panic.
pub(crate) fn enter_shield<R>(poll: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|current| current.shielded.set(self.0));
        }
    }
    match CURRENT.try_with(|current| current.shielded.replace(true)) {
        Ok(shielded) => {
            let _restore = Restore(shielded);
            poll()
        }
        Err(_) => poll(),
    }
}

/// `read` applied to the current scope, if there is one: its shared
/// state, made now if it had none.
pub(crate) fn with_scope<R>(read: impl FnOnce(&Arc<ScopeShared>) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| current.with_scope(read))
        .ok()
        .flatten()
}

/// A clone of the current scope's shared state.
pub(crate) fn current_shared() -> Option<Arc<ScopeShared>> {
    with_scope(Arc::clone)
}

/// `true` if a scope is current on this thread: a scope starting now has
/// a parent. Makes no lazy scope's state (unlike [`current_parent`]).
#[cfg(feature = "registry")]
pub(crate) fn has_current() -> bool {
    CURRENT
        .try_with(|current| current.scope.get().is_some())
        .unwrap_or(false)
}

/// The parent of a scope starting now: the current scope, and whether a
/// shield runs in between.
pub(crate) fn current_parent() -> Option<Parent> {
    CURRENT
        .try_with(|current| {
            let scope = current.with_scope(Arc::clone)?;
            Some(Parent {
                scope,
                shielded: current.shielded.get(),
            })
        })
        .ok()
        .flatten()
}

/// The scopes whose cancellation a shield starting now hides: the
/// [`chain`](ScopeShared::chain) of the current scope (scopes beyond the
/// nearest shield further out cannot reach the code here anyway).
pub(crate) fn current_chain() -> Vec<Arc<ScopeShared>> {
    with_scope(|scope| scope.chain().cloned().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::backend::Backend;

    fn lazy() -> LazyScope {
        LazyScope {
            backend: Some(Backend::AsyncIo),
            started: Instant::now(),
            deadline: None,
            name: super::super::lazy::Named::Name(Some("lazy".into())),
            #[cfg(feature = "tracing")]
            id: 0,
            made: None,
            source: None,
            source_waiter: super::super::lazy::NO_WAITER,
            source_link: None,
            parent: None,
        }
    }

    #[test]
    fn a_lazy_scope_s_state_is_made_once_and_handed_back() {
        let mut scope = lazy();
        let (first, second) = enter_lazy(&mut scope, || {
            (current_shared().unwrap(), current_shared().unwrap())
        });
        assert!(Arc::ptr_eq(&first, &second));
        let made = scope.made.take().expect("made inside");
        assert!(Arc::ptr_eq(&first, &made));
        assert_eq!(crate::sync::lock(&made.data).name.as_deref(), Some("lazy"));
        assert!(current_shared().is_none(), "the slot is empty again");
    }

    #[test]
    fn nested_enters_restore_the_scope_around_them() {
        let outer = Arc::new(ScopeShared::new());
        let mut inner = lazy();
        enter_shared(&outer, || {
            let seen = enter_lazy(&mut inner, current_shared).unwrap();
            assert!(!Arc::ptr_eq(&seen, &outer));
            assert!(Arc::ptr_eq(&current_shared().unwrap(), &outer));
            assert!(Arc::ptr_eq(&current_shared().unwrap(), &outer));
        });
        assert!(inner.made.is_some());
        assert!(current_shared().is_none());
    }

    #[test]
    fn an_unwinding_body_leaves_the_slot_as_it_found_it() {
        let outer = Arc::new(ScopeShared::new());
        let mut inner = lazy();
        enter_shared(&outer, || {
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                enter_lazy(&mut inner, || {
                    let _ = current_shared();
                    panic!("the body fails")
                })
            }));
            assert!(unwound.is_err());
            assert!(Arc::ptr_eq(&current_shared().unwrap(), &outer));
        });
        let made = inner.made.take().expect("made before the panic");
        assert_eq!(made.status(), OperationStatus::Failed);
        assert!(current_shared().is_none());
    }
}
