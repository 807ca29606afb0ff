//! A token node's listeners ([`Listeners`]): a slab whose first entry is
//! kept inline.
//!
//! Most tokens have at most one listener at a time (the scope watching
//! its token source, one child, one waiter): that one lives in the node
//! itself, and only a second one makes the slab, boxed so that the node
//! stays small (its allocation stays in one of the allocator's fast size
//! classes). A cancel then takes the listeners without freeing a buffer
//! either.
//!
//! Keys are those of a slab: stable while the entry lives, reused once it
//! is removed. Key 0 names the inline entry, key `k + 1` the slab's `k`.
//! Generic over the entry (the node's `Listener`), so that this file
//! depends on nothing of the node.

use slab::Slab;

/// The listeners of one token node (module docs).
pub(super) struct Listeners<Listener> {
    first: Option<Listener>,
    rest: Option<Box<Slab<Listener>>>,
}

impl<Listener> Default for Listeners<Listener> {
    fn default() -> Self {
        Listeners {
            first: None,
            rest: None,
        }
    }
}

impl<Listener> Listeners<Listener> {
    /// Adds `listener`: its key.
    #[inline]
    pub(super) fn insert(&mut self, listener: Listener) -> usize {
        if self.first.is_none() {
            self.first = Some(listener);
            return 0;
        }
        self.rest.get_or_insert_with(Box::default).insert(listener) + 1
    }

    /// The entry `key`, if there is one.
    pub(super) fn get(&self, key: usize) -> Option<&Listener> {
        match key {
            0 => self.first.as_ref(),
            key => self.rest.as_ref()?.get(key - 1),
        }
    }

    /// The entry `key`, if there is one.
    #[inline]
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut Listener> {
        match key {
            0 => self.first.as_mut(),
            key => self.rest.as_mut()?.get_mut(key - 1),
        }
    }

    /// Removes the entry `key`, if there is one.
    pub(super) fn try_remove(&mut self, key: usize) -> Option<Listener> {
        match key {
            0 => self.first.take(),
            key => self.rest.as_mut()?.try_remove(key - 1),
        }
    }

    /// Removes every entry. The slab keeps its buffer if it has no more
    /// room than `kept` entries; a larger one is freed.
    pub(super) fn clear(&mut self, kept: usize) {
        self.first = None;
        if let Some(rest) = &mut self.rest {
            if rest.capacity() > kept {
                self.rest = None;
            } else if !rest.is_empty() {
                rest.clear();
            }
        }
    }

    /// `true` if there is no entry.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(|rest| rest.is_empty())
    }

    /// Hands every entry to `each`, in the order of their keys: a cancel's
    /// walk, without an iterator chaining the two parts.
    #[inline(always)]
    pub(super) fn visit(&self, mut each: impl FnMut(&Listener)) {
        if let Some(first) = &self.first {
            each(first);
        }
        if let Some(rest) = &self.rest {
            for (_, listener) in rest.iter() {
                each(listener);
            }
        }
    }

    /// [`visit`](Self::visit), handing the entries over.
    #[inline(always)]
    pub(super) fn drain(self, mut each: impl FnMut(Listener)) {
        if let Some(first) = self.first {
            each(first);
        }
        if let Some(rest) = self.rest {
            for (_, listener) in *rest {
                each(listener);
            }
        }
    }

    /// Every entry, in the order of their keys.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Listener> {
        let rest = self.rest.iter().flat_map(|rest| rest.iter());
        self.first.iter().chain(rest.map(|(_, listener)| listener))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> u32 {
        7
    }

    #[test]
    fn the_first_entry_is_inline_and_keys_stay_valid() {
        let mut listeners = Listeners::default();
        let first = listeners.insert(entry());
        assert!(listeners.rest.is_none(), "one listener, no slab");
        let second = listeners.insert(entry());
        let third = listeners.insert(entry());
        assert_eq!((first, second, third), (0, 1, 2));
        assert!(listeners.get(first).is_some());
        assert!(listeners.try_remove(first).is_some());
        assert!(listeners.get(first).is_none());
        assert!(listeners.get_mut(second).is_some());
        // The inline room is used again first.
        assert_eq!(listeners.insert(entry()), 0);
        assert_eq!(listeners.iter().count(), 3);
        assert!(listeners.try_remove(third).is_some());
        assert!(listeners.try_remove(third).is_none());
        let mut visited = 0;
        listeners.visit(|_| visited += 1);
        assert_eq!(visited, 2);
        // Handed over in the order of their keys: the inline entry first.
        let mut drained = Vec::new();
        listeners.drain(|entry| drained.push(entry));
        assert_eq!(drained.len(), 2);
    }

    #[test]
    fn drain_hands_over_in_key_order() {
        let mut listeners = Listeners::default();
        for entry in 0..4u32 {
            assert_eq!(listeners.insert(entry), entry as usize);
        }
        let mut drained = Vec::new();
        listeners.drain(|entry| drained.push(entry));
        assert_eq!(drained, [0, 1, 2, 3]);
    }

    #[test]
    fn clear_keeps_a_small_buffer_and_frees_a_large_one() {
        let mut listeners = Listeners::default();
        for _ in 0..3 {
            listeners.insert(entry());
        }
        listeners.clear(8);
        assert_eq!(listeners.iter().count(), 0);
        assert!(listeners
            .rest
            .as_ref()
            .is_some_and(|rest| rest.capacity() > 0));
        for _ in 0..20 {
            listeners.insert(entry());
        }
        listeners.clear(8);
        assert_eq!(listeners.iter().count(), 0);
        assert!(listeners.rest.is_none());
    }
}
