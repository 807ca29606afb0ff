//! The current-scope slot: a thread-local that a scope fills around each
//! poll of its body, so that code inside it finds it.
//!
//! A thread-local rather than `tokio::task_local!`, which exists only on
//! tokio. The scope moves its `Arc` into the slot and back, so entering
//! costs no reference-count traffic. Checkpoints and the public accessors
//! reading the slot are in `crate::current`.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::thread::AccessError;

use super::state::{Parent, ScopeShared};
use crate::context::OperationStatus;

pub(crate) struct Current {
    pub(crate) scope: RefCell<Option<Arc<ScopeShared>>>,
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
/// restoring the previous state afterwards, even on panic.
///
/// One thread-local access: the slot is entered, polled and restored
/// inside it; a body that unwinds out of `poll` marks the operation failed.
#[inline]
pub(crate) fn enter<R>(slot: &mut Option<Arc<ScopeShared>>, poll: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        current: &'a Current,
        slot: &'a mut Option<Arc<ScopeShared>>,
        previous: Option<Arc<ScopeShared>>,
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
                if let Some(scope) = &ours {
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

/// `read` applied to the current scope, if there is one.
pub(crate) fn with_scope<R>(read: impl FnOnce(&Arc<ScopeShared>) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| current.scope.borrow().as_ref().map(read))
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
            let scope = current.scope.borrow().clone()?;
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
