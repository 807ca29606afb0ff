//! The cluster's timers and clock reads follow the testing kit's
//! [`ManualClock`], as every other timer of the crate does: a node's local
//! tombstones expire when the manual clock passes their TTL, with no real
//! waiting. On a real `redis-server`. Every test here installs the manual
//! clock (so they take turns), hence a binary of their own.

use std::time::{Duration, Instant};

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, RemoteRegistry, Target};
use cancelable::testing::ManualClock;
use cancelable::{CancelReason, CancelScope};
use cancelable_tests::redis::{builder, RedisServer};

/// Whether an operation registering under `key` in `registry` is
/// cancelled as it starts (it ends at its first await).
async fn cancelled_at_start(registry: &Registry, key: &str) -> bool {
    let scope = CancelScope::new().register_in(registry).key(key).unwrap();
    let mut job = Box::pin(scope.run(std::future::pending::<()>()));
    futures::poll!(job.as_mut()).is_ready()
}

/// Joins `registry` as node `a`, with a heartbeat `every` interval and a
/// long snapshot TTL: while the manual clock stands still no heartbeat
/// goes out, and the broker (on its own, real clock) must not forget the
/// node meanwhile.
async fn join_beating(
    server: &RedisServer,
    registry: &Registry,
    every: Duration,
    tombstone_ttl: Duration,
) -> RemoteRegistry {
    builder(server, "a", registry)
        .heartbeat(every, Duration::from_secs(600))
        .tombstone_ttl(tombstone_ttl)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("node a could not join: {error}"))
}

cancelable_tests::on_every_backend! {
    async fn a_local_tombstone_expires_when_the_manual_clock_passes_its_ttl() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let clock = ManualClock::install();
        let node = join_beating(&server, &registry, Duration::from_secs(30), Duration::from_secs(60)).await;
        // Nothing runs under the key yet: the cancel leaves a tombstone.
        match node.cancel(Target::key("late"), CancelReason::Manual, "early").await {
            Err(RemoteError::NotFound { .. }) => {}
            other => panic!("cancel of `late`: {other:?}"),
        }
        assert!(cancelled_at_start(&registry, "late").await, "within its TTL the tombstone cancels");
        clock.advance(Duration::from_secs(59));
        assert!(cancelled_at_start(&registry, "late").await, "one second before its TTL it still does");
        clock.advance(Duration::from_secs(2));
        assert!(
            !cancelled_at_start(&registry, "late").await,
            "past its TTL on the manual clock the tombstone no longer cancels"
        );
        node.close().await;
        drop(clock);
    }

    async fn cancel_and_wait_sees_the_exit_while_the_manual_clock_stands_still() {
        // The node waits for the exit on the operation's outcome, not on a
        // timer: with the clock standing still, the ack still says the
        // operation exited.
        let server = RedisServer::start();
        let registry = Registry::new();
        let clock = ManualClock::install();
        let node = join_beating(&server, &registry, Duration::from_secs(30), Duration::from_secs(60)).await;
        let job = CancelScope::new().register_in(&registry).key("job").unwrap();
        let job = job.run(std::future::pending::<()>());
        let cancel = async {
            while registry.get_by_key("job").is_none() {
                cancelable_tests::yield_once().await;
            }
            node.cancel_and_wait(Target::key("job"), CancelReason::Manual, "stop", Duration::from_secs(5)).await
        };
        // Real time (not the manual clock) bounds the test.
        let bounded = futures::future::select(
            Box::pin(async { futures::join!(job, cancel) }),
            Box::pin(cancelable_tests::sleep(Duration::from_secs(10))),
        );
        let (outcome, ack) = match bounded.await {
            futures::future::Either::Left((both, _)) => both,
            futures::future::Either::Right(_) => panic!("no answer within 10 s of real time"),
        };
        assert!(outcome.is_err(), "the job ended cancelled");
        let ack = ack.expect("the node found the job");
        assert!(!ack.running, "the ack says the job exited: {ack:?}");
        assert!(ack.lag.is_some());
        node.close().await;
        drop(clock);
    }

    async fn the_heartbeat_goes_out_when_the_manual_clock_passes_its_interval() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let clock = ManualClock::install();
        let node = join_beating(&server, &registry, Duration::from_millis(100), Duration::from_secs(60)).await;
        let published = || async { node.nodes().await.unwrap()[0].published_ms };
        let first = published().await;
        // Three heartbeat intervals of real time: the clock stands still.
        cancelable_tests::sleep(Duration::from_millis(300)).await;
        assert_eq!(published().await, first, "no heartbeat while the manual clock stands still");
        clock.advance(Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(10);
        while published().await == first {
            assert!(Instant::now() < deadline, "no heartbeat within 10 s of the advance");
            cancelable_tests::sleep(Duration::from_millis(10)).await;
        }
        node.close().await;
        drop(clock);
    }
}
