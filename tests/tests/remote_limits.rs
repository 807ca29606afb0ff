//! No cluster cancel is dropped silently: the tombstone cap refuses a
//! cancel instead of evicting a pending one, a repeated cancel keeps one
//! tombstone, and an oversize message is refused before anything is sent.
//! On a real `redis-server`.

use std::time::{Duration, Instant};

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, Target};
use cancelable::{CancelReason, CancelScope};
use cancelable_tests::redis::{builder, join, RedisServer};

const TOMBSTONES: &str = "cancelable:v2:tombstones";

async fn cancelled_at_start(registry: &Registry, key: &str) -> bool {
    let scope = CancelScope::new().register_in(registry).key(key).unwrap();
    let mut job = Box::pin(scope.run(std::future::pending::<()>()));
    futures::poll!(job.as_mut()).is_ready()
}

cancelable_tests::on_every_backend! {
    async fn a_full_tombstone_set_refuses_the_cancel_and_evicts_nothing() {
        let server = RedisServer::start();
        let (registry_a, registry_c) = (Registry::new(), Registry::new());
        let a = builder(&server, "a", &registry_a).max_tombstones(20).connect().await.unwrap();
        for i in 0..20 {
            let sent = a.cancel(Target::key(format!("pending-{i}")), CancelReason::Manual, "").await;
            assert!(matches!(sent, Err(RemoteError::NotFound { .. })), "{sent:?}");
        }
        let refused = a.cancel(Target::key("one-too-many"), CancelReason::Manual, "").await;
        let error = refused.expect_err("the 21st cancel with a cap of 20 must be refused");
        assert_eq!(error, RemoteError::TombstonesFull { max: 20 });
        assert!(error.to_string().contains("20 unexpired tombstones"), "{error}");
        let _c = join(&server, "c", &registry_c).await;
        for i in 0..20 {
            assert!(cancelled_at_start(&registry_c, &format!("pending-{i}")).await, "pending-{i} was evicted");
        }
    }

    async fn a_repeated_cancel_keeps_one_tombstone_per_target() {
        let server = RedisServer::start();
        let (registry_a, registry_c) = (Registry::new(), Registry::new());
        let a = builder(&server, "a", &registry_a).max_tombstones(20).connect().await.unwrap();
        let _ = a.cancel(Target::key("pending"), CancelReason::Manual, "keep me").await;
        for _ in 0..40 {
            let _ = a.cancel(Target::key("again"), CancelReason::Manual, "again").await;
            cancelable_tests::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(server.integer(&["ZCARD", TOMBSTONES]), 2);
        let _c = join(&server, "c", &registry_c).await;
        assert!(cancelled_at_start(&registry_c, "pending").await, "the pending cancel was evicted");
    }

    async fn an_oversize_cancel_is_refused_before_anything_is_sent() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        for size in [100 << 10, 5 << 20] {
            let started = Instant::now();
            let sent = a.cancel(Target::key("big"), CancelReason::Manual, "m".repeat(size)).await;
            let error = sent.expect_err("an oversize cancel must be refused");
            assert!(matches!(error, RemoteError::TooLarge { limit: 65536, .. }), "{error:?}");
            assert!(error.to_string().contains("65536"), "{error}");
            // Refused on this node, without a round trip to the broker: a
            // generous bound (it took 1.2 s once on a loaded 2-core machine);
            // the empty tombstone set below is the proof nothing was sent.
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
            let key = "k".repeat(size);
            let error = a.cancel(Target::key(key), CancelReason::Manual, "").await.expect_err("oversize key");
            assert!(error.to_string().contains("65536"), "{error}");
        }
        assert_eq!(server.integer(&["ZCARD", TOMBSTONES]), 0);
    }
}

cancelable_tests::on_every_backend! {
    async fn a_broker_without_persistence_is_reported_at_connect() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        // The test broker runs with `--save "" --appendonly no`.
        let a = join(&server, "a", &registry_a).await;
        assert_eq!(a.broker_keeps_tombstones(), Some(false));
        assert_eq!(server.command(&["CONFIG", "SET", "appendonly", "yes"]).unwrap(), "+OK");
        let b = join(&server, "b", &registry_b).await;
        assert_eq!(b.broker_keeps_tombstones(), Some(true));
    }
}

cancelable_tests::on_every_backend! {
    async fn a_node_with_a_huge_snapshot_stays_listed_and_says_what_it_left_out() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let b = builder(&server, "b", &registry_b)
            .heartbeat(Duration::from_millis(200), Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        let mut jobs = Vec::new();
        for i in 0..10_000 {
            let key = format!("{i:0>450}");
            let scope = CancelScope::new().register_in(&registry_b).key(key).unwrap();
            let mut job = Box::pin(scope.run(std::future::pending::<()>()));
            assert!(futures::poll!(job.as_mut()).is_pending());
            jobs.push(job);
        }
        // Wait for a snapshot taken after the last registration: under load,
        // building and publishing 10,000 operations can take longer than a
        // few heartbeats, so a fixed sleep could read an earlier one.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = a.nodes().await.unwrap();
            let total = nodes
                .iter()
                .find(|snapshot| snapshot.node == "b")
                .map(|snapshot| snapshot.operations.len() + snapshot.truncated);
            if total == Some(10_000) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no snapshot of node b covering its 10,000 operations within 30 s (last total: {total:?})"
            );
            cancelable_tests::sleep(Duration::from_millis(100)).await;
        }
        let mut seen = 0;
        for _ in 0..10 {
            let nodes = a.nodes().await.unwrap();
            if let Some(snapshot) = nodes.iter().find(|snapshot| snapshot.node == "b") {
                seen += 1;
                assert!(snapshot.truncated > 0, "{} listed, none left out", snapshot.operations.len());
                assert_eq!(snapshot.operations.len() + snapshot.truncated, 10_000);
            }
            cancelable_tests::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, 10, "node b, alive, was missing from {} of 10 listings", 10 - seen);
        drop(b);
    }
}
