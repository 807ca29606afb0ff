//! The bounded history of finished operations: a ring of slots written
//! without a shared lock (one atomic cursor, one small lock per slot).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::filter::Filter;
use super::lock;
use super::Now;
use crate::backend::Clock;
use crate::{CancelReason, OperationStatus};

/// A finished operation as the history keeps it.
#[derive(Clone)]
pub(crate) struct Finished {
    /// Order of arrival in the ring.
    pub(crate) seq: u64,
    pub(crate) id: u64,
    pub(crate) key: Option<std::sync::Arc<str>>,
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) parent_id: Option<u64>,
    pub(crate) status: OperationStatus,
    pub(crate) reason: Option<CancelReason>,
    pub(crate) message: Option<std::sync::Arc<str>>,
    pub(crate) error: Option<String>,
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    pub(crate) clock: Clock,
    pub(crate) lag: Option<Duration>,
}

/// A finished operation, as [`Registry::history`](super::Registry::history)
/// returns it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FinishedOperation {
    /// The operation's id.
    pub id: u64,
    /// The user key it was registered under, if any.
    pub key: Option<String>,
    /// Its name, if it had one.
    pub name: Option<String>,
    /// The id of the scope it ran inside, if any.
    pub parent_id: Option<u64>,
    /// `Completed`, `Cancelled` or `Failed`.
    pub status: OperationStatus,
    /// Why it was cancelled, if it was (it may have completed anyway).
    pub reason: Option<CancelReason>,
    /// The message given with the cancellation, if any.
    pub message: Option<String>,
    /// The text of the body's own error, if it failed and the text was
    /// kept (see [`TryRun::keep_error_text`](crate::TryRun::keep_error_text)).
    pub error: Option<String>,
    /// The operation's metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it started (wall clock).
    pub started_at: Option<SystemTime>,
    /// When it ended (wall clock).
    pub ended_at: Option<SystemTime>,
    /// How long it ran.
    pub duration: Duration,
    /// Cancellation lag: from the cancel request to the exit, if it was
    /// cancelled while running.
    pub lag: Option<Duration>,
}

impl Finished {
    pub(crate) fn public(&self, now: &mut Now) -> FinishedOperation {
        let clock_now = now.on(self.clock);
        let wall = now.wall;
        let at = |instant: Instant| wall.checked_sub(clock_now.saturating_duration_since(instant));
        FinishedOperation {
            id: self.id,
            key: self.key.as_deref().map(str::to_owned),
            name: self.name.as_deref().map(str::to_owned),
            parent_id: self.parent_id,
            status: self.status,
            reason: self.reason.clone(),
            message: self.message.as_deref().map(str::to_owned),
            error: self.error.clone(),
            metadata: self.metadata.clone().unwrap_or_default(),
            started_at: at(self.started),
            ended_at: at(self.ended),
            duration: self.ended.saturating_duration_since(self.started),
            lag: self.lag,
        }
    }

    /// How long ago it ended.
    fn age(&self, now: &mut Now) -> Duration {
        now.on(self.clock).saturating_duration_since(self.ended)
    }

    fn accepted_by(&self, filter: &Filter, now: &mut Now) -> bool {
        filter.accepts(
            self.status,
            self.name.as_deref(),
            self.parent_id,
            Some(self.age(now)),
        )
    }
}

/// The ring: the last `capacity` operations to finish.
pub(crate) struct History {
    capacity: usize,
    cursor: AtomicU64,
    /// Allocated at the first push.
    slots: OnceLock<Box<[Mutex<Option<Finished>>]>>,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity,
            cursor: AtomicU64::new(0),
            slots: OnceLock::new(),
        }
    }

    fn slots(&self) -> &[Mutex<Option<Finished>>] {
        self.slots
            .get_or_init(|| (0..self.capacity).map(|_| Mutex::new(None)).collect())
    }

    pub(crate) fn push(&self, mut finished: Finished) {
        let seq = self.cursor.fetch_add(1, Ordering::Relaxed);
        finished.seq = seq;
        let slot = &self.slots()[(seq % self.capacity as u64) as usize];
        let evicted = {
            let mut slot = lock(slot);
            // A writer that stalled a whole lap behind must not overwrite a
            // newer entry.
            if slot.as_ref().is_some_and(|newer| newer.seq > seq) {
                return;
            }
            slot.replace(finished)
        };
        drop(evicted);
    }

    /// The newest `limit` entries that pass `filter`, newest first.
    pub(crate) fn newest(&self, limit: usize, filter: &Filter, now: &mut Now) -> Vec<Finished> {
        let Some(slots) = self.slots.get() else {
            return Vec::new();
        };
        let mut entries: Vec<Finished> = slots
            .iter()
            .filter_map(|slot| lock(slot).clone())
            .filter(|finished| finished.accepted_by(filter, now))
            .collect();
        entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.seq));
        entries.truncate(limit);
        entries
    }

    /// The entry of operation `id`, if the ring still holds it.
    pub(crate) fn find(&self, id: u64) -> Option<Finished> {
        self.slots
            .get()?
            .iter()
            .find_map(|slot| lock(slot).as_ref().filter(|f| f.id == id).cloned())
    }

    /// Drops the entries that ended at least `age` ago; returns how many.
    pub(crate) fn cleanup(&self, age: Duration, now: &mut Now) -> usize {
        let Some(slots) = self.slots.get() else {
            return 0;
        };
        let mut removed = 0;
        for slot in slots.iter() {
            let evicted = {
                let mut slot = lock(slot);
                match &*slot {
                    Some(finished) if finished.age(now) >= age => {
                        removed += 1;
                        slot.take()
                    }
                    _ => None,
                }
            };
            drop(evicted);
        }
        removed
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}
