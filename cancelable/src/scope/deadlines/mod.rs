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
//! A scope without shared state that ends before its deadline does not
//! even take its entry out: it leaves it to the next such scope of its
//! thread, which takes it over with its own deadline and waker
//! ([`Registration::retire`], [`Registration::task`]). A later deadline
//! keeps the entry's heap item, and the entry is queued again at its
//! deadline when that item is due; an earlier one adds an item.
//!
//! # Who drives the timer
//!
//! The shard's timer is driven by the shard itself, never by a scope's
//! poll, so that no scope's deadline depends on another scope being polled
//! (a scope parked in a `select!`, or whose task blocks its thread, must
//! not delay the others):
//!
//! * **async-io** (async-std, smol, `block_on`): the shard owns an
//!   `async_io::Timer` whose waker is the shard's own. When the timer fires
//!   the waker expires the passed entries and re-arms the timer at the next
//!   deadline, on whatever thread runs the reactor.
//! * **tokio**: a tokio timer may only be polled inside its runtime, so the
//!   shard spawns one small *driver task* on the runtime that registered
//!   it. The task owns the timer; a registration earlier than the armed
//!   deadline wakes it. When the runtime shuts down the task is dropped:
//!   the shard is marked dead and its scopes are woken to register again
//!   wherever they are polled next. On tokio the deadlines follow tokio's
//!   clock, so a paused clock advances to the earliest scope deadline
//!   exactly as it would for `tokio::time::timeout`: the task's timer is
//!   tokio's while the clock is paused (or was advanced), and an
//!   `async-io` timer while it reads as the system's, which keeps tokio's
//!   timer wheel empty (an armed tokio timer makes every park of the
//!   runtime dearer; `tokio_driver::drive`).
//!
//! # Invariants
//!
//! 1. **A deadline is reached only when the clock reads at or past it.**
//!    Expiry reads the clock and takes only entries whose deadline is at or
//!    before it; a timer wake-up is only a hint to look (it may come early,
//!    under tokio's spent cooperative budget, or from a torn-down runtime).
//!    The scope checks its own deadline again before cancelling, since it
//!    may have moved.
//! 2. `armed_at` is the deadline the driver's timer is set to, or is about
//!    to be set to: whoever lowers it (a registration) asks the driver to
//!    re-arm after releasing the state lock, and the driver reads the
//!    earliest deadline under the state lock each time it arms. So an entry
//!    earlier than the armed time is never left waiting.
//! 3. Lock order: the async-io `timer` lock, then `state`. Scopes are
//!    cancelled and woken outside both locks (their callbacks may register
//!    or drop other deadlines of this shard).
//! 4. Under the testing kit's manual clock (`crate::hooks::clock`) neither driver
//!    arms its backend timer: the clock's advance wakes the driver, which
//!    expires and waits on the clock again.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use slab::Slab;

use super::state::ScopeShared;
use crate::backend::{Backend, Clock};
use crate::sync::{lock, Mutex};

pub(crate) use self::registration::Registration;

mod registration;
#[cfg(feature = "tokio")]
mod tokio_driver;
#[cfg(feature = "testing")]
pub(super) use self::tokio_driver::drivers_on;
#[cfg(feature = "tokio")]
use self::tokio_driver::{drive, tokio_kind, DriverGuard};

thread_local! {
    /// This thread's shards: one for `async-io`, one per tokio runtime.
    static SHARDS: RefCell<Vec<Arc<Shard>>> = const { RefCell::new(Vec::new()) };
}

/// Where the deadlines of a scope polled here go: the shard kind of the
/// tokio runtime entered on this thread, or `async-io`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place(ShardKind);

impl Place {
    /// The backend detected here (as `Backend::detect` tells it) and, on
    /// tokio outside a task, the runtime entered: one handle look-up for
    /// both, so that a scope's first deadline registration, in the same
    /// poll, does not ask tokio again (`None`: look it up then; inside a
    /// task that is a per-thread memo read).
    #[cfg(feature = "tokio")]
    #[inline]
    pub(crate) fn detect() -> (Backend, Option<tokio::runtime::Id>) {
        if tokio::task::try_id().is_some() {
            return (Backend::Tokio, None);
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => (Backend::Tokio, Some(handle.id())),
            Err(_) => (Backend::AsyncIo, None),
        }
    }

    /// The place of the tokio runtime `runtime`.
    #[cfg(feature = "tokio")]
    pub(crate) fn tokio(runtime: tokio::runtime::Id) -> Place {
        Place(ShardKind::Tokio(runtime))
    }

    /// The place of a scope of `backend` polled here.
    pub(crate) fn of(backend: Backend) -> Place {
        Place(match backend {
            #[cfg(feature = "tokio")]
            Backend::Tokio => tokio_kind(),
            Backend::AsyncIo => ShardKind::AsyncIo,
        })
    }
}

/// Which timers a shard uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShardKind {
    #[cfg(feature = "tokio")]
    Tokio(tokio::runtime::Id),
    AsyncIo,
}

pub(crate) struct Shard {
    kind: ShardKind,
    state: Mutex<ShardState>,
    driver: Driver,
}

/// What keeps the shard's timer armed; see the module docs.
enum Driver {
    /// The timer, re-armed by its own waker.
    AsyncIo {
        timer: Mutex<async_io::Timer>,
        waker: Waker,
    },
    /// The runtime's driver task.
    #[cfg(feature = "tokio")]
    Tokio {
        task: atomic_waker::AtomicWaker,
        /// The driver task was dropped (its runtime shut down).
        dead: std::sync::atomic::AtomicBool,
    },
}

struct ShardState {
    entries: Slab<Entry>,
    /// Earliest deadline first; entries removed from `entries` stay here
    /// until they reach the top or the heap is compacted.
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_generation: u64,
    /// The deadline the timer is armed (or about to be armed) at.
    armed_at: Option<Instant>,
}

struct Entry {
    generation: u64,
    /// When to tell `target`. The entry has a heap item at or before it
    /// (an entry taken over from a spare registration keeps its earlier
    /// item, and is queued again at its deadline when that item is due).
    deadline: Instant,
    target: Target,
}

/// Whom an entry tells when its deadline is reached.
#[derive(Clone)]
pub(crate) enum Target {
    /// A scope with shared state: cancelled for its deadline (if the clock
    /// agrees), its owner woken.
    Scope(Weak<ScopeShared>),
    /// A scope without shared state (`lazy.rs`): nothing can cancel it, so
    /// its task is only woken; its driver sees the entry gone and the
    /// deadline passed, and ends the scope ([`Registration::waiting`]).
    Task(Waker),
}

/// Entries whose deadline the clock has reached, to tell outside the locks.
type Expired = Vec<Target>;

impl ShardState {
    fn new() -> Self {
        ShardState {
            entries: Slab::new(),
            queue: BinaryHeap::new(),
            next_generation: 0,
            armed_at: None,
        }
    }

    fn is_live(&self, generation: u64, key: usize) -> bool {
        is_live(&self.entries, generation, key)
    }

    /// The entry `key` of `generation`, if it is still there.
    #[inline(always)]
    fn entry_mut(&mut self, generation: u64, key: usize) -> Option<&mut Entry> {
        self.entries
            .get_mut(key)
            .filter(|entry| entry.generation == generation)
    }

    /// Queues the entry `key` of `generation` at `deadline`, keeping the
    /// heap compact.
    fn queue_at(&mut self, deadline: Instant, generation: u64, key: usize) {
        self.queue.push(Reverse((deadline, generation, key)));
        self.compact();
    }

    /// `true` (and `armed_at` lowered to it) if `deadline` is earlier than
    /// the time the timer is armed at: the caller then asks the driver to
    /// re-arm, after releasing the state lock (invariant 2).
    #[inline(always)]
    fn lower_armed_at(&mut self, deadline: Instant) -> bool {
        let earlier = self.armed_at.is_none_or(|armed| deadline < armed);
        if earlier {
            self.armed_at = Some(deadline);
        }
        earlier
    }

    /// Adds an entry for `target` at `deadline`: its key and generation.
    fn insert(&mut self, deadline: Instant, target: Target) -> (usize, u64) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let key = self.entries.insert(Entry {
            generation,
            deadline,
            target,
        });
        self.queue_at(deadline, generation, key);
        (key, generation)
    }

    /// Removes the entry `key` of `generation`, if it is still there; its
    /// heap item stays until it reaches the top or the heap is compacted.
    fn remove(&mut self, generation: u64, key: usize) {
        if self.is_live(generation, key) {
            self.entries.remove(key);
        }
        self.compact();
    }

    /// The earliest live deadline, dropping dead entries from the top.
    fn earliest(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, generation, key))) = self.queue.peek() {
            if self.is_live(generation, key) {
                return Some(deadline);
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
            self.queue
                .retain(|Reverse((_, generation, key))| is_live(entries, *generation, *key));
        }
    }

    /// Takes the entries whose deadline is at or before `now`, and returns
    /// the earliest deadline left, which the timer is then armed at.
    fn expire(&mut self, now: Instant, expired: &mut Expired) -> Option<Instant> {
        while let Some(deadline) = self.earliest() {
            if deadline > now {
                break;
            }
            let Some(Reverse((_, generation, key))) = self.queue.pop() else {
                break;
            };
            let later = self.entries[key].deadline;
            if later > now {
                // Taken over with a later deadline: queued again at it.
                self.queue_at(later, generation, key);
                continue;
            }
            expired.push(self.entries.remove(key).target);
        }
        self.armed_at = self.earliest();
        self.armed_at
    }
}

/// `true` if the heap item `(generation, key)` is still an entry: a key is
/// reused once its entry is removed, the generation tells them apart.
fn is_live(entries: &Slab<Entry>, generation: u64, key: usize) -> bool {
    entries
        .get(key)
        .is_some_and(|entry| entry.generation == generation)
}

impl Target {
    /// Makes a [`Target::Task`] wake `waker` (the task's waker may change
    /// between polls), cloning it only if it would wake another task.
    #[inline(always)]
    fn set_task_waker(&mut self, waker: &Waker) {
        match self {
            Target::Task(current) if current.will_wake(waker) => {}
            Target::Task(current) => current.clone_from(waker),
            Target::Scope(_) => {}
        }
    }
}

/// The async-io timer's waker: expires and re-arms on the reactor's thread.
struct TimerWaker {
    shard: Weak<Shard>,
}

impl Wake for TimerWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shard) = self.shard.upgrade() {
            shard.arm_async_io();
        }
    }
}

impl Shard {
    fn new(kind: ShardKind) -> Arc<Shard> {
        Arc::new_cyclic(|shard| Shard {
            kind,
            state: Mutex::new(ShardState::new()),
            driver: match kind {
                #[cfg(feature = "tokio")]
                ShardKind::Tokio(_) => Driver::Tokio {
                    task: atomic_waker::AtomicWaker::new(),
                    dead: std::sync::atomic::AtomicBool::new(false),
                },
                ShardKind::AsyncIo => Driver::AsyncIo {
                    timer: Mutex::new(async_io::Timer::never()),
                    waker: Waker::from(Arc::new(TimerWaker {
                        shard: shard.clone(),
                    })),
                },
            },
        })
    }

    /// `true` if this shard is of `kind` and can still fire.
    fn serves(&self, kind: ShardKind) -> bool {
        self.kind == kind && !self.is_dead()
    }

    fn is_dead(&self) -> bool {
        match &self.driver {
            #[cfg(feature = "tokio")]
            Driver::Tokio { dead, .. } => dead.load(std::sync::atomic::Ordering::Acquire),
            Driver::AsyncIo { .. } => false,
        }
    }

    fn clock(&self) -> Clock {
        match self.kind {
            #[cfg(feature = "tokio")]
            ShardKind::Tokio(_) => Clock::Tokio,
            ShardKind::AsyncIo => Clock::Std,
        }
    }

    /// The shard for a scope of `backend` on this thread: the one of the
    /// tokio runtime entered here, or the `async-io` one (also for a tokio
    /// scope polled where no runtime is entered, such as after its runtime
    /// was dropped).
    pub(crate) fn current(backend: Backend) -> Arc<Shard> {
        Shard::at(Place::of(backend))
    }

    /// The shard of `place` on this thread, made (and its driver started)
    /// if it has none yet.
    pub(crate) fn at(place: Place) -> Arc<Shard> {
        let kind = place.0;
        let found = SHARDS.try_with(|shards| {
            let mut shards = shards.borrow_mut();
            if let Some(shard) = shards.iter().find(|shard| shard.serves(kind)) {
                return shard.clone();
            }
            // Dead shards (their runtime shut down) leave when a new one
            // comes, not on every lookup.
            shards.retain(|shard| !shard.is_dead());
            let shard = Shard::new(kind);
            shard.start();
            if !shard.is_dead() {
                shards.push(shard.clone());
            }
            shard
        });
        match found {
            Ok(shard) if !shard.is_dead() => shard,
            // Thread-local storage is gone (thread exit), or the runtime
            // dropped the driver task at once (it is shutting down): a
            // shard of its own, driven by async-io.
            _ => {
                let shard = Shard::new(ShardKind::AsyncIo);
                shard.start();
                shard
            }
        }
    }

    /// Starts the driver: spawns the tokio driver task.
    fn start(self: &Arc<Self>) {
        #[cfg(feature = "tokio")]
        if let ShardKind::Tokio(runtime) = self.kind {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn(drive(DriverGuard::new(self.clone(), runtime)))),
                Err(_) => self.mark_dead(),
            }
        }
    }

    /// Records that `target` must be told at `deadline`. Called from the
    /// scope's poll, with the shard just looked up: the registration keeps
    /// that reference.
    pub(crate) fn register(self: Arc<Self>, deadline: Instant, target: Target) -> Registration {
        let (key, generation, earlier) = {
            let mut state = lock(&self.state);
            let (key, generation) = state.insert(deadline, target);
            (key, generation, state.lower_armed_at(deadline))
        };
        if earlier {
            self.rearm();
        }
        Registration {
            shard: self,
            key,
            generation,
        }
    }

    /// Asks the driver to arm the timer at the earliest deadline.
    fn rearm(&self) {
        match &self.driver {
            Driver::AsyncIo { .. } => self.arm_async_io(),
            #[cfg(feature = "tokio")]
            Driver::Tokio { task, .. } => task.wake(),
        }
    }

    /// Expires the passed entries and arms the async-io timer at the
    /// earliest deadline left.
    fn arm_async_io(&self) {
        #[allow(irrefutable_let_patterns)] // without tokio, the only driver
        let Driver::AsyncIo { timer, waker } = &self.driver
        else {
            return;
        };
        let mut expired = Vec::new();
        {
            let mut timer = lock(timer);
            let mut cx = Context::from_waker(waker);
            loop {
                let next = lock(&self.state).expire(self.clock().now(), &mut expired);
                let Some(next) = next else { break };
                // Under the testing kit's manual clock, its advance wakes
                // the shard's waker instead of the timer.
                match crate::hooks::clock::poll_reached(next, waker) {
                    Some(true) => continue,
                    Some(false) => break,
                    None => {}
                }
                timer.set_at(next);
                if Pin::new(&mut *timer).poll(&mut cx).is_pending() {
                    break;
                }
            }
        }
        tell_expired(expired);
    }

    /// The driver task is gone: nothing fires in this shard any more. Its
    /// scopes are woken so that they register again where they are polled.
    #[cfg(feature = "tokio")]
    fn mark_dead(&self) {
        if let Driver::Tokio { dead, .. } = &self.driver {
            dead.store(true, std::sync::atomic::Ordering::Release);
        }
        let targets: Vec<_> = {
            let state = lock(&self.state);
            state
                .entries
                .iter()
                .map(|(_, entry)| entry.target.clone())
                .collect()
        };
        for target in targets {
            match target {
                Target::Scope(scope) => {
                    if let Some(scope) = scope.upgrade() {
                        scope.token.wake_owner();
                    }
                }
                Target::Task(waker) => waker.wake(),
            }
        }
    }
}

/// Tells the expired entries' scopes (each checks its own deadline against
/// the clock, which may have moved), outside every lock of the shard.
fn tell_expired(expired: Expired) {
    for target in expired {
        match target {
            Target::Scope(scope) => {
                if let Some(scope) = scope.upgrade() {
                    scope.deadline_reached();
                }
            }
            Target::Task(waker) => waker.wake(),
        }
    }
}

#[cfg(test)]
mod tests;
