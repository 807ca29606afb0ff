//! Every expiry in the broker uses the broker's clock: nodes whose wall
//! clocks are wrong (emulated with the per-node clock offset seam) neither
//! hide other nodes, nor vanish, nor erase or lose tombstones. On a real
//! `redis-server`.

use std::time::Duration;

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, Target};
use cancelable::{CancelReason, CancelScope};
use cancelable_tests::redis::{builder, join, RedisServer};

const HOUR_MS: i64 = 3_600_000;

/// Whether an operation registering under `key` in `registry` is
/// cancelled as it starts (it ends at its first await).
async fn cancelled_at_start(registry: &Registry, key: &str) -> bool {
    let scope = CancelScope::new().register_in(registry).key(key).unwrap();
    let mut job = Box::pin(scope.run(std::future::pending::<()>()));
    futures::poll!(job.as_mut()).is_ready()
}

async fn cancel_early(node: &cancelable::remote::RemoteRegistry, key: &str) {
    match node
        .cancel(Target::key(key), CancelReason::Manual, "early")
        .await
    {
        Err(RemoteError::NotFound { .. }) => {}
        other => panic!("cancel of {key}: {other:?}"),
    }
}

cancelable_tests::on_every_backend! {
    async fn a_node_whose_clock_runs_ahead_does_not_hide_the_others() {
        let server = RedisServer::start();
        let (registry_a, registry_b, registry_c) = (Registry::new(), Registry::new(), Registry::new());
        let _ahead = builder(&server, "ahead", &registry_a).clock_offset(30_000).connect().await.unwrap();
        let _b = join(&server, "b", &registry_b).await;
        let c = join(&server, "c", &registry_c).await;
        let mut missing = 0;
        for _ in 0..30 {
            let nodes = c.nodes().await.unwrap();
            if !nodes.iter().any(|snapshot| snapshot.node == "b") {
                missing += 1;
            }
            cancelable_tests::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(missing, 0, "live node b missing from {missing} of 30 nodes() calls");
    }

    async fn a_node_whose_clock_runs_behind_is_listed() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _behind = builder(&server, "behind", &registry_b).clock_offset(-15_000).connect().await.unwrap();
        let mut missing = 0;
        for _ in 0..10 {
            let nodes = a.nodes().await.unwrap();
            if !nodes.iter().any(|snapshot| snapshot.node == "behind") {
                missing += 1;
            }
            cancelable_tests::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(missing, 0, "live node `behind` missing from {missing} of 10 nodes() calls");
    }

    async fn a_cancel_from_a_node_hours_ahead_erases_no_tombstone() {
        let server = RedisServer::start();
        let (registry_a, registry_z, registry_c) = (Registry::new(), Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let z = builder(&server, "z", &registry_z).clock_offset(4 * HOUR_MS).connect().await.unwrap();
        for i in 0..50 {
            cancel_early(&a, &format!("honest-{i}")).await;
        }
        cancel_early(&z, "from-the-future").await;
        cancel_early(&a, "after").await;
        // A node joining now reads every tombstone from the broker.
        let _c = join(&server, "c", &registry_c).await;
        let mut kept = 0;
        for i in 0..50 {
            kept += usize::from(cancelled_at_start(&registry_c, &format!("honest-{i}")).await);
        }
        assert_eq!(kept, 50, "only {kept} of 50 tombstones survived a cancel from a clock 4 h ahead");
        assert!(cancelled_at_start(&registry_c, "from-the-future").await);
    }

    async fn a_cancel_from_a_node_hours_behind_still_stops_its_target() {
        let server = RedisServer::start();
        let (registry_y, registry_b, registry_c) = (Registry::new(), Registry::new(), Registry::new());
        let y = builder(&server, "y", &registry_y).clock_offset(-4 * HOUR_MS).connect().await.unwrap();
        let _b = join(&server, "b", &registry_b).await;
        cancel_early(&y, "from-the-past").await;
        // b was connected: its copy must not count the tombstone as expired.
        assert!(cancelled_at_start(&registry_b, "from-the-past").await, "b dropped the tombstone");
        let _c = join(&server, "c", &registry_c).await;
        assert!(cancelled_at_start(&registry_c, "from-the-past").await, "the broker dropped the tombstone");
    }
}
