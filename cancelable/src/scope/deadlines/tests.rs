//! The shard's heap and slab, without timers.

use std::time::Duration;

use super::*;

/// `count` deadlines one millisecond apart, the earliest first.
fn deadlines(count: usize) -> Vec<Instant> {
    let start = Instant::now();
    (0..count)
        .map(|n| start + Duration::from_millis(n as u64))
        .collect()
}

/// Registers `count` entries one millisecond apart: each deadline with
/// the entry's key and generation.
fn register(state: &mut ShardState, count: usize) -> Vec<(Instant, (usize, u64))> {
    deadlines(count)
        .into_iter()
        .map(|deadline| (deadline, state.insert(deadline, Target::Scope(Weak::new()))))
        .collect()
}

fn expire_all(state: &mut ShardState) -> usize {
    let mut expired = Vec::new();
    let far = Instant::now() + Duration::from_secs(3600);
    assert_eq!(state.expire(far, &mut expired), None);
    expired.len()
}

#[test]
fn removed_entries_are_compacted_out_of_the_heap() {
    let mut state = ShardState::new();
    let registered = register(&mut state, 1000);
    assert_eq!(state.queue.len(), 1000);
    // Scopes that end long before their deadline: all but the last 10.
    for (_, (key, generation)) in &registered[..990] {
        state.remove(*generation, *key);
        assert!(
            state.queue.len() <= 64 || state.queue.len() <= 2 * state.entries.len() + 1,
            "the heap holds {} items for {} entries",
            state.queue.len(),
            state.entries.len()
        );
    }
    assert_eq!(state.entries.len(), 10);
    assert!(state.queue.len() <= 64, "{} items left", state.queue.len());
    // Every live entry survived the compactions, the earliest first.
    assert_eq!(state.earliest(), Some(registered[990].0));
    assert_eq!(expire_all(&mut state), 10);
    assert!(state.entries.is_empty());
}

#[test]
fn a_small_heap_is_cleaned_lazily() {
    let mut state = ShardState::new();
    let registered = register(&mut state, 50);
    for (_, (key, generation)) in &registered[..49] {
        state.remove(*generation, *key);
    }
    // Below the compaction threshold the dead items stay in the heap...
    assert_eq!(state.queue.len(), 50);
    // ...until they reach the top.
    assert_eq!(state.earliest(), Some(registered[49].0));
    assert_eq!(state.queue.len(), 1);
}

#[test]
fn a_reused_key_is_not_mistaken_for_the_removed_entry() {
    let mut state = ShardState::new();
    let times = deadlines(2);
    let (first, first_generation) = state.insert(times[0], Target::Scope(Weak::new()));
    state.remove(first_generation, first);
    // The slab hands the key out again, for a later deadline.
    let (second, _) = state.insert(times[1], Target::Scope(Weak::new()));
    assert_eq!(second, first);
    assert_eq!(state.queue.len(), 2);
    assert_eq!(state.earliest(), Some(times[1]));
    for _ in 0..100 {
        let (key, generation) = state.insert(times[1], Target::Scope(Weak::new()));
        state.remove(generation, key);
    }
    assert_eq!(state.earliest(), Some(times[1]));
    assert_eq!(expire_all(&mut state), 1);
}

#[test]
fn churn_keeps_the_heap_bounded() {
    let mut state = ShardState::new();
    let far = Instant::now() + Duration::from_secs(60);
    let (kept, _) = state.insert(far, Target::Scope(Weak::new()));
    for n in 0..10_000u64 {
        let (key, generation) =
            state.insert(far + Duration::from_nanos(n), Target::Scope(Weak::new()));
        state.remove(generation, key);
        assert!(state.queue.len() <= 65, "{} items", state.queue.len());
    }
    assert!(state.entries.contains(kept));
    assert_eq!(state.earliest(), Some(far));
}

#[test]
fn an_entry_whose_deadline_moved_later_is_queued_again_not_told() {
    let mut state = ShardState::new();
    let times = deadlines(3);
    let (key, _) = state.insert(times[0], Target::Scope(Weak::new()));
    // Taken over from a spare registration with a later deadline: its
    // heap item stays at the first one.
    state.entries[key].deadline = times[2];
    let mut expired = Vec::new();
    assert_eq!(state.expire(times[1], &mut expired), Some(times[2]));
    assert!(expired.is_empty(), "told before its deadline");
    assert_eq!(state.expire(times[2], &mut expired), None);
    assert_eq!(expired.len(), 1);
}
