//! Scope deadlines share one timer per thread and runtime.
//!
//! Registering a timer per scope is what makes `tokio::time::timeout` and a
//! select over an `async-io` timer cost hundreds of nanoseconds to
//! microseconds: the timer driver takes a lock and stores a waker. Most
//! deadlines are far away and most scopes end long before them, so here a
//! scope that pends only records its deadline in its thread's *shard*: a
//! slab of entries and a heap ordered by deadline, behind an uncontended
//! lock. The shard keeps one backend timer armed at its earliest deadline;
//! successive scopes with the same timeout have later deadlines, so the
//! timer is rarely re-armed.
//!
//! When the shard timer fires, its waker cancels the scopes whose deadline
//! passed (reason `Timeout`, which wakes them). It does not re-arm the
//! timer itself: a tokio timer may only be polled inside its runtime, and a
//! waker can run while the runtime shuts down. It wakes the scope with the
//! earliest remaining deadline instead, which re-arms the timer from its
//! own poll — inside the runtime, where polling is safe — or, if that scope
//! ends first, hands the job on to the next one.
//!
//! On tokio the shard timer is a tokio timer, so a paused clock advances to
//! the earliest scope deadline exactly as it would for `tokio::time::timeout`.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use slab::Slab;

use super::{Backend, Timer};
use crate::scope::ScopeShared;
use crate::sync::{lock, AtomicBool, Mutex, Ordering};

thread_local! {
    /// This thread's shards, one per backend. A thread runs one tokio
    /// runtime at a time; the tokio shard's timer is replaced when it
    /// belongs to another runtime than the one arming it.
    static SHARDS: RefCell<Vec<Arc<Shard>>> = const { RefCell::new(Vec::new()) };
}

/// The shard timer, with the tokio runtime it belongs to.
struct ShardTimer {
    timer: Timer,
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Id>,
}

pub(crate) struct Shard {
    backend: Backend,
    /// The shard timer fired and nobody has re-armed it yet.
    needs_arm: AtomicBool,
    /// Locked only to arm the timer, and always before `state`: resetting
    /// a timer to a passed deadline may run its waker at once, and the
    /// waker takes `state`, so `state` is never held while the timer is
    /// touched.
    timer: Mutex<Option<ShardTimer>>,
    state: Mutex<ShardState>,
    waker: Waker,
}

struct ShardState {
    entries: Slab<Entry>,
    /// Earliest deadline first; entries removed from `entries` stay here
    /// until they reach the top or the heap is compacted.
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_generation: u64,
    /// When the shard timer fires, if it is armed.
    armed_at: Option<Instant>,
}

struct Entry {
    generation: u64,
    scope: Weak<ScopeShared>,
}

impl ShardState {
    fn is_live(&self, generation: u64, key: usize) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| entry.generation == generation)
    }

    /// The earliest live entry, dropping dead ones from the top.
    fn earliest(&mut self) -> Option<(Instant, usize)> {
        while let Some(&Reverse((deadline, generation, key))) = self.queue.peek() {
            if self.is_live(generation, key) {
                return Some((deadline, key));
            }
            self.queue.pop();
        }
        None
    }

    /// Keeps the heap within twice the live entries, so scopes that end
    /// long before their deadline do not pile up in it.
    fn compact(&mut self) {
        if self.queue.len() > 64 && self.queue.len() > 2 * self.entries.len() {
            let entries = &self.entries;
            self.queue.retain(|Reverse((_, generation, key))| {
                entries
                    .get(*key)
                    .is_some_and(|entry| entry.generation == *generation)
            });
        }
    }

    /// Takes the entries whose deadline is at or before `now`.
    fn take_expired(&mut self, now: Instant, expired: &mut Vec<(Weak<ScopeShared>, Instant)>) {
        while let Some((deadline, key)) = self.earliest() {
            if deadline > now {
                break;
            }
            self.queue.pop();
            expired.push((self.entries.remove(key).scope, now));
        }
    }
}

/// The shard timer's waker: runs the expiry on whatever thread fires it.
struct ShardWaker {
    shard: Weak<Shard>,
}

impl Wake for ShardWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shard) = self.shard.upgrade() {
            shard.fire();
        }
    }
}

/// A scope's deadline in a shard; dropping it removes the entry.
pub(crate) struct Registration {
    shard: Arc<Shard>,
    key: usize,
    generation: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let baton = {
            let mut state = lock(&self.shard.state);
            if state.is_live(self.generation, self.key) {
                state.entries.remove(self.key);
            }
            state.compact();
            // This scope may have been asked to re-arm the timer and will
            // not now: ask the next one.
            if self.shard.needs_arm.load(Ordering::Acquire) {
                next_in_line(&mut state)
            } else {
                None
            }
        };
        wake_scope(baton);
    }
}

impl Registration {
    /// Re-arms the shard timer if it fired and nobody has re-armed it.
    /// Called from the registered scope's poll.
    pub(crate) fn rearm_if_needed(&self) {
        if self.shard.needs_arm.load(Ordering::Acquire) {
            self.shard.arm();
        }
    }
}

/// The scope of the earliest live entry, to wake so that it re-arms.
fn next_in_line(state: &mut ShardState) -> Option<Weak<ScopeShared>> {
    let (_, key) = state.earliest()?;
    Some(state.entries[key].scope.clone())
}

fn wake_scope(scope: Option<Weak<ScopeShared>>) {
    if let Some(scope) = scope.and_then(|scope| scope.upgrade()) {
        scope.token.wake_owner();
    }
}

impl Shard {
    fn new(backend: Backend) -> Arc<Shard> {
        Arc::new_cyclic(|shard| Shard {
            backend,
            needs_arm: AtomicBool::new(false),
            timer: Mutex::new(None),
            state: Mutex::new(ShardState {
                entries: Slab::new(),
                queue: BinaryHeap::new(),
                next_generation: 0,
                armed_at: None,
            }),
            waker: Waker::from(Arc::new(ShardWaker {
                shard: shard.clone(),
            })),
        })
    }

    /// This thread's shard for `backend`.
    pub(crate) fn current(backend: Backend) -> Arc<Shard> {
        SHARDS.with(|shards| {
            let mut shards = shards.borrow_mut();
            if let Some(shard) = shards.iter().find(|shard| shard.backend == backend) {
                return shard.clone();
            }
            let shard = Shard::new(backend);
            shards.push(shard.clone());
            shard
        })
    }

    /// The current tokio runtime, if this shard's timers are tokio's.
    /// `Err` if they are, but no runtime is entered: nothing can be armed.
    #[cfg(feature = "tokio")]
    fn runtime(&self) -> Result<Option<tokio::runtime::Id>, ()> {
        match self.backend {
            Backend::Tokio => tokio::runtime::Handle::try_current()
                .map(|handle| Some(handle.id()))
                .map_err(|_| ()),
            Backend::AsyncIo => Ok(None),
        }
    }

    /// Records that `scope` must be cancelled at `deadline`. Called from
    /// the scope's poll, inside its runtime.
    pub(crate) fn register(
        self: &Arc<Self>,
        deadline: Instant,
        scope: Weak<ScopeShared>,
    ) -> Registration {
        let (key, generation, earlier) = {
            let mut state = lock(&self.state);
            let generation = state.next_generation;
            state.next_generation += 1;
            let key = state.entries.insert(Entry { generation, scope });
            state.queue.push(Reverse((deadline, generation, key)));
            state.compact();
            let earlier = state.armed_at.is_none_or(|armed| deadline < armed);
            (key, generation, earlier)
        };
        if earlier || self.needs_arm.load(Ordering::Acquire) {
            self.arm();
        }
        Registration {
            shard: self.clone(),
            key,
            generation,
        }
    }

    /// Arms the shard timer at the earliest live deadline, expiring the
    /// entries whose deadline has already passed.
    fn arm(&self) {
        let mut expired = Vec::new();
        {
            let mut timer_slot = lock(&self.timer);
            #[cfg(feature = "tokio")]
            {
                let Ok(runtime) = self.runtime() else {
                    // Outside the runtime: leave it to a scope polled inside.
                    self.needs_arm.store(true, Ordering::Release);
                    return;
                };
                // A timer of a runtime that has ended must not be touched.
                if timer_slot
                    .as_ref()
                    .is_some_and(|slot| slot.runtime != runtime)
                {
                    *timer_slot = None;
                    lock(&self.state).armed_at = None;
                }
            }
            loop {
                self.needs_arm.store(false, Ordering::Release);
                let deadline = {
                    let mut state = lock(&self.state);
                    match state.earliest() {
                        None => {
                            state.armed_at = None;
                            break;
                        }
                        Some((deadline, _)) if state.armed_at == Some(deadline) => break,
                        Some((deadline, _)) => deadline,
                    }
                };
                let timer = match &mut *timer_slot {
                    Some(slot) => {
                        slot.timer.reset(deadline);
                        &mut slot.timer
                    }
                    None => {
                        &mut timer_slot
                            .insert(ShardTimer {
                                timer: self.backend.timer(deadline),
                                #[cfg(feature = "tokio")]
                                runtime: self.runtime().unwrap_or_default(),
                            })
                            .timer
                    }
                };
                let mut cx = Context::from_waker(&self.waker);
                let fired = timer.poll_fired(&mut cx).is_ready();
                let mut state = lock(&self.state);
                if !fired {
                    state.armed_at = Some(deadline);
                    break;
                }
                // Already passed: expire now, then arm for the next one.
                state.armed_at = None;
                let now = self.backend.now().max(deadline);
                state.take_expired(now, &mut expired);
            }
        }
        expire(expired);
    }

    /// The shard timer fired: cancel the scopes whose deadline passed and
    /// wake the next one in line to re-arm the timer.
    fn fire(&self) {
        let mut expired = Vec::new();
        let baton = {
            let mut state = lock(&self.state);
            let armed_at = state.armed_at.take();
            self.needs_arm.store(true, Ordering::Release);
            // The timer fired at `armed_at`; the clock may lag it slightly.
            let now = match armed_at {
                Some(armed) => self.backend.now().max(armed),
                None => self.backend.now(),
            };
            state.take_expired(now, &mut expired);
            next_in_line(&mut state)
        };
        expire(expired);
        wake_scope(baton);
    }
}

/// Cancels the expired scopes (or wakes those whose deadline moved, so
/// they register again), outside every lock of the shard.
fn expire(expired: Vec<(Weak<ScopeShared>, Instant)>) {
    for (scope, now) in expired {
        if let Some(scope) = scope.upgrade() {
            scope.deadline_reached(now);
        }
    }
}
