//! Stuck-after-cancel detection: an operation whose cancel was requested
//! longer ago than its grace period (at least the registry's threshold)
//! or, without one, than the threshold, and that has not exited. Within
//! its grace period an operation is cleaning up as allowed: "in grace".
//!
//! Snapshots and listings flag such operations whenever they are read. To
//! *report* one (a `tracing` warning, a metrics counter) even when nobody
//! reads the registry, a watcher thread wakes when the threshold of each
//! cancelled registered operation passes. A thread, because a stuck
//! operation is by definition one that no longer returns to the executor:
//! a timer on the scope's own executor may be blocked with it, and the
//! registry must work the same on every backend. One thread serves every
//! registry of the process: it starts at the first cancellation of a
//! registered operation and sleeps on a condition variable whenever no
//! cancelled operation is pending.

use std::sync::atomic::Ordering;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::time::Instant;

#[cfg(any(feature = "tracing", feature = "metrics"))]
use super::lock;
use super::record::Record;

/// Reports a stuck operation, once per operation.
///
/// Whoever calls this (the watcher, or a read that found the operation
/// stuck) returns only once the report is out: a read that shows the stuck
/// flag never comes before its warning. The first caller writes the report
/// under the record's report lock and publishes `stuck_reported` after it;
/// a concurrent caller waits on that lock for it.
pub(crate) fn report(record: &Record, cancelled_for: Duration) {
    if record.stuck_reported.load(Ordering::Acquire) {
        return;
    }
    let _reporting = super::lock(&record.stuck_report);
    if record.stuck_reported.load(Ordering::Acquire) {
        return;
    }
    #[cfg(feature = "tracing")]
    let name = record.name();
    #[cfg(feature = "tracing")]
    tracing::warn!(
        operation = name.as_deref().unwrap_or(""),
        id = record.id,
        key = record.key.as_deref(),
        cancelled_ms = cancelled_for.as_millis() as u64,
        checkpoints_since_cancel = record.scope().checkpoints_since_cancel(),
        shielded = record
            .scope()
            .is_held_by(crate::scope::hold::HoldKind::Shield),
        "operation cancelled {cancelled_for:?} ago has not exited (stuck after cancel)"
    );
    #[cfg(feature = "metrics")]
    super::metrics::stuck(record);
    let _ = cancelled_for;
    record.stuck_reported.store(true, Ordering::Release);
}

/// Has the watcher look at `record` once its stuck threshold has passed
/// since `requested`.
#[cfg(any(feature = "tracing", feature = "metrics"))]
pub(crate) fn watch(record: &Arc<Record>, requested: Instant) {
    static WATCH: OnceLock<Arc<Watch>> = OnceLock::new();
    WATCH
        .get_or_init(|| Arc::new(Watch::default()))
        .watch(record, requested);
}

#[cfg(any(feature = "tracing", feature = "metrics"))]
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    wake: Condvar,
}

#[cfg(any(feature = "tracing", feature = "metrics"))]
#[derive(Default)]
struct WatchState {
    pending: Vec<(Instant, Weak<Record>)>,
    started: bool,
}

#[cfg(any(feature = "tracing", feature = "metrics"))]
impl Watch {
    fn watch(self: &Arc<Self>, record: &Arc<Record>, requested: Instant) {
        let Some(due) = requested.checked_add(record.stuck_limit()) else {
            return;
        };
        let mut state = lock(&self.state);
        state.pending.push((due, Arc::downgrade(record)));
        if !state.started {
            let watch = self.clone();
            let spawned = std::thread::Builder::new()
                .name("cancelable-stuck-watch".into())
                .spawn(move || watch.run());
            // Without a thread, stuck operations are still flagged when the
            // registry is read.
            state.started = spawned.is_ok();
        } else {
            self.wake.notify_one();
        }
    }

    fn run(self: Arc<Self>) {
        let mut state = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            state.pending.retain(|(at, record)| {
                let alive = record
                    .upgrade()
                    .is_some_and(|record| !record.left.load(Ordering::Acquire));
                if alive && *at <= now {
                    due.push(record.clone());
                    return false;
                }
                alive
            });
            if !due.is_empty() {
                drop(state);
                for record in due.iter().filter_map(Weak::upgrade) {
                    if let Some(ago) = record.cancelled_for(Instant::now()) {
                        if record.is_stuck(Instant::now()) {
                            report(&record, ago);
                        }
                    }
                }
                state = lock(&self.state);
                continue;
            }
            state = match state.pending.iter().map(|(at, _)| *at).min() {
                None => crate::sync::wait(&self.wake, state, None),
                Some(next) => {
                    let limit = next.saturating_duration_since(now);
                    crate::sync::wait(&self.wake, state, Some(limit))
                }
            };
        }
    }
}
