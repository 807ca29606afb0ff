//! A counter of live tasks, for tests that check nothing outlives its
//! group or scope.

use std::sync::atomic::{AtomicUsize, Ordering};
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
