//! The bounded history of finished operations: a ring of slots written
//! without a shared lock (one atomic cursor, one small lock per slot).
//! A ring of at most [`SCANNED_CAPACITY`] slots is searched by id through
//! the slots' ids (read without locks); a larger one is indexed by id
//! without locks (`index.rs`), so that looking up one finished operation
//! takes microseconds at any capacity.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::filter::Filter;
use super::index::HistoryIndex;
use super::record::{Exit, Record};
use super::{lock, Now, Registry};
use crate::context::ContextData;
use crate::seam::time::ScopeClock as Clock;
use crate::{CancelReason, OperationStatus};

/// Why an operation was cancelled and with what message.
pub(crate) type Cause = (CancelReason, Option<Arc<str>>);

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

/// A finished operation as the history keeps it: copied out of its record
/// at exit into a ring slot, over the previous occupant (its string buffers
/// reused, nothing freed), so that neither the record nor the scope's
/// state outlives the scope; made into a [`FinishedOperation`] only when
/// read.
pub(crate) struct Finished {
    id: u64,
    key: Option<Arc<str>>,
    name: Option<Cow<'static, str>>,
    parent_id: Option<u64>,
    status: OperationStatus,
    /// Why it was cancelled and with what message, if it was.
    cause: Option<Cause>,
    error: Option<String>,
    /// In the order given (a key given twice keeps its last value).
    metadata: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    clock: Clock,
    /// On `clock`.
    started: Instant,
    ended: Instant,
    lag: Option<Duration>,
}

/// What a finished operation's scope shows besides its record: its name,
/// metadata and error text, from its context or, for a lazy scope whose
/// state was never made, from its record and its end.
pub(crate) struct Shown<'a> {
    pub(crate) name: Option<&'a Cow<'static, str>>,
    pub(crate) metadata: &'a [(Cow<'static, str>, Cow<'static, str>)],
    pub(crate) error: Option<&'a String>,
}

impl<'a> Shown<'a> {
    /// What the context `data` shows; `error`, if given, is the error text.
    pub(crate) fn of(data: &'a ContextData, error: Option<&'a String>) -> Self {
        let (metadata, kept_error) = match &data.extra {
            Some(extra) => (extra.metadata.as_slice(), extra.error.as_ref()),
            None => (&[][..], None),
        };
        Shown {
            name: data.name.as_ref(),
            metadata,
            error: error.or(kept_error),
        }
    }
}

/// Sets `target` to `value`, copying into the buffer `target` already owns
/// when it can: a slot overwritten by a like operation allocates nothing.
#[allow(
    clippy::ptr_arg,
    reason = "a borrowed value stays borrowed: the variant matters"
)]
#[inline]
fn assign(target: &mut Cow<'static, str>, value: &Cow<'static, str>) {
    match (&mut *target, value) {
        (Cow::Owned(buffer), Cow::Owned(value)) => {
            buffer.clear();
            buffer.push_str(value);
        }
        _ => *target = value.clone(),
    }
}

fn assign_option(target: &mut Option<Cow<'static, str>>, value: Option<&Cow<'static, str>>) {
    match (target.as_mut(), value) {
        (Some(target), Some(value)) => assign(target, value),
        (_, value) => *target = value.cloned(),
    }
}

impl Finished {
    /// An empty entry, to be [`fill`](Self::fill)ed.
    fn new() -> Self {
        Finished {
            id: 0,
            key: None,
            name: None,
            parent_id: None,
            status: OperationStatus::Completed,
            cause: None,
            error: None,
            metadata: Vec::new(),
            clock: Clock::Std,
            started: Instant::now(),
            ended: Instant::now(),
            lag: None,
        }
    }

    /// The finished operation `record`, as it ended (`exit`).
    fn of(record: &Record, exit: Exit) -> Self {
        let scope = record.scope();
        let mut finished = Finished::new();
        let data = scope.context_data();
        finished.fill(record, exit, scope.cancel_cause(), Shown::of(&data, None));
        finished
    }

    /// Overwrites this entry with `record`, which ended as `exit`, with
    /// its token's `cause` (if cancelled) and what its scope `shown`.
    fn fill(&mut self, record: &Record, exit: Exit, cause: Option<Cause>, shown: Shown<'_>) {
        self.id = record.id;
        self.key.clone_from(&record.key);
        assign_option(&mut self.name, shown.name);
        // A lazy scope whose state nobody made ran inside no scope.
        self.parent_id = record.made().and_then(|scope| scope.parent_id());
        self.status = exit.status;
        self.cause = cause;
        self.clock = record.clock;
        self.started = record.started;
        self.ended = exit.ended;
        self.lag = exit.lag;
        let Shown {
            metadata, error, ..
        } = shown;
        match (&mut self.error, error) {
            (None, None) => {}
            (Some(buffer), Some(error)) => buffer.clone_from(error),
            (target, error) => *target = error.cloned(),
        }
        // Most operations have no metadata, and the entry they overwrite
        // none either.
        if metadata.is_empty() && self.metadata.is_empty() {
            return;
        }
        self.metadata.truncate(metadata.len());
        let reused = self.metadata.len();
        for ((key, value), (new_key, new_value)) in self.metadata.iter_mut().zip(metadata) {
            assign(key, new_key);
            assign(value, new_value);
        }
        // Like operations (a layer's requests) have as many pairs as the
        // entry they overwrite: nothing to add.
        if reused < metadata.len() {
            self.metadata.extend(metadata[reused..].iter().cloned());
        }
    }

    /// The public view, with wall-clock times as of `now`.
    pub(crate) fn public(&self, now: &mut Now) -> FinishedOperation {
        let clock_now = now.on(self.clock);
        let wall = now.wall;
        let at = |instant: Instant| wall.checked_sub(clock_now.saturating_duration_since(instant));
        let (reason, message) = match &self.cause {
            Some((reason, message)) => {
                (Some(reason.clone()), message.as_deref().map(str::to_owned))
            }
            None => (None, None),
        };
        FinishedOperation {
            id: self.id,
            key: self.key.as_deref().map(str::to_owned),
            name: self.name.as_deref().map(str::to_owned),
            parent_id: self.parent_id,
            status: self.status,
            reason,
            message,
            error: self.error.clone(),
            metadata: self
                .metadata
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            started_at: at(self.started),
            ended_at: at(self.ended),
            duration: self.ended.saturating_duration_since(self.started),
            lag: self.lag,
            completed_despite_cancel: self.status == OperationStatus::Completed
                && self.lag.is_some(),
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
            || self.parent_id,
            Some(self.age(now)),
        )
    }
}

/// The public view of `record`, which has finished or is exiting (an
/// operation caught between its final status and its exit's record ends
/// now, with that status).
pub(crate) fn public(record: &Record, now: &mut Now) -> FinishedOperation {
    let exit = record.exit().unwrap_or_else(|| Exit {
        status: match record.status() {
            status if status.is_finished() => status,
            _ => OperationStatus::Cancelled,
        },
        ended: now.on(record.clock),
        lag: record.cancelled_for(now.real()),
    });
    Finished::of(record, exit).public(now)
}

/// A ring slot's contents: the arrival number of the entry it holds
/// (`None`: empty), and the entry, whose buffers the next arrival reuses.
struct SlotState {
    seq: Option<u64>,
    entry: Finished,
}

/// A ring slot: its contents under a lock, and the id of its entry beside
/// them (written under the lock), which a look-up by id reads without
/// taking the lock to skip the slots of other ids.
struct Slot {
    id: AtomicU64,
    state: Mutex<SlotState>,
}

/// Slots are allocated in chunks of this many, as the ring fills.
const CHUNK: usize = 256;

/// The largest ring searched by id without an index: reading this many
/// slots' ids (one atomic load each, no lock) takes microseconds, and
/// spares every finished operation the index's update. Larger rings (up
/// to `MAX_HISTORY_CAPACITY`) keep a [`HistoryIndex`].
pub(crate) const SCANNED_CAPACITY: usize = 1024;

/// The ring: the last `capacity` operations to finish.
///
/// Lock order: one slot's lock at a time; the index takes none.
pub(crate) struct History {
    capacity: usize,
    cursor: AtomicU64,
    /// Chunks of `CHUNK` slots, each allocated when the cursor first
    /// reaches it: a large capacity costs memory only as the ring fills.
    /// Each slot holds a copy of what the history shows of the operation
    /// (a few hundred bytes, names and metadata values at most 1 KiB
    /// each), overwritten by a newer operation.
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    /// Where each operation of the ring is, so that a look-up by id reads
    /// a few slots instead of the whole ring: only for a ring of more than
    /// [`SCANNED_CAPACITY`] slots.
    index: Option<HistoryIndex>,
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
            index: (capacity > SCANNED_CAPACITY).then(|| HistoryIndex::new(capacity)),
        }
    }

    /// The slot at `index`, allocating its chunk if need be.
    fn slot(&self, index: usize) -> &Slot {
        let chunk = index / CHUNK;
        let len = CHUNK.min(self.capacity - chunk * CHUNK);
        &self.chunks[chunk].get_or_init(|| {
            (0..len)
                .map(|_| Slot {
                    id: AtomicU64::new(0),
                    state: Mutex::new(SlotState {
                        seq: None,
                        entry: Finished::new(),
                    }),
                })
                .collect()
        })[index % CHUNK]
    }

    /// The slot of arrival `seq`, if its chunk is allocated.
    fn slot_of(&self, seq: u64) -> Option<&Slot> {
        let index = (seq % self.capacity as u64) as usize;
        self.chunks[index / CHUNK].get()?.get(index % CHUNK)
    }

    /// The slots allocated so far.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter())
    }

    /// The first arrival still in the ring (or being overwritten).
    fn oldest(&self) -> u64 {
        self.cursor
            .load(Ordering::Acquire)
            .saturating_sub(self.capacity as u64)
    }

    /// Records `record`, which ended as `exit` (see [`Finished::fill`]),
    /// over the oldest entry.
    pub(crate) fn push(&self, record: &Record, exit: Exit, cause: Option<Cause>, shown: Shown<'_>) {
        let seq = self.cursor.fetch_add(1, Ordering::AcqRel);
        let slot = self.slot((seq % self.capacity as u64) as usize);
        {
            let mut state = lock(&slot.state);
            // A writer that stalled a whole lap behind must not overwrite
            // a newer entry.
            if state.seq.is_some_and(|newer| newer > seq) {
                return;
            }
            state.entry.fill(record, exit, cause, shown);
            state.seq = Some(seq);
            slot.id.store(record.id, Ordering::Release);
        }
        if let Some(index) = &self.index {
            index.insert(
                record.id,
                seq,
                (seq + 1).saturating_sub(self.capacity as u64),
            );
        }
    }

    /// The newest `limit` entries that pass `filter`, newest first.
    pub(crate) fn newest(
        &self,
        limit: usize,
        filter: &Filter,
        now: &mut Now,
    ) -> Vec<FinishedOperation> {
        let mut entries: Vec<(u64, &Slot)> = self
            .slots()
            .filter_map(|slot| {
                let state = lock(&slot.state);
                let seq = state.seq?;
                state.entry.accepted_by(filter, now).then_some((seq, slot))
            })
            .collect();
        entries.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        entries.truncate(limit);
        entries
            .into_iter()
            .filter_map(|(seq, slot)| {
                // Overwritten since it was chosen: a newer operation took
                // its place.
                let state = lock(&slot.state);
                (state.seq == Some(seq)).then(|| state.entry.public(now))
            })
            .collect()
    }

    /// Operation `id`, if the ring still holds it: in a ring of at most
    /// [`SCANNED_CAPACITY`] slots, the slot whose id is `id`; in a larger
    /// one, a few cells of the index and the slots they name, whatever the
    /// capacity (the whole ring only in the rare case [`HistoryIndex`]
    /// describes).
    pub(crate) fn find(&self, id: u64) -> Option<FinishedOperation> {
        let in_slot = |slot: &Slot| {
            if slot.id.load(Ordering::Acquire) != id {
                return None;
            }
            let state = lock(&slot.state);
            (state.seq.is_some() && state.entry.id == id)
                .then(|| state.entry.public(&mut Now::new()))
        };
        let Some(index) = &self.index else {
            return self.slots().find_map(in_slot);
        };
        let indexed = index
            .candidates(id)
            .find_map(|seq| in_slot(self.slot_of(seq)?));
        match indexed {
            Some(found) => Some(found),
            None if index.may_have_lost(self.oldest()) => self.slots().find_map(in_slot),
            None => None,
        }
    }

    /// The newest entry whose key is `key`, read in place (nothing is
    /// copied but the one found).
    pub(crate) fn newest_with_key(&self, key: &str) -> Option<FinishedOperation> {
        let (_, slot) = self
            .slots()
            .filter_map(|slot| {
                let state = lock(&slot.state);
                let seq = state.seq?;
                (state.entry.key.as_deref() == Some(key)).then_some((seq, slot))
            })
            .max_by_key(|(seq, _)| *seq)?;
        let state = lock(&slot.state);
        (state.entry.key.as_deref() == Some(key)).then(|| state.entry.public(&mut Now::new()))
    }

    /// Drops the entries that ended at least `age` ago; returns how many.
    pub(crate) fn cleanup(&self, age: Duration, now: &mut Now) -> usize {
        let mut removed = 0;
        for slot in self.slots() {
            let mut slot = lock(&slot.state);
            let slot = &mut *slot;
            if slot.seq.is_some() && slot.entry.age(now) >= age {
                removed += 1;
                // Its index cell names a slot without it: a look-up checks
                // the slot, and a newer insertion reuses the cell.
                slot.seq = None;
                // Its strings are freed: a cleaned-up history holds no
                // memory beyond its slots.
                slot.entry = Finished::new();
            }
        }
        removed
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Registry {
    /// The finished operation `id`, if the history still remembers it:
    /// microseconds at any [`history_capacity`](Self::history_capacity)
    /// (up to 1,024 entries, a read of each entry's id, without a lock;
    /// beyond, an index look-up), unlike searching
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
        self.inner.history.find(id)
    }

    /// The newest finished operation that was registered under `key`, if
    /// the history still remembers one. Reads the history in place, copying
    /// only the operation found.
    pub fn finished_by_key(&self, key: &str) -> Option<FinishedOperation> {
        self.inner.history.newest_with_key(key)
    }
}
