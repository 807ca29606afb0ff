//! Scale: 1,000,000 concurrent scopes, each with a timeout, pending at once
//! on tokio multi-thread, all linked to one parent token; then cancel them
//! all through that token. Compared with tokio-util child tokens +
//! `tokio::time::timeout` + `tokio::select!`.
//!
//! Memory per scope is measured with a counting allocator: live heap bytes
//! per task, minus those of a task running the bare body.
//!
//! Each case runs in a process of its own (the bench runs itself again),
//! twice, in the order bare, ours, peer, peer, ours, bare: in one process
//! the cases that ran later found the allocator's free lists filled and
//! the memory already mapped by the earlier ones, which flattered them.
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

/// The variable that makes the bench process run one case and print its
/// figures (see [`main`]).
const CASE_VARIABLE: &str = "CANCELABLE_SCALE_CASE";

/// The cases, by the name a child process is given.
const CASES: [(&str, &str); 3] = [
    ("bare", "bare body (baseline)"),
    ("ours", "cancelable scope: timeout + parent token"),
    ("peer", "tokio-util child token + tokio timeout"),
];

fn main() {
    match std::env::var(CASE_VARIABLE) {
        Ok(case) => run_case(&case),
        Err(_) => compare(),
    }
}

/// Runs each case twice, each in a process of its own, and prints the
/// table: bytes per task, and the cancel-all time of each run.
fn compare() {
    let order = ["bare", "ours", "peer", "peer", "ours", "bare"];
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for case in order {
        let output = std::process::Command::new(std::env::current_exe().expect("the bench binary"))
            .env(CASE_VARIABLE, case)
            .output()
            .expect("the bench runs itself");
        assert!(
            output.status.success(),
            "the case {case} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        runs.push((case, Run::parse(&String::from_utf8_lossy(&output.stdout))));
    }
    let of = |case: &str| -> Vec<&Run> {
        runs.iter()
            .filter(|(name, _)| *name == case)
            .map(|(_, run)| run)
            .collect()
    };
    let bare_bytes = of("bare")[0].bytes_per_task;
    println!("{SCOPES} concurrent scopes with a timeout on tokio multi-thread (2 workers),");
    println!(
        "each case in its own process, run twice (order: {})",
        order.join(", ")
    );
    println!(
        "{:<44} {:>16} {:>18} {:>24}",
        "", "bytes per task", "beyond bare body", "cancel all (runs 1 / 2)"
    );
    for (case, name) in CASES {
        let case_runs = of(case);
        println!(
            "{:<44} {:>16.0} {:>18.0} {:>11.1?} / {:>10.1?}   (spawned in {:.1?} / {:.1?})",
            name,
            case_runs[0].bytes_per_task,
            case_runs[0].bytes_per_task - bare_bytes,
            case_runs[0].cancel_all,
            case_runs[1].cancel_all,
            case_runs[0].spawn,
            case_runs[1].spawn,
        );
    }
}

/// Runs the case `case` in this process and prints its figures for
/// [`Run::parse`].
fn run_case(case: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = match case {
        "bare" => bare(&runtime),
        "ours" => ours(&runtime),
        "peer" => peer(&runtime),
        other => panic!("unknown case {other}: one of bare, ours, peer"),
    };
    println!(
        "{} {} {}",
        run.bytes_per_task,
        run.spawn.as_nanos(),
        run.cancel_all.as_nanos()
    );
}

impl Run {
    /// The figures `run_case` printed.
    fn parse(line: &str) -> Run {
        let mut fields = line.split_whitespace();
        let mut next = || fields.next().expect("three figures");
        Run {
            bytes_per_task: next().parse().expect("bytes per task"),
            spawn: Duration::from_nanos(next().parse().expect("spawn time")),
            cancel_all: Duration::from_nanos(next().parse().expect("cancel-all time")),
        }
    }
}

/// Baseline: the bare body, ended through a tokio-util token so it can
/// finish.
fn bare(runtime: &tokio::runtime::Runtime) -> Run {
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    measure(
        runtime,
        |started| {
            let stop = stop.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                stop.cancelled().await;
            }
        },
        move || stopper.cancel(),
    )
}

/// A scope with a timeout and the parent token as its source.
fn ours(runtime: &tokio::runtime::Runtime) -> Run {
    let parent = CancellationToken::new();
    let canceller = parent.clone();
    measure(
        runtime,
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
    )
}

/// The peer: a tokio-util child token and `tokio::time::timeout` in
/// `select!`.
fn peer(runtime: &tokio::runtime::Runtime) -> Run {
    let peer_parent = tokio_util::sync::CancellationToken::new();
    let peer_canceller = peer_parent.clone();
    measure(
        runtime,
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
    )
}
