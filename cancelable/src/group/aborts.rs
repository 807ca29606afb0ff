//! The abort handles of a group's spawned children ([`ChildAbort`], kept
//! in `GroupState::spawned`): what the group aborts when a second signal
//! ends its grace or it is dropped.
//!
//! Kept in fixed chunks of [`CHUNK`] entries, each allocated once at its
//! full size and never grown: a group spawning children in a burst makes
//! one small allocation per chunk, instead of a table reallocated by
//! doublings (whose larger sizes also cost the allocator a consolidation
//! of its free lists). A key names its chunk and its entry in it.

use std::sync::Arc;

use slab::Slab;

/// Aborts a child running on an executor: kept by its group (`spawned`),
/// it reaches the state the child shares with its handle (`child.rs`), so
/// that aborting needs no allocation of its own. An aborted child ends at
/// its task's next poll, and its drop reports it cancelled.
#[derive(Clone)]
pub(crate) struct ChildAbort(pub(crate) Arc<dyn Abort>);

/// What [`ChildAbort`] calls: marks the child aborted and wakes its task.
pub(crate) trait Abort: Send + Sync {
    fn abort(&self);
}

impl ChildAbort {
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

/// Entries per chunk: a chunk (24 bytes an entry) stays in the allocator's
/// small sizes.
const CHUNK: usize = 32;

/// The spawned children's abort handles, by key.
#[derive(Default)]
pub(crate) struct Aborts {
    chunks: Vec<Slab<ChildAbort>>,
    /// Every chunk before this one is full.
    open: usize,
}

impl Aborts {
    /// Keeps `abort`; its key, for [`remove`](Self::remove).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, abort: ChildAbort) -> usize {
        self.insert_with(|_| abort)
    }

    /// Keeps the abort handle `make(key)` makes, knowing its key (a
    /// spawned child is built knowing it); its key, for
    /// [`remove`](Self::remove).
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(usize) -> ChildAbort) -> usize {
        while let Some(chunk) = self.chunks.get_mut(self.open) {
            if chunk.len() < CHUNK {
                // A chunk with fewer than `CHUNK` entries has a vacant key
                // below `CHUNK`: it never grows past its first allocation.
                let key = self.open * CHUNK + chunk.vacant_key();
                chunk.insert(make(key));
                return key;
            }
            self.open += 1;
        }
        let mut chunk = Slab::with_capacity(CHUNK);
        let key = self.open * CHUNK + chunk.vacant_key();
        chunk.insert(make(key));
        self.chunks.push(chunk);
        key
    }

    /// Drops the abort handle of `key`, if it is still kept.
    pub(crate) fn remove(&mut self, key: usize) {
        let chunk = key / CHUNK;
        if let Some(entries) = self.chunks.get_mut(chunk) {
            if entries.try_remove(key % CHUNK).is_some() {
                self.open = self.open.min(chunk);
            }
        }
    }

    /// Every abort handle kept.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ChildAbort> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter().map(|(_, abort)| abort))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counted(AtomicUsize);

    impl Abort for Counted {
        fn abort(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn keys_stay_valid_and_freed_entries_are_reused_without_growing() {
        let counted = Arc::new(Counted(AtomicUsize::new(0)));
        let mut aborts = Aborts::default();
        let keys: Vec<_> = (0..100)
            .map(|_| aborts.insert(ChildAbort(counted.clone())))
            .collect();
        assert_eq!(keys, (0..100).collect::<Vec<_>>());
        assert_eq!(aborts.chunks.len(), 4);
        // Free some entries in the first and the third chunks: they are
        // reused first, and no chunk grows.
        for key in [3, 70, 31] {
            aborts.remove(key);
        }
        aborts.remove(70); // already gone: nothing happens
        let reused: Vec<_> = (0..4)
            .map(|_| aborts.insert(ChildAbort(counted.clone())))
            .collect();
        assert_eq!(&reused[..2], &[31, 3]);
        assert_eq!(reused[2], 70);
        assert_eq!(reused[3], 100);
        assert!(aborts.chunks.iter().all(|chunk| chunk.capacity() == CHUNK));
        assert_eq!(aborts.iter().count(), 101);
        for abort in aborts.iter() {
            abort.abort();
        }
        assert_eq!(counted.0.load(Ordering::Relaxed), 101);
    }
}
