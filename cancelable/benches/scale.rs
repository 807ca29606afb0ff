//! Scale: 1,000,000 concurrent scopes, each with a timeout, pending at once
//! on tokio multi-thread, all linked to one parent token; then cancel them
//! all through that token. Compared with tokio-util child tokens +
//! `tokio::time::timeout` + `tokio::select!`.
//!
//! Memory per scope is measured with a counting allocator: live heap bytes
//! per task, minus those of a task running the bare body.
//!
//! `cargo bench -p cancelable --bench scale`

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cancelable::{CancelScope, CancellationToken};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SCOPES: usize = 1_000_000;
const TIMEOUT: Duration = Duration::from_secs(600);

struct Run {
    bytes_per_task: f64,
    spawn: Duration,
    cancel_all: Duration,
}

/// Spawns `SCOPES` tasks made by `make`, waits until all are pending, then
/// runs `cancel` and waits for every task to finish.
fn measure<F, Fut>(runtime: &tokio::runtime::Runtime, make: F, cancel: impl FnOnce()) -> Run
where
    F: Fn(Arc<AtomicUsize>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Arc::new(AtomicUsize::new(0));
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    let spawn_start = Instant::now();
    let handles: Vec<_> = (0..SCOPES)
        .map(|_| runtime.spawn(make(started.clone())))
        .collect();
    while started.load(Ordering::SeqCst) < SCOPES {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let every task reach its pending point.
    std::thread::sleep(Duration::from_millis(200));
    let spawn = spawn_start.elapsed();
    let handle_bytes = (handles.capacity() * std::mem::size_of_val(&handles[0])) as isize;
    let live = LIVE_BYTES.load(Ordering::SeqCst) - before - handle_bytes;
    let cancel_start = Instant::now();
    cancel();
    runtime.block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
    });
    Run {
        bytes_per_task: live as f64 / SCOPES as f64,
        spawn,
        cancel_all: cancel_start.elapsed(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Baseline: the bare body, ended through a tokio-util token so it can finish.
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    let bare = measure(
        &runtime,
        |started| {
            let stop = stop.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                stop.cancelled().await;
            }
        },
        move || stopper.cancel(),
    );

    let parent = CancellationToken::new();
    let canceller = parent.clone();
    let ours = measure(
        &runtime,
        |started| {
            let parent = parent.clone();
            async move {
                let outcome = CancelScope::new()
                    .timeout(TIMEOUT)
                    .token(&parent)
                    .run(async {
                        started.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await
                    })
                    .await;
                assert!(outcome.is_err());
            }
        },
        move || {
            canceller.cancel();
        },
    );

    let peer_parent = tokio_util::sync::CancellationToken::new();
    let peer_canceller = peer_parent.clone();
    let peer = measure(
        &runtime,
        |started| {
            let token = peer_parent.child_token();
            async move {
                let body = async {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::time::timeout(TIMEOUT, body) => {}
                }
            }
        },
        move || peer_canceller.cancel(),
    );

    println!("{SCOPES} concurrent scopes with a timeout on tokio multi-thread (2 workers)");
    println!(
        "{:<44} {:>16} {:>18} {:>16}",
        "", "bytes per task", "beyond bare body", "cancel all"
    );
    for (name, run) in [
        ("bare body (baseline)", &bare),
        ("cancelable scope: timeout + parent token", &ours),
        ("tokio-util child token + tokio timeout", &peer),
    ] {
        println!(
            "{:<44} {:>16.0} {:>18.0} {:>16.1?}   (spawned in {:.1?})",
            name,
            run.bytes_per_task,
            run.bytes_per_task - bare.bytes_per_task,
            run.cancel_all,
            run.spawn
        );
    }
}
