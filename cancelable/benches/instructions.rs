//! The hot paths as plain loops, for instruction counting under
//! `valgrind --tool=callgrind` (see `scripts/instructions`, which runs
//! this binary and compares with `benches/instructions.baseline`).
//!
//! `instructions <hot path> <iterations>` sets the hot path up, runs it
//! `iterations` times and exits. The script runs each hot path with N and
//! 2N iterations and divides the difference by N, so that the setup
//! (runtime, thread-locals, the first shard, the first allocations)
//! cancels out without client requests in the code. Without arguments
//! (as `cargo bench` runs it) every hot path runs a few iterations, as a
//! smoke test.

use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

use cancelable::group::TaskGroup;
use cancelable::{checkpoint, CancelScope, CancellationToken, Cancelled};
use futures::stream::{FuturesUnordered, StreamExt};

#[path = "common/mod.rs"]
mod common;
use common::pend_once;

const FIVE_SECONDS: Duration = Duration::from_secs(5);

/// A hot path: its name in the baseline, and the loop running it.
struct HotPath {
    name: &'static str,
    run: fn(u64),
}

const HOT_PATHS: &[HotPath] = &[
    HotPath {
        name: "bare_body/async-io",
        run: |n| block_on(repeat(n, pend_once)),
    },
    HotPath {
        name: "scope_no_source/async-io",
        run: |n| block_on(repeat(n, scope_no_source)),
    },
    HotPath {
        name: "scope_timeout/async-io",
        run: |n| block_on(repeat(n, scope_timeout)),
    },
    HotPath {
        name: "bare_body/tokio-current-thread",
        run: |n| tokio_current_thread(repeat(n, pend_once)),
    },
    HotPath {
        name: "scope_no_source/tokio-current-thread",
        run: |n| tokio_current_thread(repeat(n, scope_no_source)),
    },
    HotPath {
        name: "scope_timeout/tokio-current-thread",
        run: |n| tokio_current_thread(repeat(n, scope_timeout)),
    },
    // A scope started inside another: linked to its parent, which is
    // cancelled with it and lends it its backend.
    HotPath {
        name: "scope_nested/async-io",
        run: |n| block_on(CancelScope::new().run(repeat(n, scope_no_source))).unwrap(),
    },
    HotPath {
        name: "scope_nested/tokio-current-thread",
        run: |n| tokio_current_thread(CancelScope::new().run(repeat(n, scope_no_source))).unwrap(),
    },
    HotPath {
        name: "scope_timeout/tokio-task",
        run: |n| tokio_current_thread(spawned(repeat(n, scope_timeout))),
    },
    // The hand-written peers, for the ratio: measured, never gated.
    HotPath {
        name: "peer/select_async_io_timer/async-io",
        run: |n| {
            block_on(repeat(n, || async {
                let body = Box::pin(pend_once());
                match futures::future::select(body, async_io::Timer::after(FIVE_SECONDS)).await {
                    futures::future::Either::Left((output, _)) => output,
                    futures::future::Either::Right(_) => unreachable!("5 s passed"),
                }
            }))
        },
    },
    HotPath {
        name: "peer/tokio_timeout/tokio-current-thread",
        run: |n| {
            tokio_current_thread(repeat(n, || async {
                tokio::time::timeout(FIVE_SECONDS, pend_once())
                    .await
                    .unwrap()
            }))
        },
    },
    HotPath {
        name: "checkpoint/scope_with_deadline",
        run: |n| {
            block_on(async move {
                CancelScope::new()
                    .timeout(Duration::from_secs(3600))
                    .run(async move {
                        for _ in 0..n {
                            black_box(checkpoint().await).unwrap();
                        }
                    })
                    .await
                    .unwrap()
            })
        },
    },
    HotPath {
        name: "checkpoint/outside_scope",
        run: |n| {
            block_on(async move {
                for _ in 0..n {
                    black_box(checkpoint().await).unwrap();
                }
            })
        },
    },
    HotPath {
        name: "token/new_cancel_drop",
        run: |n| {
            for _ in 0..n {
                let token = black_box(CancellationToken::new());
                black_box(token.cancel());
            }
        },
    },
    HotPath {
        name: "token/cancel_with_child_and_waiter",
        run: |n| {
            for _ in 0..n {
                let token = black_box(CancellationToken::new());
                let child = token.child();
                let mut waiter = Box::pin(child.cancelled());
                let waker = futures::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                assert!(waiter.as_mut().poll(&mut cx).is_pending());
                black_box(token.cancel());
                assert!(waiter.as_mut().poll(&mut cx).is_ready());
            }
        },
    },
    HotPath {
        name: "token/child_create_drop",
        run: |n| {
            let parent = CancellationToken::new();
            for _ in 0..n {
                drop(black_box(parent.child()));
            }
        },
    },
    // What the latency bench measures, as instructions: a scope linked to
    // a token source pends, the token is cancelled, the scope returns.
    HotPath {
        name: "cancel/scope_with_token_source",
        run: |n| {
            for _ in 0..n {
                let token = CancellationToken::new();
                let run = CancelScope::new()
                    .token(&token)
                    .run(std::future::pending::<()>());
                cancel_while_pending(
                    run,
                    || {
                        black_box(token.cancel());
                    },
                    |outcome| assert!(outcome.is_err()),
                );
            }
        },
    },
    HotPath {
        name: "peer/cancel_tokio_util_select",
        run: |n| {
            for _ in 0..n {
                let token = tokio_util::sync::CancellationToken::new();
                let wait = async {
                    let mut cancelled = std::pin::pin!(token.cancelled());
                    let mut body = std::pin::pin!(std::future::pending::<()>());
                    std::future::poll_fn(|cx| {
                        if cancelled.as_mut().poll(cx).is_ready() {
                            return std::task::Poll::Ready(Err(()));
                        }
                        body.as_mut().poll(cx).map(Ok)
                    })
                    .await
                };
                cancel_while_pending(wait, || token.cancel(), |outcome| assert!(outcome.is_err()));
            }
        },
    },
    HotPath {
        name: "registry/registered_scope",
        run: |n| {
            let registry = cancelable::registry::Registry::new();
            block_on(repeat(n, move || {
                let scope = CancelScope::new().name("op").register_in(&registry);
                async move { scope.run(pend_once()).await.unwrap() }
            }))
        },
    },
    // A request through `http::RequestScopeLayer` (feature `tower`, which
    // `scripts/instructions` builds with) to a handler that answers at
    // once: unregistered, and registered in a registry (its history full,
    // as on a server that has run a while). The peer is the same handler
    // without the layer.
    HotPath {
        name: "http/request_layer",
        run: |n| request_layer(n, Layered::Unregistered),
    },
    HotPath {
        name: "http/request_layer_registered",
        run: |n| request_layer(n, Layered::Registered),
    },
    HotPath {
        name: "peer/http_handler_alone",
        run: |n| request_layer(n, Layered::Not),
    },
    // Task groups, per child: groups of `GROUP_BATCH` children, the
    // group's own cost shared among them.
    HotPath {
        name: "group/start_soon_child/async-io",
        run: |n| block_on(in_batches(n, group_start_soon)),
    },
    HotPath {
        name: "group/cancel_pending_child/async-io",
        run: |n| block_on(in_batches(n, group_cancel_pending)),
    },
    HotPath {
        name: "group/spawn_child/tokio-current-thread",
        run: |n| tokio_current_thread(spawned(in_batches(n, group_spawn))),
    },
    // Opening and leaving an empty group: the group's own cost, its exit's
    // schedule point included.
    HotPath {
        name: "group/empty/async-io",
        run: |n| {
            block_on(repeat(n, || {
                TaskGroup::new().run(|_group| async { Ok::<_, Cancelled>(()) })
            }))
        },
    },
    HotPath {
        name: "peer/futures_unordered_push/async-io",
        run: |n| {
            block_on(in_batches(n, |batch| async move {
                let mut set = FuturesUnordered::new();
                for _ in 0..batch {
                    set.push(async {
                        pend_once().await;
                        Ok::<_, Cancelled>(())
                    });
                }
                while let Some(output) = set.next().await {
                    black_box(output).unwrap();
                }
            }))
        },
    },
    HotPath {
        name: "peer/futures_unordered_token_cancel/async-io",
        run: |n| {
            block_on(in_batches(n, |batch| async move {
                let token = tokio_util::sync::CancellationToken::new();
                let mut set = FuturesUnordered::new();
                for _ in 0..batch {
                    set.push(token.clone().cancelled_owned());
                }
                assert!(futures::poll!(set.next()).is_pending());
                token.cancel();
                while let Some(output) = set.next().await {
                    black_box(output);
                }
            }))
        },
    },
    HotPath {
        name: "peer/join_set_spawn/tokio-current-thread",
        run: |n| {
            tokio_current_thread(spawned(in_batches(n, |batch| async move {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..batch {
                    set.spawn(async {
                        pend_once().await;
                        Ok::<_, Cancelled>(())
                    });
                }
                while let Some(output) = set.join_next().await {
                    black_box(output).unwrap().unwrap();
                }
            })))
        },
    },
    // A ~20 µs body with three awaits (the overhead bench's realistic body,
    // as a fixed amount of work so that it counts the same in every run),
    // bare and in a scope with a 5 s timeout: the scope must add < 1 %.
    HotPath {
        name: "body_20us/bare/async-io",
        run: |n| block_on(repeat(n, body_20us)),
    },
    HotPath {
        name: "body_20us/scope_timeout/async-io",
        run: |n| block_on(repeat(n, || in_timeout_scope(body_20us()))),
    },
    HotPath {
        name: "body_20us/bare/tokio-current-thread",
        run: |n| tokio_current_thread(repeat(n, body_20us)),
    },
    HotPath {
        name: "body_20us/scope_timeout/tokio-current-thread",
        run: |n| tokio_current_thread(repeat(n, || in_timeout_scope(body_20us()))),
    },
    // Many scopes pending at once, each a task with a 5 s timeout linked to
    // one parent token, all cancelled through it (the scale bench, counted):
    // per scope, its whole life. `scripts/instructions` also takes the
    // peak of live heap bytes (valgrind's DHAT) of these paths: bytes per
    // pending scope. The bare body awaits a shared stop token, as in the
    // scale bench.
    HotPath {
        name: "pending/bare/tokio-current-thread",
        run: |n| pending_tasks(n, Pending::Bare),
    },
    HotPath {
        name: "pending/scope/tokio-current-thread",
        run: |n| pending_tasks(n, Pending::Scope),
    },
    HotPath {
        name: "peer/pending/child_token_timeout/tokio-current-thread",
        run: |n| pending_tasks(n, Pending::Peer),
    },
];

/// Children per group in the group hot paths: small enough that the
/// allocator's state repeats from one group to the next, so the count per
/// child does not depend on the iteration count.
const GROUP_BATCH: u64 = 100;

/// Runs `op(batch).await` for batches of `GROUP_BATCH` making up `n`.
async fn in_batches<F, Fut>(n: u64, op: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut left = n;
    while left > 0 {
        let batch = left.min(GROUP_BATCH);
        left -= batch;
        op(batch).await;
    }
}

/// A group whose body starts `n` children that pend once and finish.
async fn group_start_soon(n: u64) {
    TaskGroup::new()
        .run(|group| async move {
            for _ in 0..n {
                group.start_soon(async {
                    pend_once().await;
                    Ok::<_, Cancelled>(())
                });
            }
            Ok::<_, Cancelled>(())
        })
        .await
        .unwrap()
}

/// A group whose body spawns `n` children on tokio that pend once and
/// finish.
async fn group_spawn(n: u64) {
    TaskGroup::new()
        .run(|group| async move {
            for _ in 0..n {
                group
                    .spawn(async {
                        pend_once().await;
                        Ok::<_, Cancelled>(())
                    })
                    .expect("on tokio");
            }
            Ok::<_, Cancelled>(())
        })
        .await
        .unwrap()
}

/// A group with `n` children pending until it is cancelled, once all pend.
async fn group_cancel_pending(n: u64) {
    let outcome = TaskGroup::new()
        .run(|group| async move {
            for _ in 0..n {
                group.start_soon(async {
                    std::future::pending::<()>().await;
                    Ok::<_, Cancelled>(())
                });
            }
            // The children are polled (and pend) before the body's next poll.
            pend_once().await;
            group.cancel();
            std::future::pending::<()>().await;
            Ok::<_, Cancelled>(())
        })
        .await;
    black_box(outcome.unwrap_err());
}

/// Work enough for about 6.7 µs on the benchmark machine (calibrated with
/// `cargo bench --bench overhead`'s realistic body), a fixed number of
/// steps so that it counts the same in every run.
const BODY_STEPS: u64 = 8_000;

/// About 20 µs of work with three awaits in between, as instructions.
async fn body_20us() -> u64 {
    let mut acc = 0u64;
    for _ in 0..3 {
        for _ in 0..BODY_STEPS {
            acc = black_box(acc.wrapping_add(1));
        }
        pend_once().await;
    }
    acc
}

async fn in_timeout_scope<T>(body: impl Future<Output = T>) -> T {
    CancelScope::new()
        .timeout(FIVE_SECONDS)
        .run(body)
        .await
        .unwrap()
}

/// What each task of [`pending_tasks`] runs.
#[derive(Clone, Copy)]
enum Pending {
    /// The bare body: pends until a shared stop token is cancelled.
    Bare,
    /// A scope with a 5 s timeout linked to a parent token.
    Scope,
    /// A tokio-util child token and `tokio::time::timeout`, in `select!`.
    Peer,
}

/// Spawns `n` tasks of `kind` on tokio current-thread, waits until every
/// one pends, then cancels them all through their shared token and waits
/// for each to end.
fn pending_tasks(n: u64, kind: Pending) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    tokio_current_thread(async move {
        let started = Arc::new(AtomicU64::new(0));
        let ours = CancellationToken::new();
        let theirs = tokio_util::sync::CancellationToken::new();
        let mut tasks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let started = started.clone();
            let body = async move {
                started.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<()>().await
            };
            tasks.push(match kind {
                Pending::Bare => {
                    let stop = theirs.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = body => {}
                        }
                    })
                }
                // Each wait is built inside its task, as the bare body's
                // and the peer's are: a future built outside and moved in
                // is kept twice in the task (the moved-in value and the
                // one awaited), whatever the future.
                Pending::Scope => {
                    let token = ours.clone();
                    tokio::spawn(async move {
                        let run = CancelScope::new()
                            .timeout(FIVE_SECONDS)
                            .token(&token)
                            .run(body);
                        assert!(run.await.is_err());
                    })
                }
                Pending::Peer => {
                    let token = theirs.child_token();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = tokio::time::timeout(FIVE_SECONDS, body) => {}
                        }
                    })
                }
            });
        }
        while started.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        ours.cancel();
        theirs.cancel();
        for task in tasks {
            task.await.expect("the task does not panic");
        }
    })
}

async fn scope_no_source() {
    CancelScope::new().run(pend_once()).await.unwrap()
}

async fn scope_timeout() {
    CancelScope::new()
        .timeout(FIVE_SECONDS)
        .run(pend_once())
        .await
        .unwrap()
}

/// Polls `wait` once (it must pend), runs `cancel`, polls it again (it
/// must be ready) and hands the output to `check`.
fn cancel_while_pending<W: Future>(wait: W, cancel: impl FnOnce(), check: impl FnOnce(W::Output)) {
    let mut wait = std::pin::pin!(wait);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    cancel();
    match wait.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => check(output),
        std::task::Poll::Pending => panic!("still pending after the cancel"),
    }
}

/// Runs `op().await` `n` times.
async fn repeat<F, Fut>(n: u64, op: F)
where
    F: Fn() -> Fut,
    Fut: Future,
{
    for _ in 0..n {
        black_box(op().await);
    }
}

/// The async-io backend: no tokio runtime entered.
fn block_on<F: Future>(work: F) -> F::Output {
    futures::executor::block_on(work)
}

/// `work` as a spawned tokio task (awaited), where most tokio code runs.
async fn spawned<F>(work: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(work).await.expect("the task does not panic")
}

fn tokio_current_thread<F: Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(work)
}

#[derive(Clone, Copy)]
enum Layered {
    Not,
    Unregistered,
    Registered,
}

#[cfg(feature = "tower")]
fn request_layer(n: u64, layered: Layered) {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use cancelable::http::RequestScopeLayer;
    use tower::{Layer, Service, ServiceExt};

    /// Answers every request at once.
    #[derive(Clone)]
    struct Handler;

    impl Service<http::Request<()>> for Handler {
        type Response = http::Response<&'static str>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new("ok")))
        }
    }

    fn request() -> http::Request<()> {
        http::Request::get("/users/42").body(()).expect("a request")
    }

    let registry = cancelable::registry::Registry::new();
    tokio_current_thread(async move {
        match layered {
            Layered::Not => {
                repeat(n, || Handler.oneshot(request())).await;
            }
            Layered::Unregistered => {
                let service = RequestScopeLayer::new().layer(Handler);
                repeat(n, || service.clone().oneshot(request())).await;
            }
            Layered::Registered => {
                let service = RequestScopeLayer::new()
                    .register_in(&registry)
                    .layer(Handler);
                // Fill the history first: every request then also evicts.
                for _ in 0..registry.history_capacity() {
                    let _ = service.clone().oneshot(request()).await;
                }
                repeat(n, || service.clone().oneshot(request())).await;
            }
        }
    });
}

#[cfg(not(feature = "tower"))]
fn request_layer(_: u64, _: Layered) {
    eprintln!("the request-layer hot paths need feature `tower` (scripts/instructions sets it)");
    std::process::exit(2);
}

fn main() {
    // `cargo bench` passes `--bench` (and filters); only our own two
    // arguments select a hot path.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    match args.as_slice() {
        [name, iterations] => {
            let Some(path) = HOT_PATHS.iter().find(|path| path.name == name) else {
                eprintln!("unknown hot path `{name}`; run with `--list` for the names");
                std::process::exit(2);
            };
            let Ok(iterations) = iterations.parse::<u64>() else {
                eprintln!("the iteration count `{iterations}` is not a whole number");
                std::process::exit(2);
            };
            (path.run)(iterations);
        }
        _ if std::env::args().any(|arg| arg == "--list") => {
            for path in HOT_PATHS {
                println!("{}", path.name);
            }
        }
        _ => {
            for path in HOT_PATHS {
                (path.run)(10);
                println!("{}: ok", path.name);
            }
        }
    }
}
