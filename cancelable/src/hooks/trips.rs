//! The testing kit's `CancelAfterCheckpoints`: scopes that cancel
//! themselves at a given checkpoint of their body. Here, below the scope,
//! so that checkpoints and waits can count without importing the kit; the
//! callers (`current.rs`, `wait.rs`) hand over the scope chain they count
//! in as a lookup by operation id.
//!
//! # Invariants
//!
//! 1. `ACTIVE` counts the live trips; a checkpoint costs one atomic load
//!    while there are none.
//! 2. A trip counts while its `Arc` lives (the kit's value holds it); the
//!    registry of trips holds only `Weak`s, pruned when a trip is armed.
//! 3. The cancel runs outside the trips' lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::{CancelReason, CancellationToken};

/// Live trips; checkpoints skip the lock while there are none.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static TRIPS: Mutex<Vec<Weak<Trip>>> = Mutex::new(Vec::new());

/// A scope (by operation id) that cancels itself when a checkpoint
/// inside it finds `remaining` at zero.
pub(crate) struct Trip {
    scope_id: u64,
    remaining: AtomicU64,
    /// Checkpoints counted inside the scope.
    pub(crate) counted: AtomicU64,
}

impl Drop for Trip {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Arms a trip: the scope `scope_id` is cancelled at its checkpoint
/// number `after` (counting from 0), that is after `after` checkpoints
/// went through. It counts while the returned `Arc` lives.
pub(crate) fn arm(scope_id: u64, after: u64) -> Arc<Trip> {
    let trip = Arc::new(Trip {
        scope_id,
        remaining: AtomicU64::new(after),
        counted: AtomicU64::new(0),
    });
    let mut trips = crate::sync::lock(&TRIPS);
    trips.retain(|trip| trip.strong_count() > 0);
    trips.push(Arc::downgrade(&trip));
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    trip
}

/// Whether any trip is armed: the callers skip building their lookup
/// while none is.
#[inline]
pub(crate) fn armed() -> bool {
    ACTIVE.load(Ordering::Acquire) != 0
}

/// Counts a cancellation point for each trip whose scope `in_chain` finds
/// (by operation id, in the chain of scopes the point is inside: the
/// token of that scope), and cancels that scope when its count runs out.
#[cold]
#[inline(never)]
pub(crate) fn count(in_chain: impl Fn(u64) -> Option<CancellationToken>) {
    let trips: Vec<Arc<Trip>> = crate::sync::lock(&TRIPS)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for trip in trips {
        let Some(target) = in_chain(trip.scope_id) else {
            continue;
        };
        let number = trip.counted.fetch_add(1, Ordering::AcqRel);
        let tripped = trip
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_err();
        if tripped {
            target.cancel_with(
                CancelReason::Manual,
                format!("cancelled at checkpoint {number} by CancelAfterCheckpoints"),
            );
        }
    }
}
