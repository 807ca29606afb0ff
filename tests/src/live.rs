//! A counter of live tasks, for tests that check nothing outlives its
//! group or scope, and a flag set when a future is dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts live children: incremented when one starts, decremented when
/// it is dropped, whichever way it ends.
#[derive(Clone, Default)]
pub struct Live(Arc<AtomicUsize>);

/// Held by a live child; dropping it counts the child as ended.
pub struct LiveGuard(Arc<AtomicUsize>);

impl Live {
    /// Counts one more live child until the guard is dropped.
    pub fn enter(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.0.clone())
    }

    /// How many children are live now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets its flag when dropped: shows that a body or a child was dropped.
pub struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A guard to move into a future, and the flag it sets when it is
/// dropped (read it with `load(Ordering::SeqCst)`).
pub fn drop_flag() -> (DropFlag, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (DropFlag(flag.clone()), flag)
}
