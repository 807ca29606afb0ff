//! Where a registry finds an operation by id without hashing on the way in:
//! the live set's slots ([`LiveSlots`], one table per shard) and the
//! history's index ([`HistoryIndex`]). Registering and finishing an
//! operation costs an array index and, for the history, one atomic
//! compare-and-swap; the id → place search happens only on a query.
//!
//! Both use that ids come in per-thread blocks of consecutive numbers
//! (`next_operation_id`): an id's place is its low bits, so the operations
//! of one block sit side by side and collide only with ids far apart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::record::Record;

/// How many consecutive ids share a shard (the size of a thread's id block).
const IDS_PER_SHARD_RUN: u64 = 1024;
/// Shards of the live set (and of the key table).
pub(crate) const SHARDS: usize = 32;

/// The live-set shard of `id`: a function of the id alone, so that a
/// look-up by id takes one shard's lock; one shard per block of ids, so
/// that threads registering at once use different shards.
pub(crate) fn shard_of(id: u64) -> usize {
    ((id / IDS_PER_SHARD_RUN) % SHARDS as u64) as usize
}

/// Places per shard: a shard holds the ids of every `SHARDS`-th block of
/// `IDS_PER_SHARD_RUN`, so within a shard `id % SLOTS` is distinct for all
/// ids of one block; two live ids share a place only when they are
/// `SLOTS * SHARDS` (32,768) or a multiple of it apart.
const SLOTS: usize = IDS_PER_SHARD_RUN as usize;

/// The live records of one shard (under the shard's lock): a table of
/// [`SLOTS`] places, allocated at the shard's first operation, each
/// holding the record whose id falls on it, and the few records whose
/// place was taken by an older live operation.
///
/// Invariant: a record is in exactly one place, its own (`id % SLOTS`) or
/// `overflow`, from its insertion to its removal.
#[derive(Default)]
pub(crate) struct LiveSlots {
    table: Vec<Option<Arc<Record>>>,
    overflow: Vec<Arc<Record>>,
    len: usize,
}

fn place(id: u64) -> usize {
    (id % SLOTS as u64) as usize
}

impl LiveSlots {
    /// Adds the record of operation `id` (not in the set).
    pub(crate) fn insert(&mut self, id: u64, record: Arc<Record>) {
        if self.table.is_empty() {
            self.table.resize_with(SLOTS, || None);
        }
        match &mut self.table[place(id)] {
            free @ None => *free = Some(record),
            Some(_) => self.overflow.push(record),
        }
        self.len += 1;
    }

    /// Takes operation `id` out of the set, if it is in it.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<Record>> {
        let own = self.table.get_mut(place(id))?;
        let removed = if own.as_ref().is_some_and(|record| record.id == id) {
            own.take()
        } else {
            let at = self.overflow.iter().position(|record| record.id == id)?;
            Some(self.overflow.swap_remove(at))
        };
        self.len -= 1;
        removed
    }

    /// The record of operation `id`, if it is in the set.
    pub(crate) fn get(&self, id: u64) -> Option<&Arc<Record>> {
        match self.table.get(place(id))? {
            Some(record) if record.id == id => Some(record),
            _ => self.overflow.iter().find(|record| record.id == id),
        }
    }

    /// How many records the set holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every record, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Record>> {
        let table = if self.len == 0 {
            &[][..]
        } else {
            &self.table[..]
        };
        table.iter().flatten().chain(self.overflow.iter())
    }
}

/// How many cells a look-up or an insertion tries, from the id's own.
const PROBES: u64 = 8;

/// Index cells are allocated in chunks of this many, as ids reach them.
const INDEX_CHUNK: usize = 1024;

/// The history's index: operation id → arrival number in the ring, kept
/// without locks and without removals.
///
/// A cell holds an arrival number plus one (0: empty). An operation's cell
/// is the first of the [`PROBES`] cells from `id`'s own (`id % cells`)
/// that is empty or holds an arrival the ring has moved past (`stale`): an
/// evicted entry needs no removal, the next insertion reuses its cell.
/// A cell is only a hint: the ring slot it names is checked for the id.
/// Should all `PROBES` cells hold live arrivals (ids `cells` apart
/// finishing together), the oldest is overwritten and noted in `lost`;
/// until that arrival leaves the ring, a look-up that finds nothing
/// searches the ring itself. With twice as many cells as the ring holds,
/// that takes nine live ids in eight neighbouring cells.
///
/// Cells are allocated by chunks as ids reach them: since ids come in
/// blocks of consecutive numbers, a history that saw few operations
/// holds few chunks, whatever its capacity.
pub(crate) struct HistoryIndex {
    mask: u64,
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
    /// The newest arrival (plus one) whose cell was overwritten while its
    /// entry was still in the ring; 0 if none.
    lost: AtomicU64,
}

impl HistoryIndex {
    /// An index for a ring of `capacity` entries: twice as many cells,
    /// none allocated yet.
    pub(crate) fn new(capacity: usize) -> Self {
        let cells = (capacity.max(1) * 2).next_power_of_two().max(INDEX_CHUNK);
        HistoryIndex {
            mask: cells as u64 - 1,
            chunks: (0..cells / INDEX_CHUNK).map(|_| OnceLock::new()).collect(),
            lost: AtomicU64::new(0),
        }
    }

    fn cell(&self, position: u64) -> Option<&AtomicU64> {
        let position = (position & self.mask) as usize;
        let chunk = self.chunks[position / INDEX_CHUNK].get()?;
        Some(&chunk[position % INDEX_CHUNK])
    }

    fn cell_or_new(&self, position: u64) -> &AtomicU64 {
        let position = (position & self.mask) as usize;
        let chunk = self.chunks[position / INDEX_CHUNK]
            .get_or_init(|| (0..INDEX_CHUNK).map(|_| AtomicU64::new(0)).collect());
        &chunk[position % INDEX_CHUNK]
    }

    /// Notes that operation `id` arrived as `seq`; arrivals before
    /// `oldest` have left the ring (or are leaving it).
    pub(crate) fn insert(&self, id: u64, seq: u64, oldest: u64) {
        let new = seq + 1;
        let mut oldest_live: Option<(&AtomicU64, u64)> = None;
        for probe in 0..PROBES {
            let cell = self.cell_or_new(id.wrapping_add(probe));
            let mut current = cell.load(Ordering::Acquire);
            loop {
                // Holds an arrival still in the ring (`current - 1 >= oldest`).
                if current > oldest {
                    break;
                }
                match cell.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return,
                    Err(now) => current = now,
                }
            }
            if oldest_live.is_none_or(|(_, at)| current < at) {
                oldest_live = Some((cell, current));
            }
        }
        // Every cell holds an arrival still in the ring: the oldest loses
        // its cell, and look-ups search the ring while it may be there.
        if let Some((cell, _)) = oldest_live {
            let lost = cell.swap(new, Ordering::AcqRel);
            self.lost.fetch_max(lost, Ordering::AcqRel);
        }
    }

    /// The arrivals (plus one) the cells of `id` name, newest first not
    /// guaranteed: each is to be checked against the ring.
    pub(crate) fn candidates(&self, id: u64) -> impl Iterator<Item = u64> + '_ {
        (0..PROBES).filter_map(move |probe| {
            let seq = self.cell(id.wrapping_add(probe))?.load(Ordering::Acquire);
            seq.checked_sub(1)
        })
    }

    /// `true` if an arrival at or after `oldest` (still in the ring) may
    /// have lost its cell: a look-up that found nothing must search.
    pub(crate) fn may_have_lost(&self, oldest: u64) -> bool {
        self.lost
            .load(Ordering::Acquire)
            .checked_sub(1)
            .is_some_and(|lost| lost >= oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_finds_ids_that_share_their_cells() {
        let index = HistoryIndex::new(4);
        let cells = index.mask + 1;
        // Nine ids on the same cell, all in the ring (`oldest` 0): the
        // first eight get cells, the ninth takes the oldest's.
        for seq in 0..9 {
            index.insert(seq * cells, seq, 0);
        }
        assert!(index.may_have_lost(0));
        assert!(!index.may_have_lost(1));
        let found: Vec<u64> = index.candidates(0).collect();
        assert!(found.contains(&8) && !found.contains(&0), "{found:?}");
        // Once the ring moved past them, their cells are reused first.
        index.insert(10 * cells, 9, 9);
        assert_eq!(index.candidates(0).next(), Some(9));
    }
}
