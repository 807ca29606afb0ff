//! Remote cancellation across nodes of a cluster on a real `redis-server`:
//! by key and by cluster id, with reasons intact, acks, repeated cancels,
//! unknown targets, cancel before start, filters and the nodes' list.
//! Two nodes are two `RemoteRegistry` values with their own registries.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use cancelable::registry::{Filter, Registry};
use cancelable::remote::{AckStatus, RemoteError, RemoteFilter, Target};
use cancelable::{CancelReason, CancelScope, Cancelled, Signal};
use cancelable_tests::redis::{builder, eventually, join, RedisServer};

type Job = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

/// Starts a registered operation that runs until cancelled.
async fn started(scope: CancelScope) -> Job {
    let mut job: Job = Box::pin(scope.run(std::future::pending::<()>()));
    assert!(futures::poll!(job.as_mut()).is_pending());
    job
}

cancelable_tests::on_every_backend! {
    async fn cancel_by_key_reaches_the_other_node_with_reason_and_message() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let scope = CancelScope::new().name("export").register_in(&registry_b).key("job-42").unwrap();
        let id = scope.handle().id();
        let job = started(scope).await;

        let reason = CancelReason::Parent(Box::new(CancelReason::Signal(Signal::Terminate)));
        let ack = a.cancel(Target::key("job-42"), reason.clone(), "deploy 7: drain").await.unwrap();
        assert_eq!((ack.node.as_str(), ack.id, ack.status), ("b", id, AckStatus::Cancelled));
        assert_eq!(ack.key.as_deref(), Some("job-42"));
        assert_eq!(ack.name.as_deref(), Some("export"));

        let cancelled = job.await.unwrap_err();
        assert_eq!(cancelled.reason(), &reason);
        assert_eq!(cancelled.message(), Some("deploy 7: drain"));
    }

    async fn cancel_by_cluster_id_reaches_only_that_node() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let b = join(&server, "b", &registry_b).await;
        let on_b = CancelScope::new().register_in(&registry_b);
        let id = on_b.handle().id();
        let on_b = started(on_b).await;
        let on_a = CancelScope::new().register_in(&registry_a);
        let on_a_handle = on_a.handle();
        let on_a = started(on_a).await;

        let ack = a.cancel(Target::id("b", id), CancelReason::Timeout, "too slow").await.unwrap();
        assert_eq!(ack.target(), Target::id("b", id).in_instance(b.instance()));
        let cancelled = on_b.await.unwrap_err();
        assert_eq!((cancelled.reason(), cancelled.message()), (&CancelReason::Timeout, Some("too slow")));
        assert!(!on_a_handle.is_cancelled());
        drop(on_a);
    }

    async fn a_repeated_cancel_is_a_no_op() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let job = started(CancelScope::new().register_in(&registry_b).key("twice").unwrap()).await;

        let first = a.cancel(Target::key("twice"), CancelReason::Manual, "first").await.unwrap();
        let second = a.cancel(Target::key("twice"), CancelReason::Timeout, "second").await.unwrap();
        assert_eq!(first.status, AckStatus::Cancelled);
        assert_eq!(second.status, AckStatus::AlreadyCancelled);
        let cancelled = job.await.unwrap_err();
        assert_eq!((cancelled.reason(), cancelled.message()), (&CancelReason::Manual, Some("first")));
    }

    async fn an_unknown_target_is_not_found_once_every_node_answered() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        for target in [Target::id("b", u64::MAX), Target::id("nowhere", 1), Target::key("no-such-job")] {
            let started = Instant::now();
            let error = a.cancel(target.clone(), CancelReason::Manual, "").await.unwrap_err();
            assert_eq!(
                error,
                RemoteError::NotFound { target: target.to_string(), answered: 2, nodes: 2 }
            );
            // Both nodes answered: no need to wait for the answer limit (3 s).
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
            assert!(error.to_string().contains("tombstone"), "{error}");
        }
    }

    async fn a_cancel_before_the_start_stops_the_operation_as_it_registers() {
        let server = RedisServer::start();
        let (registry_a, registry_b, registry_c) = (Registry::new(), Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let early = a.cancel(Target::key("nightly"), CancelReason::Manual, "skip tonight").await;
        assert!(matches!(early, Err(RemoteError::NotFound { .. })), "{early:?}");

        // A node that was connected holds the tombstone locally: the scope
        // is cancelled as it starts, and ends at its first await.
        let ran = CancelScope::new()
            .register_in(&registry_b)
            .key("nightly")
            .unwrap()
            .run(std::future::pending::<()>())
            .await;
        let cancelled = ran.unwrap_err();
        assert_eq!((cancelled.reason(), cancelled.message()), (&CancelReason::Manual, Some("skip tonight")));

        // A node that joins later reads it from the broker.
        let _c = join(&server, "c", &registry_c).await;
        let cancelled = CancelScope::new()
            .register_in(&registry_c)
            .key("nightly")
            .unwrap()
            .run(std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.message(), Some("skip tonight"));
        // Other keys are not affected.
        let other = CancelScope::new().register_in(&registry_c).key("weekly").unwrap();
        assert_eq!(other.run(async { "ran" }).await.unwrap(), "ran");
    }

    async fn cancel_and_wait_reports_the_exit_and_its_lag() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let job = started(CancelScope::new().register_in(&registry_b).key("slow").unwrap()).await;
        let (outcome, ack) = futures::join!(
            job,
            a.cancel_and_wait(Target::key("slow"), CancelReason::Manual, "stop", Duration::from_secs(10))
        );
        assert!(outcome.is_err());
        let ack = ack.unwrap();
        assert!(!ack.running, "{ack:?}");
        assert!(ack.lag.is_some_and(|lag| lag < Duration::from_secs(10)), "{ack:?}");
    }

    async fn cancel_where_selects_by_metadata_across_nodes() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let on_a = started(CancelScope::new().name("part-1").metadata("job", "42").register_in(&registry_a)).await;
        let on_b = started(CancelScope::new().name("part-2").metadata("job", "42").register_in(&registry_b)).await;
        let mut other = started(CancelScope::new().name("part-1").metadata("job", "43").register_in(&registry_b)).await;

        let mut acks = a
            .cancel_where(&RemoteFilter::new().metadata("job", "42"), CancelReason::Manual, "job 42 aborted")
            .await
            .unwrap();
        acks.sort_by(|x, y| x.node.cmp(&y.node));
        let nodes: Vec<_> = acks.iter().map(|ack| ack.node.as_str()).collect();
        assert_eq!(nodes, ["a", "b"]);
        for job in [on_a, on_b] {
            assert_eq!(job.await.unwrap_err().message(), Some("job 42 aborted"));
        }
        assert!(futures::poll!(other.as_mut()).is_pending());

        // By name pattern, on one node only.
        let filter = RemoteFilter::new().name("part-*").unwrap().node("a");
        assert!(a.cancel_where(&filter, CancelReason::Manual, "").await.unwrap().is_empty());
        let filter = RemoteFilter::new().name("part-*").unwrap().node("b");
        assert_eq!(a.cancel_where(&filter, CancelReason::Manual, "").await.unwrap().len(), 1);
        assert!(other.await.is_err());
    }

    async fn list_shows_every_node_and_a_node_that_left_disappears() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let b = join(&server, "b", &registry_b).await;
        let _on_a = started(CancelScope::new().name("on-a").register_in(&registry_a)).await;
        let _on_b = started(CancelScope::new().name("on-b").register_in(&registry_b).key("k-b").unwrap()).await;

        let names = |list: Vec<cancelable::remote::RemoteOperation>| {
            list.into_iter()
                .map(|op| format!("{}:{}", op.node, op.name.unwrap_or_default()))
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = names(a.list().await.unwrap());
            if listed == ["a:on-a", "b:on-b"] {
                break;
            }
            assert!(Instant::now() < deadline, "list never showed both nodes: {listed:?}");
            cancelable_tests::sleep(Duration::from_millis(20)).await;
        }
        let on_b = a.list().await.unwrap().into_iter().find(|op| op.node == "b").unwrap();
        assert_eq!(on_b.key.as_deref(), Some("k-b"));
        assert_eq!(on_b.status, "running");

        b.close().await;
        assert_eq!(names(a.list().await.unwrap()), ["a:on-a"]);
    }

    async fn a_new_operation_is_listed_without_waiting_for_the_heartbeat() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let a = builder(&server, "a", &registry)
            .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
            .connect()
            .await
            .unwrap();
        assert!(a.list().await.unwrap().is_empty());
        let _job = started(CancelScope::new().name("fresh").register_in(&registry)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.list().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the new operation was not listed within 5 s");
            cancelable_tests::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn a_finished_operation_leaves_the_list_without_waiting_for_the_heartbeat() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let a = builder(&server, "a", &registry)
            .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
            .connect()
            .await
            .unwrap();
        let job = started(CancelScope::new().name("short").register_in(&registry)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.list().await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the new operation was not listed within 5 s");
            cancelable_tests::sleep(Duration::from_millis(10)).await;
        }
        // The operation ends (dropped mid-run: it leaves the registry).
        drop(job);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let listed = a.list().await.unwrap();
            if listed.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the finished operation was still listed after 5 s (heartbeat 60 s): {listed:?}"
            );
            cancelable_tests::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn a_registry_joins_one_cluster_once() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let first = join(&server, "a", &registry).await;
        let again = builder(&server, "a2", &registry).connect().await;
        assert_eq!(again.unwrap_err(), RemoteError::AlreadyJoined);
        first.close().await;
        let _rejoined = join(&server, "a", &registry).await;
        eventually(Duration::from_secs(1), "connected", || _rejoined.is_connected()).await;
    }

    async fn a_cancel_by_bare_id_reaches_the_live_incarnation_and_list_names_it() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let b = join(&server, "b", &registry_b).await;
        let scope = CancelScope::new().name("listed").register_in(&registry_b);
        let id = scope.handle().id();
        let job = started(scope).await;
        let listed = loop {
            let list = a.list().await.unwrap();
            if let Some(op) = list.into_iter().find(|op| op.node == "b") {
                break op;
            }
            cancelable_tests::sleep(Duration::from_millis(10)).await;
        };
        // The listing names the incarnation; its target text round-trips.
        assert_eq!(listed.instance, b.instance());
        let full = listed.target();
        assert_eq!(full.to_string().parse::<Target>().unwrap(), full);
        assert!(full.to_string().starts_with(&format!("b/{id}")), "{full}");
        // The `NODE/ID` text reaches the live incarnation.
        let bare: Target = format!("b/{id}").parse().unwrap();
        let ack = a.cancel(bare, CancelReason::Manual, "by text").await.unwrap();
        assert_eq!(ack.instance, b.instance());
        assert_eq!(ack.target(), full);
        assert_eq!(job.await.unwrap_err().message(), Some("by text"));
        // A target naming another incarnation of b does not touch b.
        let other = started(CancelScope::new().register_in(&registry_b)).await;
        let other_id = registry_b.list(&Filter::new())[0].id;
        let stale = Target::id("b", other_id).in_instance("not-this-one");
        let error = a.cancel(stale, CancelReason::Manual, "").await.unwrap_err();
        assert!(matches!(error, RemoteError::NotFound { .. }), "{error}");
        drop(other);
    }

    async fn cancel_and_wait_with_an_unbounded_wait_does_not_overflow() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let job = started(CancelScope::new().register_in(&registry_b).key("forever").unwrap()).await;
        let (outcome, ack) = futures::join!(
            job,
            a.cancel_and_wait(Target::key("forever"), CancelReason::Manual, "", Duration::MAX)
        );
        assert!(outcome.is_err());
        assert!(!ack.unwrap().running);
        let missing = a.cancel_and_wait(Target::key("nobody"), CancelReason::Manual, "", Duration::MAX).await;
        assert!(matches!(missing, Err(RemoteError::NotFound { .. })), "{missing:?}");
    }
}
