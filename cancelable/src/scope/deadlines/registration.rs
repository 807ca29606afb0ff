//! A scope's deadline in its thread's shard ([`Registration`]), and the
//! per-thread spare registrations that the next scopes take over (the
//! parent module's docs).

use std::cell::RefCell;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use super::{Place, Shard, Target};
use crate::sync::lock;

/// A scope's deadline in a shard; dropping it removes the entry.
pub(crate) struct Registration {
    pub(super) shard: Arc<Shard>,
    pub(super) key: usize,
    pub(super) generation: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shard.state).remove(self.generation, self.key);
        // The timer may stay armed at this entry's deadline: it then wakes
        // once for nothing and re-arms at the next one.
    }
}

thread_local! {
    /// This thread's spare registrations (`Registration::retire`).
    static SPARE_TASK_ENTRIES: RefCell<Vec<Registration>> = const { RefCell::new(Vec::new()) };
}

/// How many ended scopes' entries a thread keeps for the next scopes: one
/// per level of scopes with a deadline nested in one another, for the
/// common few.
const SPARE_TASK_ENTRIES_CAPACITY: usize = 4;

impl Registration {
    /// A [`Target::Task`] entry at `deadline` waking `waker`, in the shard
    /// of `place` on this thread: a spare one of the thread's, taken over,
    /// if it has one there (see [`retire`](Self::retire)).
    #[inline]
    pub(crate) fn task(place: Place, deadline: Instant, waker: &Waker) -> Registration {
        if let Some(spare) = crate::spare::take(&SPARE_TASK_ENTRIES) {
            if spare.shard.serves(place.0) && spare.retarget(deadline, waker) {
                return spare;
            }
        }
        Shard::at(place).register(deadline, Target::Task(waker.clone()))
    }

    /// Takes over this spare entry for `deadline` and `waker`: `false` if
    /// it left the shard meanwhile (its old deadline was reached).
    fn retarget(&self, deadline: Instant, waker: &Waker) -> bool {
        let earlier = {
            let mut state = lock(&self.shard.state);
            let Some(entry) = state.entry_mut(self.generation, self.key) else {
                return false;
            };
            // `Target::set_task_waker`, written out: through the helper
            // this path (every timeout scope's start) measured +3 more.
            match &mut entry.target {
                Target::Task(current) if current.will_wake(waker) => {}
                target => *target = Target::Task(waker.clone()),
            }
            let earlier = deadline < entry.deadline;
            entry.deadline = deadline;
            if !earlier {
                // Its heap item, at or before its old deadline, stays
                // (`expire` queues the entry again at its deadline).
                return true;
            }
            state.queue_at(deadline, self.generation, self.key);
            state.lower_armed_at(deadline)
        };
        if earlier {
            self.shard.rearm();
        }
        true
    }

    /// The scope of this [`Target::Task`] entry ended before its deadline:
    /// the entry stays in the shard, as it is, for the next scope of the
    /// thread to take over ([`task`](Self::task)) without a new entry, a
    /// heap item or the shard's lock at this end. Most scopes end long
    /// before their deadline, and the next one has a later deadline.
    ///
    /// Until taken over, the entry holds the ended scope's waker: if its
    /// deadline is reached first, that task is woken once for nothing (a
    /// future may always be woken spuriously) and the entry leaves. At
    /// most [`SPARE_TASK_ENTRIES_CAPACITY`] are kept per thread; beyond,
    /// the registration is dropped (the entry leaves at once).
    #[inline]
    pub(crate) fn retire(self) {
        crate::spare::keep(&SPARE_TASK_ENTRIES, self, SPARE_TASK_ENTRIES_CAPACITY);
    }

    /// `false` once the shard can no longer fire (its tokio runtime shut
    /// down): the scope must register its deadline again.
    pub(crate) fn is_live(&self) -> bool {
        !self.shard.is_dead()
    }

    /// For a [`Target::Task`] entry, at a pend of its scope: `true` if the
    /// entry still waits for its deadline, and will wake `waker` (the
    /// task's waker may change between polls); `false` if it left the
    /// shard, its deadline reached.
    ///
    /// Under the state lock, so an expiry running at the same time either
    /// takes the entry before (this returns `false`: the caller sees the
    /// deadline itself) or wakes the waker set here: no wake-up is lost.
    pub(crate) fn waiting(&self, waker: &Waker) -> bool {
        let mut state = lock(&self.shard.state);
        match state.entry_mut(self.generation, self.key) {
            Some(entry) => {
                entry.target.set_task_waker(waker);
                true
            }
            None => false,
        }
    }
}
