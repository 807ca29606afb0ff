//! The current-scope slot: a thread-local that a scope fills around each
//! poll of its body, so that code inside it finds it.
//!
//! A thread-local rather than `tokio::task_local!`, which exists only on
//! tokio. The scope moves its state into the slot and back, so entering
//! costs no reference-count traffic. A scope without shared state yet
//! (`lazy.rs`) puts a pointer to its [`LazyScope`] there instead; whatever
//! asks the slot for the scope's state makes it there, once
//! ([`Occupant::shared`]), and the scope takes it back with the slot's
//! contents after the poll. Checkpoints and the public accessors reading
//! the slot are in `crate::current`.
//!
//! # Invariants
//!
//! 1. **A lazy occupant's pointer is valid while it is in the slot.** Only
//!    [`enter_lazy`] makes one (it is private to this file), from the
//!    `&mut` on the scope's [`LazyScope`] it holds for the whole call;
//!    [`enter`] takes it out of the thread's slot before returning,
//!    unwinding included (`Restore`), and a nested [`enter`] saves and
//!    restores it the same way. The slot is a
//!    thread-local: no other thread sees the pointer, and it is never
//!    handed out — the slot's functions only make the scope's state
//!    through it (no user code runs meanwhile) and hand out clones of
//!    that state.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::AccessError;

use super::lazy::LazyScope;
use super::state::{Parent, ScopeShared};
use crate::context::OperationStatus;

/// The scope in the slot.
pub(crate) enum Occupant {
    /// A scope with shared state.
    Shared(Arc<ScopeShared>),
    /// A scope with none yet (`lazy.rs`): nothing can cancel it. The
    /// pointer is valid while it is in the thread's slot (invariant 1);
    /// only [`enter_lazy`] makes one.
    Lazy(NonNull<LazyScope>),
}

impl Occupant {
    /// The scope's shared state, made now if it had none.
    pub(crate) fn shared(&mut self) -> &Arc<ScopeShared> {
        if let Occupant::Lazy(lazy) = self {
            // SAFETY: an occupant of the thread's slot (the only place a
            // `Lazy` is read: every caller reached `self` through the
            // slot) points to a live `LazyScope` that nothing else uses
            // during this call (invariant 1).
            #[allow(unsafe_code)]
            let lazy = unsafe { lazy.as_mut() };
            *self = Occupant::Shared(lazy.make_shared());
        }
        match self {
            Occupant::Shared(shared) => shared,
            Occupant::Lazy(_) => unreachable!("made above"),
        }
    }

    /// The scope's shared state, if it has any.
    #[cfg(feature = "testing")]
    #[inline]
    pub(crate) fn as_shared(&self) -> Option<&Arc<ScopeShared>> {
        match self {
            Occupant::Shared(shared) => Some(shared),
            Occupant::Lazy(_) => None,
        }
    }

    /// For a scope without shared state whose deadline has passed (a
    /// checkpoint found it): its state, made now, cancelled for the
    /// deadline — the shard would have done the same at its next pend.
    pub(crate) fn lazy_deadline_passed(&mut self) -> Option<&Arc<ScopeShared>> {
        // SAFETY: as in `shared`.
        #[allow(unsafe_code)]
        let passed =
            matches!(self, Occupant::Lazy(lazy) if unsafe { lazy.as_ref() }.deadline_passed());
        match self {
            Occupant::Lazy(_) if passed => {
                let shared = self.shared();
                shared.enforce_deadlines();
                Some(shared)
            }
            _ => None,
        }
    }
}

pub(crate) struct Current {
    pub(crate) scope: RefCell<Option<Occupant>>,
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
            scope: RefCell::new(None),
            shielded: Cell::new(false),
            ticks: Cell::new(0),
        }
    };
}

/// Runs `read` on this thread's slot; `Err` while thread-local storage is
/// being torn down (thread exit).
#[inline]
pub(crate) fn try_with<R>(read: impl FnOnce(&Current) -> R) -> Result<R, AccessError> {
    CURRENT.try_with(read)
}

/// Runs `poll` with `slot`'s scope as the current scope, not shielded,
/// restoring the previous state afterwards, even on panic; `slot` then
/// holds what the thread's slot held at the end (a lazy scope's state,
/// if the code inside made it).
///
/// One thread-local access: the slot is entered, polled and restored
/// inside it; a body that unwinds out of `poll` marks the operation failed.
#[inline]
pub(crate) fn enter<R>(slot: &mut Option<Occupant>, poll: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        current: &'a Current,
        slot: &'a mut Option<Occupant>,
        previous: Option<Occupant>,
        shielded: bool,
        /// `poll` returned: not unwinding.
        returned: bool,
    }
    impl Drop for Restore<'_> {
        #[inline]
        fn drop(&mut self) {
            self.current.shielded.set(self.shielded);
            let ours = self.current.scope.replace(self.previous.take());
            if !self.returned {
                if let Some(Occupant::Shared(scope)) = &ours {
                    // The body panicked: the panic propagates unchanged,
                    // the operation is recorded as failed.
                    scope.set_status(OperationStatus::Failed);
                }
            }
            *self.slot = ours;
        }
    }
    let mut poll = Some(poll);
    let entered = CURRENT.try_with(|current| {
        let shielded = current.shielded.replace(false);
        let previous = current.scope.replace(slot.take());
        let mut restore = Restore {
            current,
            slot: &mut *slot,
            previous,
            shielded,
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

/// [`enter`] for a scope without shared state: `lazy` is the current
/// scope while `poll` runs; then its shared state, if the code inside
/// made it.
#[inline]
pub(crate) fn enter_lazy<R>(
    lazy: &mut LazyScope,
    poll: impl FnOnce() -> R,
) -> (R, Option<Arc<ScopeShared>>) {
    // The pointer comes from the `&mut` this call holds throughout, and
    // leaves the thread's slot before `enter` returns (invariant 1).
    let mut occupant = Some(Occupant::Lazy(NonNull::from(lazy)));
    let polled = enter(&mut occupant, poll);
    match occupant {
        Some(Occupant::Shared(shared)) => (polled, Some(shared)),
        _ => (polled, None),
    }
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
        .try_with(|current| {
            current
                .scope
                .borrow_mut()
                .as_mut()
                .map(|scope| read(scope.shared()))
        })
        .ok()
        .flatten()
}

/// A clone of the current scope's shared state.
pub(crate) fn current_shared() -> Option<Arc<ScopeShared>> {
    with_scope(Arc::clone)
}

/// The parent of a scope starting now: the current scope, and whether a
/// shield runs in between.
pub(crate) fn current_parent() -> Option<Parent> {
    CURRENT
        .try_with(|current| {
            let scope = current.scope.borrow_mut().as_mut()?.shared().clone();
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
