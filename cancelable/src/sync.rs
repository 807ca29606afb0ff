//! Synchronisation primitives, swapped for loom's model-checked ones under
//! `--cfg cancelable_loom` so the token's state machine can be explored.
//!
//! `Arc`/`Weak` stay std's in both builds (loom has no `Weak`); the locks
//! and atomics that carry the token's state are loom's under the model.

pub(crate) use std::sync::{Arc, PoisonError, Weak};

#[cfg(cancelable_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Mutex,
};

#[cfg(not(cancelable_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Mutex,
};

/// Locks `mutex`, ignoring poisoning: the one way the crate takes its
/// locks, `std`'s (statics included) and, under `--cfg cancelable_loom`,
/// loom's.
///
/// No user code ever runs while one of our locks is held (callbacks and
/// wakers run after the guard is dropped), so a poisoned lock can only come
/// from a panic inside this crate's own short critical sections; the data is
/// still consistent and refusing to go on would turn one panic into many.
pub(crate) fn lock<M: Lock + ?Sized>(mutex: &M) -> M::Guard<'_> {
    mutex.lock_ignoring_poison()
}

/// A mutex [`lock`] takes: `std`'s, and loom's in a loom build.
pub(crate) trait Lock {
    /// What holds the lock.
    type Guard<'a>
    where
        Self: 'a;
    /// Locks, ignoring poisoning.
    fn lock_ignoring_poison(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> Lock for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(cancelable_loom)]
impl<T> Lock for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        // loom's model explores no panics inside a critical section.
        self.lock().unwrap()
    }
}

/// Reads `lock`, ignoring poisoning (see [`lock`]).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn read<T: ?Sized>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `lock`, ignoring poisoning (see [`lock`]).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn write<T: ?Sized>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` with `guard`, ignoring poisoning (see [`lock`]);
/// at most `limit` if one is given.
// Used by the registry's stuck reporter and the testing kit's clock.
#[cfg_attr(
    not(any(
        all(feature = "registry", any(feature = "tracing", feature = "metrics")),
        feature = "testing"
    )),
    allow(dead_code)
)]
pub(crate) fn wait<'a, T>(
    condvar: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    limit: Option<std::time::Duration>,
) -> std::sync::MutexGuard<'a, T> {
    match limit {
        None => condvar.wait(guard).unwrap_or_else(PoisonError::into_inner),
        Some(limit) => {
            condvar
                .wait_timeout(guard, limit)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
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
        mutex.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}
