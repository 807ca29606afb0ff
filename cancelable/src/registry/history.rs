//! The bounded history of finished operations: a ring of slots written
//! without a shared lock (one atomic cursor, one small lock per slot),
//! indexed by id (sharded as the live set), so that looking up one
//! finished operation costs the same at any capacity.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::filter::Filter;
use super::live::{shard_of, IdMap, SHARDS};
use super::record::{Exit, Record};
use super::{lock, Now, Registry};
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
    /// kept (see [`ScopeTryRun::keep_error_text`](crate::ScopeTryRun::keep_error_text)).
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

/// A shard of the index: operation id → arrival number, whose slot is
/// `arrival % capacity`. Sharded as the live set is.
type IndexShard = Mutex<IndexState>;

#[derive(Default)]
struct IndexState {
    at: IdMap<u64>,
    /// The size at which the shard is pruned next: twice what it kept at
    /// the last pruning, so that pruning costs O(1) per push on average.
    prune_at: usize,
}

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
    /// the slot (names and metadata values at most 1 KiB each).
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    /// Where each operation of the ring is, so that a look-up by id reads
    /// one slot instead of the whole ring. A look-up checks that the slot
    /// still holds the operation, so an entry whose record left the ring
    /// is harmless: such entries are pruned in bulk when a shard holds
    /// twice what it kept last time, which keeps a push to one lock and one
    /// insert.
    index: OnceLock<Box<[IndexShard]>>,
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
            index: OnceLock::new(),
        }
    }

    fn index_shard(&self, id: u64) -> &IndexShard {
        &self
            .index
            .get_or_init(|| (0..SHARDS).map(|_| Mutex::default()).collect())[shard_of(id)]
    }

    /// Notes that `id` arrived as number `seq`, pruning the shard's
    /// entries that a lap of the ring has overwritten since when it has
    /// doubled.
    fn index(&self, id: u64, seq: u64) {
        let capacity = self.capacity as u64;
        let mut shard = lock(self.index_shard(id));
        let shard = &mut *shard;
        shard.at.insert(id, seq);
        if shard.at.len() > shard.prune_at {
            let newest = self.cursor.load(Ordering::Relaxed);
            shard.at.retain(|_, at| *at + capacity >= newest);
            shard.prune_at = (2 * shard.at.len()).max(2 * (self.capacity / SHARDS).max(16));
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
        let id = finished.id;
        let evicted = {
            let mut slot = lock(slot);
            // A writer that stalled a whole lap behind must not overwrite a
            // newer entry.
            if slot.as_ref().is_some_and(|(newer, _)| *newer > seq) {
                return;
            }
            slot.replace((seq, finished))
        };
        self.index(id, seq);
        // The evicted operation's state is freed outside the locks.
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

    /// Operation `id`, if the ring still holds it: one index look-up and
    /// one slot, whatever the capacity.
    pub(crate) fn find(&self, id: u64) -> Option<Arc<Record>> {
        let seq = *lock(self.index.get()?.get(shard_of(id))?).at.get(&id)?;
        let index = (seq % self.capacity as u64) as usize;
        let slot = lock(self.chunks[index / CHUNK].get()?.get(index % CHUNK)?);
        match &*slot {
            Some((at, record)) if *at == seq && record.id == id => Some(record.clone()),
            _ => None,
        }
    }

    /// The newest entry that `matches`, read in place (nothing is copied
    /// but the one found).
    pub(crate) fn newest_matching(&self, matches: impl Fn(&Record) -> bool) -> Option<Arc<Record>> {
        self.slots()
            .filter_map(|slot| {
                let slot = lock(slot);
                let (seq, record) = slot.as_ref()?;
                matches(record).then(|| (*seq, record.clone()))
            })
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, record)| record)
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

impl Registry {
    /// The finished operation `id`, if the history still remembers it: an
    /// index look-up (microseconds at any
    /// [`history_capacity`](Self::history_capacity)), unlike searching
    /// [`history`](Self::history), which copies every entry.
    ///
    /// ```
    /// use cancelable::{registry::Registry, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let scope = CancelScope::new().name("export").register_in(&registry);
    /// let id = scope.handle().id();
    /// scope.run(async {}).await.unwrap();
    /// assert_eq!(registry.finished(id).unwrap().name.as_deref(), Some("export"));
    /// assert!(registry.finished(id + 1).is_none());
    /// # });
    /// ```
    pub fn finished(&self, id: u64) -> Option<FinishedOperation> {
        let record = self.inner.history.find(id)?;
        Some(public(&record, &mut Now::new()))
    }

    /// The newest finished operation that was registered under `key`, if
    /// the history still remembers one. Reads the history in place, copying
    /// only the operation found.
    pub fn finished_by_key(&self, key: &str) -> Option<FinishedOperation> {
        let record = self
            .inner
            .history
            .newest_matching(|record| record.key.as_deref() == Some(key))?;
        Some(public(&record, &mut Now::new()))
    }
}
