//! Remote cancellation between real processes on a real `redis-server`:
//! a cancel from this process stops an operation in a child process
//! (`src/bin/remote-node.rs`), and a killed node leaves the cluster's list
//! once its snapshot's TTL passes; a cancel by id never reaches the next
//! incarnation of a restarted node.

use std::process::Command;
use std::time::Duration;

use cancelable::registry::Registry;
use cancelable::remote::Target;
use cancelable::CancelReason;
use cancelable_tests::child_output::LineChild;
use cancelable_tests::redis::{join, RedisServer};

/// Starts a `remote-node` child and waits for its `ready`.
fn start(server: &RedisServer, name: &str, count: usize) -> LineChild {
    let node = spawn(server, name, count);
    assert_eq!(node.line(), "ready");
    node
}

/// Starts a `remote-node` child without waiting for its `ready`.
fn spawn(server: &RedisServer, name: &str, count: usize) -> LineChild {
    LineChild::spawn(Command::new(env!("CARGO_BIN_EXE_remote-node")).args([
        server.url(),
        name.to_owned(),
        count.to_string(),
        "100".into(),
        "500".into(),
    ]))
}

cancelable_tests::on_every_backend! {
    async fn a_cancel_reaches_another_process_and_a_killed_node_leaves_the_list() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let a = join(&server, "a", &registry).await;
        let mut child = start(&server, "child", 3);

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while a.list().await.unwrap().iter().filter(|op| op.node == "child").count() < 3 {
            assert!(std::time::Instant::now() < deadline, "the child's operations were never listed");
            cancelable_tests::sleep(Duration::from_millis(20)).await;
        }
        let ack = a.cancel(Target::key("op-1"), CancelReason::Manual, "from the parent").await.unwrap();
        assert_eq!(ack.node, "child");
        let fired = child.line();
        assert!(fired.starts_with("fired 1 ") && fired.ends_with(" cancelled manually|from the parent"), "{fired}");

        // Killed without leaving: its snapshot expires (TTL 500 ms).
        child.child.kill().unwrap();
        child.child.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while a.list().await.unwrap().iter().any(|op| op.node == "child") {
            assert!(std::time::Instant::now() < deadline, "the killed node stayed listed");
            cancelable_tests::sleep(Duration::from_millis(50)).await;
        }
        let error = a.cancel(Target::key("op-2"), CancelReason::Manual, "").await.unwrap_err();
        assert!(matches!(error, cancelable::remote::RemoteError::NotFound { nodes: 1, .. }), "{error:?}");
    }

    async fn a_cancel_by_id_never_hits_the_next_incarnation_of_a_restarted_node() {
        let server = RedisServer::start();
        let registry = Registry::new();
        let a = join(&server, "a", &registry).await;
        let first = start(&server, "w1", 3);
        let id = loop {
            let listed = a.list().await.unwrap();
            if let Some(op) = listed.iter().find(|op| op.node == "w1" && op.key.as_deref() == Some("op-1")) {
                break op.id;
            }
            cancelable_tests::sleep(Duration::from_millis(20)).await;
        };
        a.cancel(Target::id("w1", id), CancelReason::Manual, "old job").await.unwrap();
        assert!(first.line().starts_with("fired 1 "));
        // SIGKILL, and a new process under the same name: its ids start
        // again at 1, so its `op-1` has the id the cancel named.
        drop(first);
        // Its name's lease expires with its snapshot (TTL 500 ms).
        while a.list().await.unwrap().iter().any(|op| op.node == "w1") {
            cancelable_tests::sleep(Duration::from_millis(50)).await;
        }
        cancelable_tests::sleep(Duration::from_millis(100)).await;
        let second = spawn(&server, "w1", 3);
        let lines = second.lines_within(Duration::from_secs(2));
        assert_eq!(lines, ["ready"], "the new incarnation was hit by the old incarnation's cancel");
    }
}
