//! The live set: one record per registered running operation, in shards
//! chosen by id, and the entry a running scope holds to stay in it.
//!
//! # Invariants
//! 1. A record is in the live set from the scope's start (`Entry::join`) to
//!    its exit (`Entry::exit`, from the registration's `end` or `Drop`):
//!    the scope future owns the entry,
//!    so no record stays live after its scope's run, whatever way the run
//!    ends. The history then keeps a copy of what it shows (`Finished`),
//!    not the record: the record, and the scope's state with it, are
//!    released at exit (the record kept for the thread's next
//!    registration when nobody else holds it).
//! 2. A record's shard is a function of its id alone, so lookups by id take
//!    one shard lock. Ids come in per-thread blocks of 1,024 (see
//!    `next_operation_id`); a shard per block keeps threads that register
//!    at the same time on different shards.
//! 3. Per-name statistics live in the shard of the operation that finishes
//!    and are updated under the lock its exit takes anyway.
//!
//! # Deadlock safety
//! A shard lock, a key lock or a history slot lock is never held while
//! another of them is taken, except: a key lock around the key holder's
//! context lock; a history slot lock around an index shard lock; and at a
//! scope's exit its context lock around the history's locks, then around
//! its shard's lock. Nothing takes a context lock under a registry lock
//! but the key lock, which is never taken under a context lock; no user
//! code runs under any of them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::sync::Weak;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::history::Shown;
pub(crate) use super::index::{shard_of, LiveSlots, SHARDS};
use super::record::{Exit, Joining, KeyClaim, Record};
use super::stats::ByName;
use super::{lock, Inner, Registry, RegistryError};
use crate::scope::seam::{self, LazyEnd, LazyStart, RegistryHook, ScopeView};
use crate::scope::HookSlot;
use crate::seam::time::ScopeClock as Clock;
use crate::{CancellationToken, OperationStatus};

/// A shard of the live set, alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) state: Mutex<ShardState>,
}

#[derive(Default)]
pub(crate) struct ShardState {
    pub(crate) live: LiveSlots,
    pub(crate) stats: ByName,
}

/// A shard of the key table.
pub(crate) type KeyShard = Mutex<HashMap<Arc<str>, KeyHolder>>;

/// Who holds a key.
pub(crate) struct KeyHolder {
    pub(crate) id: u64,
    pub(crate) shared: ScopeView,
    /// The name configured when the key was claimed, if any.
    pub(crate) name: Option<Cow<'static, str>>,
}

/// What `CancelScope::register()` / `.key(..)` ask for: kept in the scope's
/// configuration until it starts.
pub(crate) struct Request {
    pub(crate) registry: Registry,
    pub(crate) key: Option<KeyClaim>,
}

/// A running scope's place in the registry: the scope's
/// [`Registration`] holds it from the start; its exit takes the operation
/// out of the live set and records it in the history and statistics.
///
/// It owns the registry reference the request brought: registering
/// touches the registry's reference count once.
pub(crate) struct Entry {
    record: Arc<Record>,
    registry: Registry,
}

/// What a registered scope carries in its extras, as its `StartHook`:
/// the request until the scope starts, then its entry. The scope ends it
/// when it finishes (before its user callbacks), which leaves the live set
/// and hands the registration back to the thread's pool; dropping it
/// instead — the scope's future dropped mid-run — leaves the live set
/// too; dropping it unstarted releases a claimed key.
#[derive(Default)]
pub(crate) struct Registration {
    pub(crate) request: Option<Request>,
    entry: Option<Entry>,
    /// The record of the operation this registration last held, emptied,
    /// for the next one (see `take_pooled`).
    spare: Option<Arc<Record>>,
}

impl Registration {
    /// Makes the scope's empty hook slot a registration holding
    /// `request` (a pooled one if the thread has any); `Err(request)` if
    /// the slot is not empty.
    pub(crate) fn install(slot: &mut HookSlot, request: Request) -> Result<(), Request> {
        if slot.is_some() {
            return Err(request);
        }
        let mut registration = take_pooled();
        registration.request = Some(request);
        *slot = Some(registration);
        Ok(())
    }

    /// The request in a scope's hook slot, making the slot a registration
    /// if it is empty (the registry is the only user of the slot).
    pub(crate) fn request_in(slot: &mut HookSlot) -> &mut Option<Request> {
        let is_ours = slot
            .as_mut()
            .is_some_and(|hook| hook.as_any_mut().is::<Registration>());
        if !is_ours {
            *slot = Some(take_pooled());
        }
        let registration = slot
            .as_mut()
            .and_then(|hook| hook.as_any_mut().downcast_mut::<Registration>());
        match registration {
            Some(registration) => &mut registration.request,
            None => unreachable!("the slot holds a registration, set just above"),
        }
    }
}

impl RegistryHook for Registration {
    fn start(&mut self, scope: ScopeView, clock: Clock, started: Instant) {
        if let Some(request) = self.request.take() {
            let spare = self.spare.take();
            let scope = Joining::Shared(scope);
            self.entry = Some(Entry::join(scope, request, clock, started, spare));
        }
    }

    fn start_lazy(&mut self, start: LazyStart<'_>) -> Option<CancellationToken> {
        let LazyStart {
            id,
            name,
            clock,
            started,
            deadline,
        } = start;
        let request = self.request.take()?;
        let spare = self.spare.take();
        let name = name.take();
        let scope = Joining::Lazy { name, deadline };
        let entry = Entry::join_as(scope, id, request, clock, started, spare);
        let token = entry.record.token().clone();
        self.entry = Some(entry);
        Some(token)
    }

    fn state(&self) -> Option<ScopeView> {
        self.entry
            .as_ref()
            .map(|entry| entry.record.scope().clone())
    }

    fn made(&self) -> Option<ScopeView> {
        self.entry.as_ref()?.record.made().cloned()
    }

    fn id(&self) -> Option<u64> {
        self.entry.as_ref().map(|entry| entry.record.id)
    }

    fn name(&self) -> Option<Cow<'static, str>> {
        self.entry.as_ref()?.record.name()
    }

    fn end(self: Box<Self>) {
        self.ended(None);
    }

    fn end_lazy(self: Box<Self>, end: LazyEnd<'_>) {
        self.ended(Some(end));
    }
}

impl Registration {
    /// The scope ended (`end`: how, for a lazy scope that did not take
    /// its state): leave, keep the record for reuse if nobody else holds
    /// it, and go back to the thread's pool.
    #[inline(always)]
    fn ended(mut self: Box<Self>, end: Option<LazyEnd<'_>>) {
        if let Some(entry) = self.entry.take() {
            self.spare = Record::spare(entry.exit(end));
        }
        self.request = None;
        give_back(self);
    }
}

// A small per-thread pool of registrations, each with the record of the
// operation it last registered: a registered scope that ends with nobody
// else holding its record (no `CancelAnswer` future, no snapshot being
// built) hands both back, and the next scope on the thread that registers
// takes them instead of allocating. The history keeps a copy of each
// finished operation, not its record, so a record is free again as soon as
// its scope ends.
thread_local! {
    // Boxed: the box is the scope's hook itself, reused whole.
    #[allow(clippy::vec_box)]
    static POOL: RefCell<Vec<Box<Registration>>> = const { RefCell::new(Vec::new()) };
}

/// How many registrations a thread keeps: enough for registered scopes
/// nested a few deep, little memory when idle.
const POOLED: usize = 8;

/// An empty registration: a pooled one (with a spare record) if the thread
/// has any.
fn take_pooled() -> Box<Registration> {
    POOL.try_with(|pool| pool.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Hands back an ended registration: kept if the pool has room.
fn give_back(registration: Box<Registration>) {
    let _ = POOL.try_with(move |pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED {
            pool.push(registration);
        }
    });
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The scope's future was dropped mid-run: it leaves all the same.
        if let Some(entry) = self.entry.take() {
            entry.exit_dropped();
        }
    }
}

impl Entry {
    /// Joins the registry: the scope started. `spare` is a record to
    /// reuse, if the thread had one.
    fn join(
        scope: Joining,
        request: Request,
        clock: Clock,
        started: Instant,
        spare: Option<Arc<Record>>,
    ) -> Entry {
        let id = match &scope {
            Joining::Shared(scope) => scope.id(),
            Joining::Lazy { .. } => unreachable!("a lazy scope joins with its id"),
        };
        Entry::join_as(scope, id, request, clock, started, spare)
    }

    /// [`join`](Self::join) as operation `id`. Inlined into each way in
    /// (with state, or lazy), which then builds only its own branches.
    #[inline(always)]
    fn join_as(
        scope: Joining,
        id: u64,
        request: Request,
        clock: Clock,
        started: Instant,
        spare: Option<Arc<Record>>,
    ) -> Entry {
        let Request { registry, key } = request;
        let joined = registry.inner.joins.fetch_add(1, Ordering::Relaxed);
        // A spare is kept only when nobody else held it (`Record::spare`),
        // and nobody could reach it since.
        let mut record = spare.unwrap_or_else(|| Arc::new(Record::blank(clock, started)));
        let unique = match Arc::get_mut(&mut record) {
            Some(unique) => unique,
            None => {
                record = Arc::new(Record::blank(clock, started));
                match Arc::get_mut(&mut record) {
                    Some(unique) => unique,
                    None => unreachable!("a record just made is held once"),
                }
            }
        };
        unique.join(scope, id, joined, key, &registry, clock, started);
        let token = record.token();
        if token.is_cancelled() {
            // A token cancelled before the scope joined: the lag counts
            // from the join, not from a cancel that may be long past.
            let at = Instant::now();
            let _ = record.cancel_requested.set(at);
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            super::stuck::watch(&record, at);
        } else {
            // The stuck watcher (which reports through `tracing` or
            // `metrics`) is told of the cancel by the token. Detached: it
            // lives as long as the scope's token; no unregistering at exit.
            // It finds the record by id, holding no reference to it, so
            // that the record is reused all the same. Without those
            // features nothing is registered: the token records when it
            // was cancelled.
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            {
                let registry = Arc::downgrade(&registry.inner);
                token
                    .on_cancel(move |_| cancel_requested(&registry, id))
                    .detach();
            }
        }
        #[cfg(feature = "metrics")]
        super::metrics::started(&record);
        lock(&registry.inner.shards[shard_of(id)].state)
            .live
            .insert(id, record.clone());
        // After the insert: a cancel that looks at the live set after this
        // point finds the record; one before it left what the observer reads.
        #[cfg(feature = "redis")]
        {
            if let Some(observer) = registry.inner.join_observer() {
                observer.joined(id, record.key.as_deref(), record.token());
            }
        }
        Entry { record, registry }
    }
}

/// The scope's token was cancelled: have the stuck watcher look at the
/// operation later.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn cancel_requested(registry: &Weak<Inner>, id: u64) {
    let Some(record) = registry.upgrade().and_then(|inner| inner.live_record(id)) else {
        return;
    };
    if record.left.load(Ordering::Acquire) {
        return;
    }
    let at = *record
        .cancel_requested
        .get_or_init(|| seam::cancelled_at(record.token()).unwrap_or_else(Instant::now));
    super::stuck::watch(&record, at);
}

impl Entry {
    /// The scope ends (or its future was dropped mid-run): leaves the live
    /// set, is counted in the statistics and recorded in the history.
    /// Returns the record, for reuse if nobody else holds it.
    ///
    /// `end` is how a lazy scope that never took its state ended; `None`
    /// for a scope with state (or one dropped mid-run).
    #[inline(always)]
    fn exit(self, end: Option<LazyEnd<'_>>) -> Arc<Record> {
        let Entry { record, registry } = self;
        record.left.store(true, Ordering::Release);
        // The scope set its final status before ending its registration
        // (or, dropped mid-run, marked itself cancelled); a lazy scope
        // gives it.
        let status = match (&end, record.status()) {
            (Some(end), _) => end.status,
            (None, OperationStatus::Running | OperationStatus::Pending) => {
                OperationStatus::Cancelled
            }
            (None, finished) => finished,
        };
        if record.key.is_some() {
            let claim = lock(&record.key_claim).take();
            drop(claim);
        }
        // A cancel wakes the scope before it runs its callbacks: the scope
        // may exit before ours noted the time. The two were then at once.
        // Both read only once the token reads as cancelled (a noted
        // request implies it): one flag read for a scope nobody cancelled.
        let token = record.token();
        let (mut lag, mut cause) = match token.is_cancelled() {
            true => (
                record.cancel_requested_at().map(|at| at.elapsed()),
                seam::cancel_cause(token),
            ),
            false => (None, None),
        };
        // A lazy scope that ended at its deadline: its token was not
        // cancelled, its end says why.
        if let (None, Some(cancelled)) = (&cause, end.as_ref().and_then(|end| end.cancelled)) {
            cause = Some((
                cancelled.reason().clone(),
                cancelled.message().map(Arc::from),
            ));
            // From the deadline's sight to the exit.
            lag = cancelled
                .elapsed()
                .zip(cancelled.cancelled_after())
                .map(|(ended, asked)| ended.saturating_sub(asked));
        }
        #[cfg(feature = "metrics")]
        let reason = cause.as_ref().map(|(reason, _)| reason.clone());
        let (ended, error) = match end {
            Some(end) => (Some(end.ended), end.error),
            None => (None, None),
        };
        let inner = &registry.inner;
        // The scope's context is read under one lock, held around the
        // history's and the shard's (see "Deadlock safety").
        // A lazy scope whose state nobody made shows its record's name.
        let data = record.made().map(ScopeView::context_data);
        let (exit, duration) = {
            let shown = match &data {
                Some(data) => Shown::of(data, error.as_ref()),
                None => Shown {
                    name: record.lazy_name(),
                    metadata: &[],
                    error: error.as_ref(),
                },
            };
            // A lazy scope gives its end time; one with state noted it (it
            // does when its state is shared, as a registered scope's is),
            // unless it was dropped mid-run.
            let ended = ended
                .or_else(|| data.as_ref().and_then(|data| data.ended))
                .unwrap_or_else(|| record.clock.now());
            let duration = ended.saturating_duration_since(record.started);
            let exit = Exit { status, ended, lag };
            let name = shown.name;
            // In the history before it leaves the live set: a look-up by id
            // always finds it in one or the other.
            inner.history.push(&record, exit, cause, shown);
            let mut shard = lock(&inner.shards[shard_of(record.id)].state);
            let shard = &mut *shard;
            // A name this shard has not counted yet: under its own name or
            // the registry's `(other names)` (`names.rs`).
            shard
                .stats
                .of(name, |name| inner.names.counted(name))
                .record(status, Some(duration), lag);
            shard.live.remove(record.id);
            (exit, duration)
        };
        drop(data);
        // After the removal: an observer that looks at the live set now
        // no longer finds the operation.
        #[cfg(feature = "redis")]
        {
            if let Some(observer) = inner.join_observer() {
                observer.left(record.id);
            }
        }
        #[cfg(feature = "metrics")]
        super::metrics::finished(&record, status, duration, lag, reason.as_ref());
        #[cfg(not(feature = "metrics"))]
        let _ = duration;
        #[cfg(feature = "tracing")]
        if record.stuck_reported.load(Ordering::Acquire) {
            tracing::info!(
                operation = record.name().as_deref().unwrap_or(""),
                id = record.id,
                lag = ?lag,
                "a stuck operation has exited at last"
            );
        }
        // Nobody else holds the record (no `CancelAnswer` future, no
        // reader), and nobody can reach it now that it left the live set:
        // nobody awaits its outcome.
        if Arc::strong_count(&record) > 1 {
            record.outcome_known(exit);
        }
        record
    }
}

impl Entry {
    /// [`exit`](Self::exit) of a scope whose future was dropped mid-run:
    /// out of line, the rare way out.
    #[cold]
    #[inline(never)]
    fn exit_dropped(self) {
        self.exit(None);
    }
}

impl Inner {
    /// The key shard of `key`.
    pub(crate) fn key_shard(&self, key: &str) -> &KeyShard {
        use std::hash::{BuildHasher, RandomState};
        static SEED: OnceLock<RandomState> = OnceLock::new();
        let hash = SEED.get_or_init(RandomState::new).hash_one(key);
        &self.keys[(hash % self.keys.len() as u64) as usize]
    }

    /// Claims `key` for the scope `shared`, or says who holds it.
    pub(crate) fn claim_key(
        self: &Arc<Self>,
        key: String,
        shared: ScopeView,
        name: Option<Cow<'static, str>>,
    ) -> Result<KeyClaim, RegistryError> {
        if key.is_empty() {
            return Err(RegistryError::EmptyKey);
        }
        let key: Arc<str> = Arc::from(key);
        let id = shared.id();
        let mut keys = lock(self.key_shard(&key));
        if let Some(holder) = keys.get(&key) {
            if holder.id != id {
                return Err(RegistryError::KeyInUse {
                    key: key.to_string(),
                    holder: holder.id,
                    holder_name: holder
                        .name
                        .clone()
                        .or_else(|| holder.shared.context_data().name.clone())
                        .map(String::from),
                });
            }
        }
        keys.insert(key.clone(), KeyHolder { id, shared, name });
        Ok(KeyClaim {
            registry: Registry {
                inner: self.clone(),
            },
            key,
            id,
        })
    }

    /// Every live record that has not exited, shard by shard (each shard
    /// locked only while its records are copied out), ordered by id. The ids are copied beside
    /// the records so that sorting does not visit every record.
    pub(crate) fn live_records(&self) -> Vec<Arc<Record>> {
        self.live_records_with_ids()
            .into_iter()
            .map(|(_, record)| record)
            .collect()
    }

    /// [`live_records`](Self::live_records) with each record's id beside
    /// it, for callers that look ids up without visiting the records.
    pub(crate) fn live_records_with_ids(&self) -> Vec<(u64, Arc<Record>)> {
        let mut records: Vec<(u64, Arc<Record>)> = Vec::new();
        for shard in self.shards.iter() {
            let state = lock(&shard.state);
            records.reserve(state.live.len());
            // An exiting operation sets `left` (and its final status)
            // before it takes the shard lock to leave: it is not live.
            records.extend(
                state
                    .live
                    .iter()
                    .filter(|record| record.is_live())
                    .map(|record| (record.id, record.clone())),
            );
        }
        records.sort_unstable_by_key(|(id, _)| *id);
        records
    }

    /// The scope holding a key, with this id, that has not joined (it has
    /// not started): every key shard is searched.
    pub(crate) fn unstarted_key_holder(&self, id: u64) -> Option<ScopeView> {
        self.keys.iter().find_map(|shard| {
            lock(shard)
                .values()
                .find(|holder| holder.id == id)
                .map(|holder| holder.shared.clone())
        })
    }

    /// The record of operation `id` while it is in the live set, exiting
    /// or not (see [`Record::is_live`]).
    pub(crate) fn live_record(&self, id: u64) -> Option<Arc<Record>> {
        lock(&self.shards[shard_of(id)].state).live.get(id).cloned()
    }
}
