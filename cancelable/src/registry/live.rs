//! The live set: one record per registered running operation, in shards
//! chosen by id, and the entry a running scope holds to stay in it.
//!
//! # Invariants
//! 1. A record is in the live set from the scope's start (`Entry::join`) to
//!    its exit or drop (`Entry`'s `Drop`): the scope future owns the entry,
//!    so no record stays live after its scope's run, whatever way the run
//!    ends. The history then keeps the record (and the scope's state) until
//!    newer operations push it out.
//! 2. A record's shard is a function of its id alone, so lookups by id take
//!    one shard lock. Ids come in per-thread blocks of 1,024 (see
//!    `next_operation_id`); a shard per block keeps threads that register
//!    at the same time on different shards.
//! 3. Per-name statistics live in the shard of the operation that finishes
//!    and are updated under the lock its exit takes anyway.
//!
//! # Deadlock safety
//! A shard lock, a key lock or a history slot lock is never held while
//! another of them is taken, except a key lock around the key holder's
//! context lock (which never takes a registry lock); no user code runs under
//! any of them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::record::{Exit, KeyClaim, Record};
use super::stats::OperationStats;
use super::{lock, Inner, Registry, RegistryError};
use crate::backend::Clock;
use crate::scope::{HookSlot, ScopeShared, StartHook};
use crate::OperationStatus;

/// How many consecutive ids share a shard (the size of a thread's id block).
const IDS_PER_SHARD_RUN: u64 = 1024;
pub(crate) const SHARDS: usize = 32;

/// Hashes ids (already unique integers) with one multiplication.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// A shard of the live set, alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) state: Mutex<ShardState>,
}

#[derive(Default)]
pub(crate) struct ShardState {
    pub(crate) live: IdMap<Arc<Record>>,
    pub(crate) stats: HashMap<Cow<'static, str>, OperationStats, BuildHasherDefault<IdHasher>>,
}

pub(crate) fn shard_of(id: u64) -> usize {
    ((id / IDS_PER_SHARD_RUN) % SHARDS as u64) as usize
}

/// A shard of the key table.
pub(crate) type KeyShard = Mutex<HashMap<Arc<str>, KeyHolder>>;

/// Who holds a key.
pub(crate) struct KeyHolder {
    pub(crate) id: u64,
    pub(crate) shared: Arc<ScopeShared>,
    /// The name configured when the key was claimed, if any.
    pub(crate) name: Option<Cow<'static, str>>,
}

/// What `CancelScope::register()` / `.key(..)` ask for: kept in the scope's
/// configuration until it starts.
pub(crate) struct Request {
    pub(crate) registry: Registry,
    pub(crate) key: Option<KeyClaim>,
}

/// A running scope's place in the registry. Dropping it — when the scope
/// finishes, or when its future is dropped mid-run — takes the operation
/// out of the live set and records it in the history and statistics.
///
/// It sits in the scope's boxed extras (which only scopes with callbacks,
/// metadata or a registration have), so the scope future of an
/// unregistered scope is no larger. It owns the registry reference the
/// request brought: registering touches the registry's reference count once.
pub(crate) struct Entry {
    record: Arc<Record>,
    registry: Registry,
}

/// What a registered scope carries in its extras, as its `StartHook`:
/// the request until the scope starts, then its entry. The scope drops it
/// when it ends (before its user callbacks), or drops it unstarted, which
/// releases a claimed key.
#[derive(Default)]
pub(crate) struct Registration {
    pub(crate) request: Option<Request>,
    entry: Option<Entry>,
}

impl Registration {
    /// The request in a scope's hook slot, making the slot a registration
    /// if it is empty (the registry is the only user of the slot).
    pub(crate) fn request_in(slot: &mut HookSlot) -> &mut Option<Request> {
        let is_ours = slot
            .as_mut()
            .is_some_and(|hook| hook.as_any_mut().is::<Registration>());
        if !is_ours {
            *slot = Some(Box::<Registration>::default());
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

impl StartHook for Registration {
    fn start(&mut self, shared: &Arc<ScopeShared>, clock: Clock, started: Instant) {
        if let Some(request) = self.request.take() {
            self.entry = Some(Entry::join(shared, request, clock, started));
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Entry {
    /// Joins the registry: the scope started.
    fn join(shared: &Arc<ScopeShared>, request: Request, clock: Clock, started: Instant) -> Entry {
        let Request { registry, key } = request;
        let id = shared.id();
        let name = crate::sync::lock(&shared.data).name.clone();
        let record = Arc::new_cyclic(|record: &Weak<Record>| {
            // The stuck watcher (which reports through `tracing` or
            // `metrics`) is told of the cancel by the token. Detached: it
            // lives as long as the scope's token, which the record keeps; no
            // unregistering at exit. Without those features nothing is
            // registered: the token records when it was cancelled.
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            {
                let record = record.clone();
                shared
                    .token
                    .on_cancel_cause(Box::new(move |_| cancel_requested(&record)))
                    .detach();
            }
            #[cfg(not(any(feature = "tracing", feature = "metrics")))]
            let _ = record;
            Record {
                shared: shared.clone(),
                id,
                joined: registry.inner.joins.fetch_add(1, Ordering::Relaxed),
                name,
                key: key.as_ref().map(|claim| claim.key.clone()),
                clock,
                started,
                cancel_requested: OnceLock::new(),
                stuck_after: registry.inner.stuck_after,
                stuck_reported: AtomicBool::new(false),
                stuck_report: Mutex::new(()),
                left: AtomicBool::new(false),
                exit: Mutex::new(None),
                outcome_waiters: Mutex::new(Some(Vec::new())),
                key_claim: Mutex::new(key),
            }
        });
        // A token cancelled before the scope joined: the lag counts from
        // the join, not from a cancel that may be long past (the callback,
        // if any, ran before the record existed).
        if shared.token.is_cancelled() {
            let _ = record.cancel_requested.set(Instant::now());
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            cancel_requested(&Arc::downgrade(&record));
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
            let observer = registry
                .inner
                .join_observer
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if let Some(observer) = observer {
                observer.joined(id, record.key.as_deref(), &shared.token);
            }
        }
        Entry { record, registry }
    }
}

/// The scope's token was cancelled: have the stuck watcher look at the
/// operation later.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn cancel_requested(record: &Weak<Record>) {
    let Some(record) = record.upgrade() else {
        return;
    };
    if record.left.load(Ordering::Acquire) {
        return;
    }
    let at = *record.cancel_requested.get_or_init(|| {
        record
            .shared
            .token
            .cancelled_at()
            .unwrap_or_else(Instant::now)
    });
    super::stuck::watch(&record, at);
}

impl Drop for Entry {
    fn drop(&mut self) {
        let record = &self.record;
        let shared = &record.shared;
        record.left.store(true, Ordering::Release);
        // The scope set its final status before dropping its running state
        // (or, dropped mid-run, marked itself cancelled).
        let status = match shared.status() {
            OperationStatus::Running | OperationStatus::Pending => OperationStatus::Cancelled,
            finished => finished,
        };
        let ended = record.clock.now();
        // A cancel wakes the scope before it runs its callbacks: the scope
        // may exit before ours noted the time. The two were then at once.
        let lag = record.cancel_requested_at().map(|at| at.elapsed());
        let duration = ended.saturating_duration_since(record.started);
        *lock(&record.exit) = Some(Exit { status, ended, lag });
        if record.key.is_some() {
            let claim = lock(&record.key_claim).take();
            drop(claim);
        }
        let inner = &self.registry.inner;
        let removed = {
            let mut shard = lock(&inner.shards[shard_of(record.id)].state);
            let shard = &mut *shard;
            let stats = match shard.stats.get_mut(record.name_or_empty()) {
                Some(stats) => stats,
                None => shard
                    .stats
                    .entry(record.name.clone().unwrap_or(Cow::Borrowed("")))
                    .or_default(),
            };
            stats.record(status, Some(duration), lag);
            shard.live.remove(&record.id)
        };
        // After the removal: an observer that looks at the live set now
        // no longer finds the operation.
        #[cfg(feature = "redis")]
        {
            let observer = inner
                .join_observer
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if let Some(observer) = observer {
                observer.left(record.id);
            }
        }
        #[cfg(feature = "metrics")]
        super::metrics::finished(record, status, duration, lag);
        #[cfg(feature = "tracing")]
        if record.stuck_reported.load(Ordering::Acquire) {
            tracing::info!(
                operation = record.name_or_empty(),
                id = record.id,
                lag = ?lag,
                "a stuck operation has exited at last"
            );
        }
        if let Some(removed) = removed {
            inner.history.push(removed);
        }
        record.outcome_known();
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
        shared: &Arc<ScopeShared>,
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
                        .or_else(|| crate::sync::lock(&holder.shared.data).name.clone())
                        .map(String::from),
                });
            }
        }
        keys.insert(
            key.clone(),
            KeyHolder {
                id,
                shared: shared.clone(),
                name,
            },
        );
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
                    .filter(|(_, record)| record.is_live())
                    .map(|(id, record)| (*id, record.clone())),
            );
        }
        records.sort_unstable_by_key(|(id, _)| *id);
        records
    }

    /// The scope holding a key, with this id, that has not joined (it has
    /// not started): every key shard is searched.
    pub(crate) fn unstarted_key_holder(&self, id: u64) -> Option<Arc<ScopeShared>> {
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
        lock(&self.shards[shard_of(id)].state)
            .live
            .get(&id)
            .cloned()
    }
}
