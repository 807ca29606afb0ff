//! The registry finds an operation by id through its place, the id's low
//! bits: in the live set (1,024 places per shard, 32 shards, so live ids
//! 32,768 apart share a place) and in the history's index (a history of
//! more than 1,024 entries: twice as many cells as it holds, eight tried
//! per id; a smaller one is searched by the ids of its slots). Operations
//! whose ids share a place are each found, cancelled and remembered as if
//! they did not.

use cancelable::registry::{Filter, Registry};
use cancelable::{CancelReason, CancelScope, OperationStatus};
use cancelable_tests::on_every_backend;

/// Ids 32,768 apart share a place in the live set.
const LIVE_PLACES: u64 = 1024 * 32;
/// A history large enough to be indexed (more than 1,024 entries).
const INDEXED_CAPACITY: usize = 2000;
/// Its index's cells: the next power of two of twice its capacity.
const INDEX_CELLS: u64 = 4096;

/// A new scope whose id is `id` modulo `modulus` (and not `id` itself):
/// scopes are made, and dropped unstarted, until one is.
fn scope_sharing_a_place(id: u64, modulus: u64) -> CancelScope {
    for _ in 0..50_000_000u64 {
        let scope = CancelScope::new();
        let other = scope.handle().id();
        if other != id && other % modulus == id % modulus {
            return scope;
        }
    }
    panic!("no id sharing the place of {id} modulo {modulus}");
}

on_every_backend! {
    async fn live_operations_whose_ids_share_a_place_are_each_found_and_cancelled() {
        let registry = Registry::new();
        let first = CancelScope::new().name("first").register_in(&registry);
        let first_id = first.handle().id();
        let second = scope_sharing_a_place(first_id, LIVE_PLACES)
            .name("second")
            .register_in(&registry);
        let second_id = second.handle().id();
        let inside = registry.clone();
        let first_run = first.run(std::future::pending::<()>());
        let second_run = second.run(async move {
            let live = inside.snapshot();
            assert_eq!(live.live, 2);
            assert_eq!(inside.get(first_id).unwrap().name.as_deref(), Some("first"));
            assert_eq!(inside.get(second_id).unwrap().name.as_deref(), Some("second"));
            let answer = inside
                .cancel(first_id, CancelReason::Manual, "the first")
                .expect("the first is live");
            assert!(answer.outcome().is_some(), "the first was running");
            // The first leaves once polled; the second is still found.
            cancelable::sleep(std::time::Duration::from_millis(5))
                .await
                .unwrap();
            assert!(inside.get(first_id).is_none());
            assert_eq!(
                inside.finished(first_id).unwrap().status,
                OperationStatus::Cancelled
            );
            assert_eq!(inside.get(second_id).unwrap().name.as_deref(), Some("second"));
            assert_eq!(inside.list(&Filter::default()).len(), 1);
        });
        let (first_outcome, second_outcome) = futures::join!(first_run, second_run);
        assert!(first_outcome.is_err());
        assert!(second_outcome.is_ok());
        assert_eq!(
            registry.finished(second_id).unwrap().status,
            OperationStatus::Completed
        );
        assert!(registry.get(first_id).is_none() && registry.get(second_id).is_none());
        assert_eq!(registry.snapshot().live, 0);
    }

    async fn finished_operations_whose_ids_share_index_cells_are_each_found() {
        let registry = Registry::builder()
            .history_capacity(INDEXED_CAPACITY)
            .build()
            .unwrap();
        // Ten operations on one cell: the eight cells tried from it hold
        // the last eight, the first two lost theirs to them.
        ten_operations_on_one_place_are_each_found(&registry, INDEX_CELLS).await;
    }

    async fn finished_operations_of_a_history_without_an_index_are_each_found() {
        // The default history (1,000 entries) has no index: its slots'
        // ids are searched, whatever the ids.
        let registry = Registry::new();
        assert_eq!(registry.history_capacity(), 1000);
        ten_operations_on_one_place_are_each_found(&registry, INDEX_CELLS).await;
    }
}

/// Runs ten registered operations whose ids are equal modulo `modulus`,
/// then finds each in the history, and no operation that never ran.
async fn ten_operations_on_one_place_are_each_found(registry: &Registry, modulus: u64) {
    {
        let first = CancelScope::new().register_in(registry);
        let mut ids = vec![first.handle().id()];
        first.run(async {}).await.unwrap();
        for _ in 1..10 {
            let scope = scope_sharing_a_place(ids[0], modulus).register_in(registry);
            ids.push(scope.handle().id());
            scope.run(async {}).await.unwrap();
        }
        for id in &ids {
            let found = registry.finished(*id);
            assert_eq!(found.map(|operation| operation.id), Some(*id));
        }
        // An id of the same place that none of the ten has (ids come
        // from per-thread blocks, so one further along the place may
        // belong to them): never run in this registry, never found.
        let absent = (1..)
            .map(|step| ids[0] + modulus * step)
            .find(|id| !ids.contains(id))
            .unwrap();
        assert!(registry.finished(absent).is_none());
        assert_eq!(registry.history(100, &Filter::default()).len(), 10);
    }
}
