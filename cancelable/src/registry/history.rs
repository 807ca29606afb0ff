//! The bounded history of finished operations: a ring of slots written
//! without a shared lock (one atomic cursor, one small lock per slot).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::filter::Filter;
use super::record::{Exit, Record};
use super::{lock, Now};
use crate::{CancelReason, OperationStatus};

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
    /// Cancellation lag: from the cancel request to the exit, if its
    /// cancellation was requested while it ran.
    pub lag: Option<Duration>,
    /// It completed though a cancel was requested while it ran: its body
    /// finished before it saw the cancellation (`status` is `Completed`,
    /// `reason` says what was requested).
    pub completed_despite_cancel: bool,
}

/// The public view of a finished record.
pub(crate) fn public(record: &Record, now: &mut Now) -> FinishedOperation {
    let shared = &record.shared;
    let clock_now = now.on(record.clock);
    // Only finished records enter the history; an operation caught between
    // its final status and its exit's record ends now, with that status.
    let exit = record.exit().unwrap_or_else(|| Exit {
        status: match shared.status() {
            status if status.is_finished() => status,
            _ => OperationStatus::Cancelled,
        },
        ended: clock_now,
        lag: record.cancelled_for(now.real()),
    });
    let wall = now.wall;
    let at = |instant: Instant| wall.checked_sub(clock_now.saturating_duration_since(instant));
    let (reason, message) = match shared.token.recorded_cause() {
        Some(cause) => (Some(cause.reason), cause.message.map(|m| m.to_string())),
        None => (None, None),
    };
    let (metadata, error) = match &crate::sync::lock(&shared.data).extra {
        Some(extra) => (extra.metadata.clone(), extra.error.clone()),
        None => (BTreeMap::new(), None),
    };
    FinishedOperation {
        id: record.id,
        key: record.key.as_deref().map(str::to_owned),
        name: record.name.as_deref().map(str::to_owned),
        parent_id: shared.parent().map(|parent| parent.id()),
        status: exit.status,
        reason,
        message,
        error,
        metadata,
        started_at: at(record.started),
        ended_at: at(exit.ended),
        duration: exit.ended.saturating_duration_since(record.started),
        lag: exit.lag,
        completed_despite_cancel: exit.status == OperationStatus::Completed && exit.lag.is_some(),
    }
}

/// How long ago a finished record ended.
fn age(record: &Record, now: &mut Now) -> Duration {
    let ended = record.exit().map_or(record.started, |exit| exit.ended);
    now.on(record.clock).saturating_duration_since(ended)
}

fn accepted_by(record: &Record, filter: &Filter, now: &mut Now) -> bool {
    let status = record
        .exit()
        .map_or(OperationStatus::Cancelled, |exit| exit.status);
    filter.accepts(
        status,
        record.name.as_deref(),
        || record.shared.parent().map(|parent| parent.id()),
        Some(age(record, now)),
    )
}

type Slot = Mutex<Option<(u64, Arc<Record>)>>;

/// Slots are allocated in chunks of this many, as the ring fills.
const CHUNK: usize = 256;

/// The ring: the last `capacity` operations to finish.
pub(crate) struct History {
    capacity: usize,
    cursor: AtomicU64,
    /// Chunks of `CHUNK` slots, each allocated when the cursor first
    /// reaches it: a large capacity costs memory only as the ring fills.
    /// Each slot holds the arrival number and the record, whose scope
    /// state it keeps (a few hundred bytes) until a newer operation takes
    /// the slot.
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
}

impl History {
    /// A ring of `capacity` slots (at most `MAX_HISTORY_CAPACITY`, which
    /// the builder checks), none allocated yet.
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            capacity,
            cursor: AtomicU64::new(0),
            chunks: (0..capacity.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// The slot at `index`, allocating its chunk if need be.
    fn slot(&self, index: usize) -> &Slot {
        let chunk = index / CHUNK;
        let len = CHUNK.min(self.capacity - chunk * CHUNK);
        &self.chunks[chunk].get_or_init(|| (0..len).map(|_| Mutex::new(None)).collect())
            [index % CHUNK]
    }

    /// The slots allocated so far.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter())
    }

    pub(crate) fn push(&self, finished: Arc<Record>) {
        let seq = self.cursor.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot((seq % self.capacity as u64) as usize);
        let evicted = {
            let mut slot = lock(slot);
            // A writer that stalled a whole lap behind must not overwrite a
            // newer entry.
            if slot.as_ref().is_some_and(|(newer, _)| *newer > seq) {
                return;
            }
            slot.replace((seq, finished))
        };
        // The evicted operation's state is freed outside the lock.
        drop(evicted);
    }

    /// The newest `limit` entries that pass `filter`, newest first.
    pub(crate) fn newest(&self, limit: usize, filter: &Filter, now: &mut Now) -> Vec<Arc<Record>> {
        let mut entries: Vec<(u64, Arc<Record>)> = self
            .slots()
            .filter_map(|slot| lock(slot).clone())
            .filter(|(_, record)| accepted_by(record, filter, now))
            .collect();
        entries.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        entries.truncate(limit);
        entries.into_iter().map(|(_, record)| record).collect()
    }

    /// Operation `id`, if the ring still holds it.
    pub(crate) fn find(&self, id: u64) -> Option<Arc<Record>> {
        self.slots().find_map(|slot| {
            lock(slot)
                .as_ref()
                .filter(|(_, record)| record.id == id)
                .map(|(_, record)| record.clone())
        })
    }

    /// Drops the entries that ended at least `age` ago; returns how many.
    pub(crate) fn cleanup(&self, age: Duration, now: &mut Now) -> usize {
        let mut removed = 0;
        for slot in self.slots() {
            let evicted = {
                let mut slot = lock(slot);
                match &*slot {
                    Some((_, record)) if self::age(record, now) >= age => {
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
