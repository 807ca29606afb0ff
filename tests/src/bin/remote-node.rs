//! A second process for the remote-cancellation tests: joins the cluster
//! at URL as node NODE and runs COUNT registered operations with keys
//! `op-0` .. `op-{COUNT-1}` until they are cancelled.
//!
//! Usage: `remote-node URL NODE COUNT [HEARTBEAT_MS NODE_TTL_MS]`
//!
//! Prints `ready` once every operation runs, then for each cancelled one
//! `fired I UNIX_NANOS REASON|MESSAGE` as its scope ends, and `done` at the
//! end. The wall clock is shared by the processes of one machine, so the
//! parent subtracts its own send time.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cancelable::registry::Registry;
use cancelable::remote::RemoteRegistry;
use cancelable::CancelScope;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: remote-node URL NODE COUNT [HEARTBEAT_MS NODE_TTL_MS]");
        std::process::exit(2);
    }
    let count: usize = args[3].parse().expect("COUNT is a number");
    let heartbeat = args.get(4).map_or(Duration::from_millis(200), |ms| {
        Duration::from_millis(ms.parse().expect("HEARTBEAT_MS is a number"))
    });
    let ttl = args.get(5).map_or(Duration::from_secs(2), |ms| {
        Duration::from_millis(ms.parse().expect("NODE_TTL_MS is a number"))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let registry = Registry::new();
        let remote = RemoteRegistry::builder(args[1].as_str(), args[2].as_str())
            .registry(&registry)
            .heartbeat(heartbeat, ttl)
            .connect()
            .await
            .unwrap_or_else(|error| {
                eprintln!("remote-node: {error}");
                std::process::exit(1)
            });
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let scope = CancelScope::new()
                .name("remote-node-op")
                .metadata("index", i.to_string())
                .register_in(&registry)
                .key(format!("op-{i}"))
                .expect("a free key");
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let outcome = scope.run(std::future::pending::<()>()).await;
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("after 1970")
                    .as_nanos();
                if let Err(cancelled) = outcome {
                    let mut out = out.lock().unwrap();
                    let _ = writeln!(
                        out,
                        "fired {i} {nanos} {}|{}",
                        cancelled.reason(),
                        cancelled.message().unwrap_or("")
                    );
                    let _ = out.flush();
                }
            }));
        }
        while registry.live_count() < count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        {
            let mut out = out.lock().unwrap();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        for task in tasks {
            let _ = task.await;
        }
        // Leave before exiting: the answers to the last cancels go out first.
        remote.close().await;
        let mut out = out.lock().unwrap();
        let _ = writeln!(out, "done");
        let _ = out.flush();
    });
}
