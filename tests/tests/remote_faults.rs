//! Remote cancellation when things go wrong, on a real `redis-server`:
//! broker unreachable at start, broker lost while running, cancels sent
//! while a node is disconnected and the broker restarts (none lost), and
//! malformed messages on the channel.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, RemoteRegistry, Target};
use cancelable::{CancelReason, CancelScope, Cancelled};
use cancelable_tests::redis::{builder, eventually, join, RedisServer};

type Job = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

async fn started(scope: CancelScope) -> Job {
    let mut job: Job = Box::pin(scope.run(std::future::pending::<()>()));
    assert!(futures::poll!(job.as_mut()).is_pending());
    job
}

/// Sends a cancel, retrying while the sender has no broker; `Ok` whether
/// or not a node runs the target now (the tombstone is written).
async fn send(node: &RemoteRegistry, target: Target, message: String) {
    for _ in 0..1_000 {
        match node
            .cancel(target.clone(), CancelReason::Manual, message.clone())
            .await
        {
            Ok(_) | Err(RemoteError::NotFound { .. }) => return,
            Err(_) => cancelable_tests::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("could not send the cancel of {target} in 10 s");
}

/// Without a `redis-server` the remote tests fail, saying how to install
/// it; they never pass silently.
#[test]
fn a_missing_redis_server_fails_with_how_to_install_it() {
    let empty = std::env::temp_dir().join("cancelable-no-redis-here");
    let _ = std::fs::create_dir_all(&empty);
    let error =
        cancelable_tests::redis::find_redis_server(None, Some(empty.clone().into()), &[&empty])
            .unwrap_err();
    assert!(
        error.contains("apt-get update && apt-get install -y redis-server"),
        "{error}"
    );
    let error =
        cancelable_tests::redis::find_redis_server(Some(empty.join("nope").into()), None, &[])
            .unwrap_err();
    assert!(error.contains("apt-get install -y redis-server"), "{error}");
    let found =
        cancelable_tests::redis::find_redis_server(None, None, &[std::path::Path::new("/usr/bin")]);
    assert!(found.is_ok() || !std::path::Path::new("/usr/bin/redis-server").exists());
}

cancelable_tests::on_every_backend! {
    async fn a_broker_unreachable_at_start_is_a_clear_error() {
        let mut server = RedisServer::start();
        server.stop();
        let registry = Registry::new();
        let error = builder(&server, "a", &registry)
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(&error, RemoteError::Connect { url, .. } if *url == server.url()), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("could not reach the Redis broker") && text.contains("redis-server"), "{text}");
        // The registry did not join: it can join once a broker runs.
        server.restart();
        let _a = join(&server, "a", &registry).await;
    }

    async fn a_bad_url_or_node_name_is_a_clear_error() {
        let registry = Registry::new();
        let error = RemoteRegistry::builder("http://nope", "a").registry(&registry).connect().await.unwrap_err();
        assert!(matches!(error, RemoteError::BadUrl { .. }), "{error:?}");
        let error = RemoteRegistry::builder("redis://127.0.0.1:1", "").registry(&registry).connect().await.unwrap_err();
        assert_eq!(error, RemoteError::EmptyNodeName);
    }

    async fn local_cancellation_keeps_working_while_the_broker_is_down() {
        let mut server = RedisServer::start();
        let registry = Registry::new();
        let a = join(&server, "a", &registry).await;
        server.stop();
        eventually(Duration::from_secs(10), "the node notices the lost broker", || !a.is_connected()).await;

        let job = started(CancelScope::new().register_in(&registry).key("local").unwrap()).await;
        assert!(registry.cancel_by_key("local", CancelReason::Manual, "by hand").unwrap().is_requested());
        assert_eq!(job.await.unwrap_err().message(), Some("by hand"));
        let remote = a.cancel(Target::key("x"), CancelReason::Manual, "").await.unwrap_err();
        assert!(matches!(remote, RemoteError::Unavailable { .. }), "{remote:?}");
        assert!(remote.to_string().contains("local"), "{remote}");

        server.restart();
        eventually(Duration::from_secs(10), "the node reconnects", || a.is_connected()).await;
        assert!(a.reconnects() >= 1);
        let job = started(CancelScope::new().register_in(&registry).key("after").unwrap()).await;
        a.cancel(Target::key("after"), CancelReason::Manual, "remote again").await.unwrap();
        assert_eq!(job.await.unwrap_err().message(), Some("remote again"));
    }

    async fn a_broker_that_stops_answering_counts_as_lost_and_the_node_reconnects() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let a = builder(&server, "a", &registry)
            .answer_within(std::time::Duration::from_millis(500))
            .connect()
            .await
            .unwrap();
        server.freeze(true);
        eventually(Duration::from_secs(10), "the node gives up on the frozen broker", || !a.is_connected()).await;
        server.freeze(false);
        eventually(Duration::from_secs(10), "the node reconnects", || a.is_connected()).await;
        let job = started(CancelScope::new().register_in(&registry).key("thawed").unwrap()).await;
        a.cancel(Target::key("thawed"), CancelReason::Manual, "after the thaw").await.unwrap();
        assert_eq!(job.await.unwrap_err().message(), Some("after the thaw"));
    }

    async fn no_cancel_is_lost_while_a_node_is_away_and_the_broker_restarts() {
        const SENT: usize = 1_000;
        let mut server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        // Node b waits 10 s before each reconnection: it is away while a sends.
        let b = builder(&server, "b", &registry_b)
            .backoff(Duration::from_secs(10), Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let mut jobs = Vec::with_capacity(SENT);
        for i in 0..SENT {
            jobs.push(started(CancelScope::new().register_in(&registry_b).key(format!("k-{i}")).unwrap()).await);
        }

        server.stop();
        eventually(Duration::from_secs(10), "b notices the lost broker", || !b.is_connected()).await;
        server.restart();
        for i in 0..SENT / 2 {
            send(&a, Target::key(format!("k-{i}")), format!("cancel {i}")).await;
        }
        assert!(!b.is_connected(), "b reconnected before the test sent its cancels");
        // The broker restarts again, empty: a writes back what it sent.
        server.stop();
        server.restart();
        for i in SENT / 2..SENT {
            send(&a, Target::key(format!("k-{i}")), format!("cancel {i}")).await;
        }

        eventually(Duration::from_secs(30), "b reconnects", || b.is_connected()).await;
        let mut lost = Vec::new();
        for (i, mut job) in jobs.into_iter().enumerate() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let outcome = loop {
                if let std::task::Poll::Ready(outcome) = futures::poll!(job.as_mut()) {
                    break Some(outcome);
                }
                if std::time::Instant::now() > deadline {
                    break None;
                }
                cancelable_tests::sleep(Duration::from_millis(1)).await;
            };
            match outcome {
                Some(Err(cancelled)) => {
                    assert_eq!(cancelled.reason(), &CancelReason::Manual);
                    assert_eq!(cancelled.message(), Some(format!("cancel {i}").as_str()));
                }
                _ => lost.push(i),
            }
        }
        assert!(lost.is_empty(), "{} of {SENT} cancels lost: {lost:?}", lost.len());
    }

    async fn malformed_messages_on_the_channel_are_ignored() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        let _b = join(&server, "b", &registry_b).await;
        let job = started(CancelScope::new().register_in(&registry_b).key("still-here").unwrap()).await;
        let garbage = [
            "",
            "{",
            "null",
            "[1,2,3]",
            "{\"v\":2}",
            "{\"v\":2,\"type\":\"cancel\"}",
            "{\"v\":2,\"type\":\"cancel\",\"target\":{\"by\":\"key\",\"key\":\"still-here\"}}",
            "{\"v\":2,\"type\":\"cancel\",\"request\":\"r\",\"reply_to\":\"x\",\"target\":{\"by\":\"key\",\"key\":\"still-here\"},\"reason\":{\"kind\":\"signal\",\"signal\":\"SIGNOPE\"},\"expires_ms\":1}",
            "{\"v\":2,\"type\":\"ack\",\"request\":7}",
            "\u{0}\u{1}\u{fffd}",
        ];
        for payload in garbage {
            assert_eq!(server.integer(&["PUBLISH", "cancelable:v2:requests", payload]), 2);
        }
        let huge = "x".repeat(5 << 20);
        server.integer(&["PUBLISH", "cancelable:v2:requests", &huge]);
        server.integer(&["ZADD", "cancelable:v2:tombstones", "99999999999999", "{not json"]);

        let ack = a.cancel(Target::key("still-here"), CancelReason::Manual, "real one").await.unwrap();
        assert_eq!(ack.node, "b");
        assert_eq!(job.await.unwrap_err().message(), Some("real one"));
        // A node joining reads past the malformed tombstone.
        let registry_c = Registry::new();
        let _c = join(&server, "c", &registry_c).await;
    }
}
