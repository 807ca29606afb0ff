//! The node's local copy of the tombstones: what the registration hook
//! checks synchronously (no network on the registration path), and what
//! the node writes back to the broker after a reconnect (a broker restarted
//! without persistence has lost them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::protocol::{Target, Tombstone};
use crate::registry::JoinObserver;
use crate::seam::time;
use crate::{CancelReason, CancellationToken};

/// One tombstone, decoded once.
pub(crate) struct Cached {
    /// Its member in the tombstones sorted set (the target's encoding).
    pub(crate) member: String,
    /// Its encoding: the value in the tombstone bodies hash.
    pub(crate) body: String,
    pub(crate) target: Target,
    pub(crate) reason: CancelReason,
    pub(crate) message: String,
    /// When it expires, on this process's monotonic clock (converted from
    /// the broker's clock when it was read: no wall clock involved).
    pub(crate) deadline: Instant,
}

#[derive(Default)]
struct State {
    by_target: HashMap<Target, Arc<Cached>>,
    /// Key targets, by key (looked up with a `&str`, no allocation).
    by_key: HashMap<String, Arc<Cached>>,
    /// Id targets that reach this incarnation, by id.
    by_own_id: HashMap<u64, Arc<Cached>>,
}

pub(crate) struct Cache {
    node: String,
    instance: String,
    /// A bound on memory against a flood of (forged) tombstones: twice the
    /// cluster's cap, which the broker enforces.
    max: usize,
    len: AtomicUsize,
    state: Mutex<State>,
}

impl Cache {
    pub(crate) fn new(node: String, instance: String, max: usize) -> Cache {
        Cache {
            node,
            instance,
            max: max.max(1).saturating_mul(2),
            len: AtomicUsize::new(0),
            state: Mutex::default(),
        }
    }

    /// Whether `target` names an operation of this node incarnation, for a
    /// tombstone issued `issued_after_start` (`false`: issued before this
    /// incarnation started, by the broker's clock).
    fn reaches_us(&self, target: &Target, issued_after_start: bool) -> bool {
        match target {
            Target::Id { node, instance, .. } if *node == self.node => match instance {
                Some(instance) => *instance == self.instance,
                None => issued_after_start,
            },
            _ => false,
        }
    }

    /// Adds `tombstone` (encoded as `body`), which expires `remaining`
    /// from now, unless it has a reason this build cannot represent.
    /// `issued_after_start`: whether it was issued while this incarnation
    /// ran. Returns it if it is new or replaces one expiring earlier.
    pub(crate) fn insert(
        &self,
        tombstone: Tombstone,
        body: String,
        remaining: Duration,
        issued_after_start: bool,
    ) -> Option<Arc<Cached>> {
        if remaining.is_zero() {
            return None;
        }
        let reason = tombstone.reason.to_reason()?;
        let now = time::now();
        let cached = Arc::new(Cached {
            member: tombstone.member(),
            body,
            target: tombstone.target,
            reason,
            message: tombstone.message,
            deadline: now
                .checked_add(remaining)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        });
        let mut state = crate::sync::lock(&self.state);
        if let Some(existing) = state.by_target.get(&cached.target) {
            if existing.deadline >= cached.deadline {
                return None;
            }
        }
        let ours = self.reaches_us(&cached.target, issued_after_start);
        state.insert(ours, cached.clone());
        if state.by_target.len() > self.max {
            state.purge(now);
            while state.by_target.len() > self.max {
                let soonest = state
                    .by_target
                    .values()
                    .min_by_key(|cached| cached.deadline)
                    .map(|cached| cached.target.clone());
                match soonest {
                    Some(target) => state.remove(&target),
                    None => break,
                }
            }
        }
        self.len.store(state.by_target.len(), Ordering::Release);
        Some(cached)
    }

    /// The tombstone for operation `id` of this node or for `key`.
    pub(crate) fn lookup(&self, id: u64, key: Option<&str>) -> Option<Arc<Cached>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let state = crate::sync::lock(&self.state);
        if let Some(cached) = state.by_own_id.get(&id) {
            return Some(cached.clone());
        }
        key.and_then(|key| state.by_key.get(key).cloned())
    }

    /// Whether `cached` reaches an operation of this incarnation: a key
    /// target, or an id target kept for this incarnation.
    pub(crate) fn reaches_here(&self, cached: &Arc<Cached>) -> bool {
        match &cached.target {
            Target::Key { .. } => true,
            Target::Id { id, .. } => crate::sync::lock(&self.state)
                .by_own_id
                .get(id)
                .is_some_and(|ours| Arc::ptr_eq(ours, cached)),
        }
    }

    /// Forgets expired tombstones; returns the live ones.
    pub(crate) fn live(&self) -> Vec<Arc<Cached>> {
        let mut state = crate::sync::lock(&self.state);
        state.purge(time::now());
        self.len.store(state.by_target.len(), Ordering::Release);
        state.by_target.values().cloned().collect()
    }
}

impl State {
    fn insert(&mut self, ours: bool, cached: Arc<Cached>) {
        match &cached.target {
            Target::Key { key } => {
                self.by_key.insert(key.clone(), cached.clone());
            }
            Target::Id { id, .. } if ours => {
                self.by_own_id.insert(*id, cached.clone());
            }
            Target::Id { .. } => {}
        }
        self.by_target.insert(cached.target.clone(), cached);
    }

    fn remove(&mut self, target: &Target) {
        self.by_target.remove(target);
        match target {
            Target::Key { key } => {
                self.by_key.remove(key);
            }
            Target::Id { id, .. } => {
                if self
                    .by_own_id
                    .get(id)
                    .is_some_and(|cached| cached.target == *target)
                {
                    self.by_own_id.remove(id);
                }
            }
        }
    }

    fn purge(&mut self, now: Instant) {
        let expired: Vec<Target> = self
            .by_target
            .values()
            .filter(|cached| cached.deadline <= now)
            .map(|cached| cached.target.clone())
            .collect();
        for target in &expired {
            self.remove(target);
        }
    }
}

/// Set when an operation joins or leaves the local registry, so that the
/// node publishes a fresh snapshot soon (not on the registration path).
#[derive(Default)]
pub(crate) struct Changed {
    flag: AtomicBool,
    waker: atomic_waker::AtomicWaker,
}

impl Changed {
    fn note(&self) {
        // A load first: while the flag is set, registrations only read it.
        if !self.flag.load(Ordering::Relaxed) && !self.flag.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// `Ready` once something joined or left since the last time it returned
    /// `Ready`.
    pub(crate) fn poll_take(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.waker.register(cx.waker());
        match self.flag.swap(false, Ordering::AcqRel) {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    }
}

/// The registration hook: a scope registering in the node's local registry
/// is cancelled at once if a tombstone names it.
pub(crate) struct Observer {
    pub(crate) cache: Arc<Cache>,
    pub(crate) changed: Arc<Changed>,
}

impl JoinObserver for Observer {
    fn joined(&self, id: u64, key: Option<&str>, token: &CancellationToken) {
        self.changed.note();
        if let Some(cached) = self.cache.lookup(id, key) {
            if cached.deadline <= time::now() {
                return;
            }
            token.cancel_with(cached.reason.clone(), cached.message.clone());
        }
    }

    fn left(&self, _id: u64) {
        self.changed.note();
    }
}
