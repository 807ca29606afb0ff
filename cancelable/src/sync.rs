//! Synchronisation primitives, swapped for loom's model-checked ones under
//! `--cfg cancelable_loom` so the token's state machine can be explored.
//!
//! `Arc`/`Weak` stay std's in both builds (loom has no `Weak`); the locks
//! and atomics that carry the token's state are loom's under the model.

pub(crate) use std::sync::{Arc, Weak};

#[cfg(cancelable_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

#[cfg(not(cancelable_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

/// Locks `mutex`, ignoring poisoning.
///
/// No user code ever runs while one of our locks is held (callbacks and
/// wakers run after the guard is dropped), so a poisoned lock can only come
/// from a panic inside this crate's own short critical sections; the data is
/// still consistent and refusing to go on would turn one panic into many.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(cancelable_loom)]
    {
        mutex.lock().unwrap()
    }
    #[cfg(not(cancelable_loom))]
    {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Exclusive access to a mutex's data through `&mut`, without locking.
pub(crate) fn get_mut<T>(mutex: &mut Mutex<T>) -> &mut T {
    #[cfg(cancelable_loom)]
    {
        mutex.get_mut().unwrap()
    }
    #[cfg(not(cancelable_loom))]
    {
        mutex
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
