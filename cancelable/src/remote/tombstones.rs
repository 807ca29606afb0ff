//! The node's local copy of the tombstones: what the registration hook
//! checks synchronously (no network on the registration path), and what
//! the node writes back to the broker after a reconnect (a broker restarted
//! without persistence has lost them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::protocol::{Target, Tombstone};
use crate::registry::JoinObserver;
use crate::{CancelReason, CancellationToken};

/// One tombstone, decoded once.
pub(crate) struct Cached {
    /// Its encoding: the member of the tombstones sorted set.
    pub(crate) member: String,
    pub(crate) target: Target,
    pub(crate) reason: CancelReason,
    pub(crate) message: String,
    pub(crate) expires_ms: u64,
}

#[derive(Default)]
struct State {
    by_target: HashMap<Target, Arc<Cached>>,
    /// Key targets, by key (looked up with a `&str`, no allocation).
    by_key: HashMap<String, Arc<Cached>>,
    /// Id targets of this node, by id.
    by_own_id: HashMap<u64, Arc<Cached>>,
}

pub(crate) struct Cache {
    node: String,
    max: usize,
    len: AtomicUsize,
    state: Mutex<State>,
}

impl Cache {
    pub(crate) fn new(node: String, max: usize) -> Cache {
        Cache {
            node,
            max: max.max(1),
            len: AtomicUsize::new(0),
            state: Mutex::default(),
        }
    }

    /// Adds `tombstone` (encoded as `member`) unless expired at `now_ms`
    /// or of a reason this build cannot represent. Returns it if it is new
    /// or replaces one expiring earlier.
    pub(crate) fn insert(
        &self,
        tombstone: Tombstone,
        member: String,
        now_ms: u64,
    ) -> Option<Arc<Cached>> {
        if tombstone.expires_ms <= now_ms {
            return None;
        }
        let reason = tombstone.reason.to_reason()?;
        let cached = Arc::new(Cached {
            member,
            target: tombstone.target,
            reason,
            message: tombstone.message,
            expires_ms: tombstone.expires_ms,
        });
        let mut state = crate::sync::lock(&self.state);
        if let Some(existing) = state.by_target.get(&cached.target) {
            if existing.expires_ms >= cached.expires_ms {
                return None;
            }
        }
        state.insert(&self.node, cached.clone());
        if state.by_target.len() > self.max {
            state.purge(now_ms);
            while state.by_target.len() > self.max {
                let soonest = state
                    .by_target
                    .values()
                    .min_by_key(|cached| cached.expires_ms)
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

    /// Forgets expired tombstones; returns the live ones.
    pub(crate) fn live(&self, now_ms: u64) -> Vec<Arc<Cached>> {
        let mut state = crate::sync::lock(&self.state);
        state.purge(now_ms);
        self.len.store(state.by_target.len(), Ordering::Release);
        state.by_target.values().cloned().collect()
    }
}

impl State {
    fn insert(&mut self, node: &str, cached: Arc<Cached>) {
        match &cached.target {
            Target::Key { key } => {
                self.by_key.insert(key.clone(), cached.clone());
            }
            Target::Id { node: of, id } if of == node => {
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

    fn purge(&mut self, now_ms: u64) {
        let expired: Vec<Target> = self
            .by_target
            .values()
            .filter(|cached| cached.expires_ms <= now_ms)
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
            if cached.expires_ms <= super::unix_ms() {
                return;
            }
            token.cancel_with(cached.reason.clone(), cached.message.clone());
        }
    }

    fn left(&self, _id: u64) {
        self.changed.note();
    }
}
