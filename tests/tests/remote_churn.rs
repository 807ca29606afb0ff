//! The traffic a node pushes into the broker under churn, measured on a
//! real `redis-server` (`INFO stats`, `total_net_input_bytes`): 5,000 live
//! operations, about 445 joins (and as many exits) a second, for 4 s.
//! The figure of the note comes from
//! `cargo test --release -p cancelable-tests --test remote_churn -- --nocapture`.
//!
//! Bound: at most 1 MB/s (generous here: 2 MB/s), and `list()` at most
//! about 1 s stale (generous here: a new operation listed within 3 s).

use std::time::{Duration, Instant};

use cancelable::registry::Registry;
use cancelable::CancelScope;
use cancelable_tests::redis::{join, RedisServer};

fn input_bytes(server: &RedisServer) -> u64 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 8192];
    while !text.contains("total_net_output_bytes") {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0);
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    text.lines()
        .find_map(|line| line.strip_prefix("total_net_input_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_net_input_bytes")
}

#[test]
fn churn_traffic_into_the_broker_is_bounded_and_the_list_stays_fresh() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = RedisServer::start();
        let (registry, registry_b) = (Registry::new(), Registry::new());
        let node = cancelable::remote::RemoteRegistry::builder(server.url(), "churn")
            .registry(&registry)
            .connect()
            .await
            .unwrap();
        let observer = join(&server, "observer", &registry_b).await;
        let start = |i: usize| {
            let scope = CancelScope::new()
                .name("churn")
                .metadata("job", i.to_string())
                .register_in(&registry)
                .key(format!("churn-job-{i:06}"))
                .unwrap();
            tokio::spawn(scope.run(std::future::pending::<()>()))
        };
        let mut live: std::collections::VecDeque<_> = (0..5_000).map(start).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = input_bytes(&server);
        let began = Instant::now();
        let mut next = 5_000;
        let mut marker_seen = None;
        while began.elapsed() < Duration::from_secs(4) {
            // ~445 joins a second: 4 every 9 ms.
            for _ in 0..4 {
                live.pop_front().unwrap().abort();
                live.push_back(start(next));
                next += 1;
            }
            tokio::time::sleep(Duration::from_millis(9)).await;
        }
        let elapsed = began.elapsed();
        let bytes = input_bytes(&server) - before;
        let rate = bytes as f64 / elapsed.as_secs_f64();
        let joins = (next - 5_000) as f64 / elapsed.as_secs_f64();
        // Freshness: a new operation shows in another node's list.
        let marker = CancelScope::new().name("marker").register_in(&registry);
        let _marker = tokio::spawn(marker.run(std::future::pending::<()>()));
        let shown = Instant::now();
        while marker_seen.is_none() {
            if observer
                .list()
                .await
                .unwrap()
                .iter()
                .any(|op| op.name.as_deref() == Some("marker"))
            {
                marker_seen = Some(shown.elapsed());
            }
            assert!(
                shown.elapsed() < Duration::from_secs(3),
                "list() more than 3 s stale"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "churn: {joins:.0} joins/s over {elapsed:.1?}: {bytes} bytes into Redis = {:.2} MB/s; \
             a new operation listed after {:?}",
            rate / 1e6,
            marker_seen.unwrap()
        );
        assert!(
            rate < 2e6,
            "{:.2} MB/s into the broker under churn",
            rate / 1e6
        );
        drop(node);
    });
}
