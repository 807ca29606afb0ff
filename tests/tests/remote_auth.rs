//! The trust model of cluster messages, on a real `redis-server`: without
//! a signing key, whoever may `PUBLISH` and write the cluster's keys can
//! cancel anything and forge answers (Redis ACLs are the boundary); with a
//! key (HMAC-SHA256), forged or unsigned cancels, acks and tombstones are
//! ignored and counted, and signed traffic works as before.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::time::Duration;

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, RemoteRegistry, Target};
use cancelable::{CancelReason, CancelScope, Cancelled};
use cancelable_tests::redis::{builder, RedisServer};

type Job = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

const KEY: &[u8] = b"a shared secret of the cluster";

async fn started(scope: CancelScope) -> Job {
    let mut job: Job = Box::pin(scope.run(std::future::pending::<()>()));
    assert!(futures::poll!(job.as_mut()).is_pending());
    job
}

async fn node(
    server: &RedisServer,
    name: &str,
    registry: &Registry,
    key: Option<&[u8]>,
) -> RemoteRegistry {
    let mut settings = builder(server, name, registry).answer_within(Duration::from_millis(500));
    if let Some(key) = key {
        settings = settings.signing_key(key);
    }
    settings.connect().await.unwrap()
}

/// An unsigned cancel of `key`, as anyone who may `PUBLISH` can send it.
fn forged_cancel(key: &str) -> String {
    serde_json::json!({
        "type": "cancel", "v": 2, "request": "forged-1", "reply_to": "cancelable:v2:replies:x:y",
        "target": {"by": "key", "key": key}, "reason": {"kind": "manual"},
        "message": "forged", "ttl_ms": 60_000
    })
    .to_string()
}

/// A connection subscribed to the requests channel (as anyone who may
/// `SUBSCRIBE` can), its confirmation read.
fn subscribe_to_requests(server: &RedisServer) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let channel = "cancelable:v2:requests";
    write!(
        stream,
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
        channel.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    // The subscription's confirmation: six lines.
    let mut line = String::new();
    for _ in 0..6 {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    reader
}

/// Listens on the requests channel (as anyone who may `SUBSCRIBE` can) and
/// answers the first request with a forged ack from node "ghost".
fn forge_acks(server: &RedisServer) -> std::thread::JoinHandle<()> {
    let port = server.port();
    let mut reader = subscribe_to_requests(server);
    let mut line = String::new();
    std::thread::spawn(move || loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // A signed request shows its id in clear after `s:MAC:`.
        let json = line
            .trim()
            .find('{')
            .map_or("", |start| &line.trim()[start..]);
        let Ok(request) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let ack = serde_json::json!({
            "type": "ack", "v": 2, "request": request["request"], "node": "ghost",
            "found": [{"id": 1, "cancelled_now": true, "running": false}]
        })
        .to_string();
        let reply_to = request["reply_to"].as_str().unwrap().to_owned();
        let mut publish = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            publish,
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{reply_to}\r\n${}\r\n{ack}\r\n",
            reply_to.len(),
            ack.len()
        )
        .unwrap();
        let _ = BufReader::new(publish).read_line(&mut String::new());
        return;
    })
}

/// Listens on the requests channel (as anyone who may `SUBSCRIBE` can) and
/// hands over the first payload published there, byte for byte.
fn record_first_request(server: &RedisServer) -> std::sync::mpsc::Receiver<String> {
    let mut reader = subscribe_to_requests(server);
    let mut line = String::new();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line.starts_with("s:") || line.starts_with('{') {
            let _ = sender.send(line.trim_end().to_owned());
            return;
        }
    });
    receiver
}

cancelable_tests::on_every_backend! {
    async fn without_a_key_anyone_who_may_publish_cancels_and_forges_acks() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = node(&server, "a", &registry_a, None).await;
        let _b = node(&server, "b", &registry_b, None).await;
        let job = started(CancelScope::new().register_in(&registry_b).key("open").unwrap()).await;
        server.integer(&["PUBLISH", "cancelable:v2:requests", &forged_cancel("open")]);
        assert_eq!(job.await.unwrap_err().message(), Some("forged"));
        let forger = forge_acks(&server);
        let ack = a.cancel(Target::key("nobody-runs-this"), CancelReason::Manual, "").await.unwrap();
        assert_eq!(ack.node, "ghost");
        forger.join().unwrap();
    }

    async fn with_a_key_a_forged_cancel_is_ignored_and_counted() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = node(&server, "a", &registry_a, Some(KEY)).await;
        let b = node(&server, "b", &registry_b, Some(KEY)).await;
        let mut job = started(CancelScope::new().register_in(&registry_b).key("guarded").unwrap()).await;
        server.integer(&["PUBLISH", "cancelable:v2:requests", &forged_cancel("guarded")]);
        let signed_elsewhere = format!("s:{}:{}", "0".repeat(64), forged_cancel("guarded"));
        server.integer(&["PUBLISH", "cancelable:v2:requests", &signed_elsewhere]);
        cancelable_tests::sleep(Duration::from_millis(300)).await;
        assert!(futures::poll!(job.as_mut()).is_pending(), "a forged cancel was obeyed");
        assert!(b.rejected_messages() >= 2, "{}", b.rejected_messages());
        // Signed cancels work as before.
        let ack = a.cancel(Target::key("guarded"), CancelReason::Manual, "signed").await.unwrap();
        assert_eq!(ack.node, "b");
        assert_eq!(job.await.unwrap_err().message(), Some("signed"));
    }

    async fn with_a_key_a_replayed_cancel_is_ignored_and_counted() {
        // A signed cancel recorded off the broker, sent again once its
        // tombstone is gone, while a new operation runs under the key.
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = builder(&server, "a", &registry_a)
            .answer_within(Duration::from_millis(500))
            .signing_key(KEY)
            .tombstone_ttl(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        let b = node(&server, "b", &registry_b, Some(KEY)).await;
        let recorded = record_first_request(&server);
        let first = started(CancelScope::new().register_in(&registry_b).key("replayed").unwrap()).await;
        a.cancel(Target::key("replayed"), CancelReason::Manual, "once").await.unwrap();
        assert_eq!(first.await.unwrap_err().message(), Some("once"));
        let payload = recorded.recv_timeout(Duration::from_secs(5)).expect("the request was seen");
        // The tombstone's 200 ms pass: a new operation under the key runs.
        cancelable_tests::sleep(Duration::from_millis(500)).await;
        let mut second = started(CancelScope::new().register_in(&registry_b).key("replayed").unwrap()).await;
        let rejected = b.rejected_messages();
        server.integer(&["PUBLISH", "cancelable:v2:requests", &payload]);
        cancelable_tests::sleep(Duration::from_millis(300)).await;
        assert!(futures::poll!(second.as_mut()).is_pending(), "a replayed cancel was obeyed");
        assert_eq!(b.rejected_messages(), rejected + 1);
    }

    async fn with_a_key_a_tombstone_put_back_after_its_ttl_is_ignored() {
        let server = RedisServer::start();
        let registry_a = Registry::new();
        let a = builder(&server, "a", &registry_a)
            .answer_within(Duration::from_millis(300))
            .signing_key(KEY)
            .tombstone_ttl(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        let answer = a.cancel(Target::key("revived"), CancelReason::Manual, "early").await;
        assert!(matches!(answer, Err(RemoteError::NotFound { .. })), "{answer:?}");
        let member = r#"{"by":"key","key":"revived"}"#;
        let body = server.command(&["HGET", "cancelable:v2:tombstone-bodies", member]).unwrap();
        assert!(body.starts_with("s:"), "a signed tombstone body: {body}");
        cancelable_tests::sleep(Duration::from_millis(400)).await;
        // Put back, with a score that never expires.
        server.integer(&["ZADD", "cancelable:v2:tombstones", "+inf", member]);
        server.integer(&["HSET", "cancelable:v2:tombstone-bodies", member, &body]);
        let registry_c = Registry::new();
        let c = node(&server, "c", &registry_c, Some(KEY)).await;
        let mut job = started(CancelScope::new().register_in(&registry_c).key("revived").unwrap()).await;
        cancelable_tests::sleep(Duration::from_millis(100)).await;
        assert!(futures::poll!(job.as_mut()).is_pending(), "a tombstone put back after its TTL was obeyed");
        drop(c);
    }

    async fn with_a_key_a_forged_ack_is_ignored() {
        let server = RedisServer::start();
        let registry_a = Registry::new();
        let a = node(&server, "a", &registry_a, Some(KEY)).await;
        let forger = forge_acks(&server);
        let answer = a.cancel(Target::key("nobody-runs-this"), CancelReason::Manual, "").await;
        assert!(matches!(answer, Err(RemoteError::NotFound { .. })), "{answer:?}");
        forger.join().unwrap();
        assert!(a.rejected_messages() >= 1);
    }

    async fn with_a_key_a_forged_tombstone_is_ignored() {
        let server = RedisServer::start();
        let registry_c = Registry::new();
        let member = r#"{"by":"key","key":"planted"}"#;
        let body = r#"{"v":2,"target":{"by":"key","key":"planted"},"reason":{"kind":"manual"},"message":"forged","ttl_ms":60000}"#;
        server.integer(&["ZADD", "cancelable:v2:tombstones", "+inf", member]);
        server.integer(&["HSET", "cancelable:v2:tombstone-bodies", member, body]);
        let c = node(&server, "c", &registry_c, Some(KEY)).await;
        let mut job = started(CancelScope::new().register_in(&registry_c).key("planted").unwrap()).await;
        cancelable_tests::sleep(Duration::from_millis(100)).await;
        assert!(futures::poll!(job.as_mut()).is_pending(), "a forged tombstone was obeyed");
        assert!(c.rejected_messages() >= 1);
    }

    async fn with_a_key_list_shows_only_signed_snapshots() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = node(&server, "a", &registry_a, Some(KEY)).await;
        let _b = node(&server, "b", &registry_b, Some(KEY)).await;
        let _job = started(CancelScope::new().name("real").register_in(&registry_b)).await;
        let forged = r#"{"v":2,"node":"fake","published_ms":0,"operations":[{"node":"fake","id":1,"status":"running","elapsed_ms":0}]}"#;
        server.command(&["SET", "cancelable:v2:node:fake", forged, "PX", "60000"]).unwrap();
        server.integer(&["ZADD", "cancelable:v2:nodes", "+inf", "fake"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let nodes: Vec<String> = a.nodes().await.unwrap().into_iter().map(|n| n.node).collect();
            assert!(!nodes.contains(&"fake".to_owned()), "a forged snapshot was listed");
            if nodes == ["a", "b"] {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{nodes:?}");
            cancelable_tests::sleep(Duration::from_millis(20)).await;
        }
    }
}
