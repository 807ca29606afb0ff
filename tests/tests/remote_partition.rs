//! A network partition between a node and the broker, not a broker death:
//! a `remote-node` child runs in a network namespace of its own, linked to
//! this one by a veth pair (iproute2; root only), and the test cuts and
//! restores that link while it sends cancels. No cancel is lost, the cut
//! node leaves `list()` and comes back, and `cancel_and_wait` answers
//! within its bound. Only the test's own namespaces and links are touched.
//!
//! `tc netem` (delay, loss) needs the kernel's `sch_netem`, which this
//! machine's kernel lacks; the test then covers the cut only.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, Target};
use cancelable::CancelReason;
use cancelable_tests::child_output::LineChild;
use cancelable_tests::redis::{builder, RedisServer};

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|error| {
            panic!("`ip` (iproute2) is needed: apt-get install -y iproute2 ({error})")
        });
    assert!(
        status.success(),
        "ip {args:?} failed (the partition test runs as root)"
    );
}

/// A namespace with one end of a veth pair; the other end stays here.
struct Link {
    namespace: String,
    host: String,
    host_address: String,
}

impl Link {
    fn new() -> Link {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}{n}", std::process::id() % 0xffff);
        let link = Link {
            namespace: format!("cxl-{tag}"),
            host: format!("cxh{tag}"),
            host_address: format!("10.231.{}.1", (std::process::id() + n) % 250),
        };
        let peer = format!("cxp{tag}");
        let net = link.host_address.trim_end_matches(".1").to_owned();
        ip(&["netns", "add", &link.namespace]);
        ip(&[
            "link", "add", &link.host, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &link.namespace]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", link.host_address),
            "dev",
            &link.host,
        ]);
        ip(&["link", "set", &link.host, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &link.namespace, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{net}.2/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        // The namespace reaches this side once the kernel has its route
        // (a child started before then got "Network is unreachable").
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Command::new("ip")
            .args([
                "netns",
                "exec",
                &link.namespace,
                "ip",
                "route",
                "get",
                &link.host_address,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
        {
            assert!(
                Instant::now() < deadline,
                "no route to {} from {}",
                link.host_address,
                link.namespace
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        link
    }

    fn up(&self, up: bool) {
        ip(&["link", "set", &self.host, if up { "up" } else { "down" }]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}

cancelable_tests::on_every_backend! {
    async fn a_partitioned_node_loses_no_cancel_and_comes_back() {
        let link = Link::new();
        let server = RedisServer::start_also_on(&link.host_address);
        let registry = Registry::new();
        let a = builder(&server, "a", &registry)
            .answer_within(Duration::from_millis(500))
            .connect()
            .await
            .unwrap();
        let url = format!("redis://{}:{}", link.host_address, server.port());
        let node = LineChild::spawn(
            Command::new("ip")
                .args(["netns", "exec", &link.namespace, env!("CARGO_BIN_EXE_remote-node")])
                .args([url.as_str(), "w1", "3", "100", "500"]),
        );
        assert_eq!(node.line(), "ready");
        let listed = |ops: &[cancelable::remote::RemoteOperation]| ops.iter().any(|op| op.node == "w1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listed(&a.list().await.unwrap()) {
            assert!(Instant::now() < deadline, "w1 was never listed");
            cancelable_tests::sleep(Duration::from_millis(20)).await;
        }

        link.up(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(&a.list().await.unwrap()) {
            assert!(Instant::now() < deadline, "w1 stayed listed while cut off");
            cancelable_tests::sleep(Duration::from_millis(50)).await;
        }
        // Cancels while cut off: written as tombstones, answered in bound.
        for i in 0..2 {
            let started = Instant::now();
            let wait = Duration::from_millis(300);
            let sent = a.cancel_and_wait(Target::key(format!("op-{i}")), CancelReason::Manual, "cut", wait).await;
            assert!(matches!(sent, Err(RemoteError::NotFound { .. })), "{sent:?}");
            // answer_within (500 ms) + wait (300 ms), with room.
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        }

        link.up(true);
        let mut fired = Vec::new();
        while fired.len() < 2 {
            let line = node.line();
            if let Some(rest) = line.strip_prefix("fired ") {
                fired.push(rest.split(' ').next().unwrap().to_owned());
            }
        }
        fired.sort();
        assert_eq!(fired, ["0", "1"]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !listed(&a.list().await.unwrap()) {
            assert!(Instant::now() < deadline, "w1 did not come back to the list");
            cancelable_tests::sleep(Duration::from_millis(50)).await;
        }
        drop(node);
    }
}
