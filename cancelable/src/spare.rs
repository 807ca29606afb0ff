//! Small per-thread lists of spare values, the one way the crate keeps
//! allocations for reuse: a scope's state (`scope/pool.rs`), a context's
//! extras and a metadata buffer (`context.rs`), a task group's run queue
//! (`group/local.rs`). Scopes start and end by
//! the thousand on one thread; taking a spare from the thread's list
//! spares the allocator, and nothing is shared between threads.
//!
//! Each user declares its own `thread_local!` list (the values differ in
//! type, and in how they are emptied before being kept) and takes and
//! keeps through these two functions. A thread whose locals are being
//! destroyed takes nothing and keeps nothing.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's list of spare values.
pub(crate) type Spares<T> = LocalKey<RefCell<Vec<T>>>;

/// A spare value from `spares`, if the thread has one.
#[inline]
pub(crate) fn take<T: 'static>(spares: &'static Spares<T>) -> Option<T> {
    spares
        .try_with(|spares| spares.borrow_mut().pop())
        .ok()
        .flatten()
}

/// Keeps `value`, emptied by the caller, in `spares` if it holds fewer
/// than `capacity`; drops it otherwise.
#[inline]
pub(crate) fn keep<T: 'static>(spares: &'static Spares<T>, value: T, capacity: usize) {
    let _ = spares.try_with(move |spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < capacity {
            spares.push(value);
        }
    });
}
