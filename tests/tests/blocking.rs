//! `run_blocking`: a sync closure on a blocking thread, with a context tied
//! to the scope; the awaiting side returns promptly on cancellation even if
//! the closure never checks, and such detached closures are counted.
//!
//! The tests of this file run one at a time (the guard below): the count
//! of abandoned threads is process-wide.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cancelable::blocking::{abandoned_threads, run_blocking};
use cancelable::{shield, CancelReason, CancelScope, CancellationToken, Cancelled};
use cancelable_tests::{on_every_backend_with, sleep};
use futures::future::{select, Either};
use futures::FutureExt;

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits (on a plain thread-blocking loop) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < GENEROUS, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A closure that blocks until released, ignoring its context; it says
/// when it starts and when it ends.
struct Stubborn {
    started: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
    finished: Arc<AtomicBool>,
}

fn stubborn() -> (
    Stubborn,
    impl FnOnce(&cancelable::blocking::BlockingContext) -> u32 + Send + 'static,
) {
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let work = move |_ctx: &cancelable::blocking::BlockingContext| {
        let _ = started_tx.send(());
        let _ = release_rx.recv();
        flag.store(true, Ordering::SeqCst);
        7
    };
    (
        Stubborn {
            started,
            release,
            finished,
        },
        work,
    )
}

on_every_backend_with! {
    guard = serial();

    async fn run_blocking_returns_the_closures_output_in_and_out_of_scopes() {
        let outside = run_blocking(|ctx| {
            assert!(!ctx.is_cancelled());
            assert!(ctx.scope().is_none());
            assert!(!ctx.report_progress(0.5, "nobody listens"));
            6 * 7
        })
        .await;
        assert_eq!(outside.unwrap(), 42);
        let inside = CancelScope::new()
            .run(run_blocking(|ctx| {
                ctx.checkpoint().expect("not cancelled");
                std::thread::current().name().map(str::to_owned)
            }))
            .await
            .unwrap()
            .unwrap();
        // The `blocking` crate's pool, on every backend.
        let thread = inside.unwrap_or_default();
        assert!(thread.starts_with("blocking-"), "ran on thread {thread:?}");
    }

    async fn run_blocking_returns_promptly_on_cancel_while_the_closure_ignores_it() {
        let (stubborn, work) = stubborn();
        let token = CancellationToken::new();
        let canceller = {
            let token = token.clone();
            std::thread::spawn(move || {
                // Cancel once the closure runs.
                stubborn.started.recv().unwrap();
                let cancelled_at = Instant::now();
                token.cancel_with(CancelReason::Manual, "enough");
                (stubborn, cancelled_at)
            })
        };
        let outcome = CancelScope::new()
            .token(&token)
            .try_run(async {
                run_blocking(work).await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        let returned_at = Instant::now();
        let (stubborn, cancelled_at) = canceller.join().unwrap();
        let cancelled = outcome.expect_err("cancelled");
        assert_eq!(cancelled.message(), Some("enough"));
        assert!(returned_at - cancelled_at < GENEROUS);
        assert!(
            !stubborn.finished.load(Ordering::SeqCst),
            "the awaiting side returned while the closure still ran"
        );
        stubborn.release.send(()).unwrap();
        eventually("the detached closure ends once released", || {
            stubborn.finished.load(Ordering::SeqCst)
        });
    }

    async fn abandoned_threads_go_up_while_a_detached_closure_runs_then_down() {
        let before = abandoned_threads();
        let (stubborn, work) = stubborn();
        let scope = CancelScope::new();
        let handle = scope.handle();
        let canceller = std::thread::spawn(move || {
            stubborn.started.recv().unwrap();
            handle.cancel();
            stubborn
        });
        let outcome = scope.run(run_blocking(work)).await;
        assert!(outcome.and_then(|ran| ran).is_err());
        let stubborn = canceller.join().unwrap();
        assert_eq!(abandoned_threads(), before + 1, "the running closure is counted");
        stubborn.release.send(()).unwrap();
        eventually("the count goes down when the closure returns", || {
            abandoned_threads() == before
        });
        assert!(stubborn.finished.load(Ordering::SeqCst));
    }

    async fn closure_that_checks_its_context_stops_soon_after_the_timeout() {
        let stopped = Arc::new(Mutex::new(None));
        let sink = stopped.clone();
        let outcome = CancelScope::new()
            .timeout(Duration::from_millis(20))
            .run(run_blocking(move |ctx| {
                let result = loop {
                    if let Err(cancelled) = ctx.checkpoint() {
                        break cancelled;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                *sink.lock().unwrap() = Some(result.reason().clone());
            }))
            .await;
        assert!(outcome.and_then(|ran| ran).unwrap_err().is_timeout());
        eventually("the closure saw the timeout", || stopped.lock().unwrap().is_some());
        assert_eq!(*stopped.lock().unwrap(), Some(CancelReason::Timeout));
    }

    async fn progress_from_the_blocking_closure_reaches_on_progress() {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let scope = CancelScope::new()
            .name("crunch")
            .timeout(GENEROUS)
            .on_progress(move |progress| {
                sink.lock().unwrap().push((progress.fraction, progress.message.clone()));
            });
        let handle = scope.handle();
        let seen = scope
            .run(run_blocking(|ctx| {
                assert!(ctx.report_progress(0.5, "half"));
                assert!(ctx.report_progress(2.0, "clamped"));
                let scope = ctx.scope().expect("the closure knows its operation");
                (scope.id(), scope.context().name, ctx.deadline())
            }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            *reports.lock().unwrap(),
            [(Some(0.5), "half".to_owned()), (Some(1.0), "clamped".to_owned())]
        );
        assert_eq!(seen.0, handle.id());
        assert_eq!(seen.1.as_deref(), Some("crunch"));
        assert_eq!(seen.2, handle.effective_deadline());
        assert!(seen.2.is_some());
    }

    async fn run_blocking_in_a_cancelled_scope_never_starts_the_closure() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let scope = CancelScope::new();
        scope.handle().cancel();
        let outcome = scope
            .run(run_blocking(move |_| flag.store(true, Ordering::SeqCst)))
            .await;
        assert!(outcome.and_then(|ran| ran).is_err());
        sleep(Duration::from_millis(20)).await;
        assert!(!ran.load(Ordering::SeqCst));
    }

    async fn dropping_the_awaiting_side_tells_the_closure() {
        let before = abandoned_threads();
        let (started_tx, started) = mpsc::channel::<()>();
        let outcome = Arc::new(Mutex::new(None));
        let sink = outcome.clone();
        let work = run_blocking(move |ctx| {
            let _ = started_tx.send(());
            while !ctx.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            *sink.lock().unwrap() = Some(ctx.checkpoint().unwrap_err());
        });
        let wait_started = async move {
            while started.try_recv().is_err() {
                sleep(Duration::from_millis(1)).await;
            }
        };
        // The closure starts, then its future loses a race and is dropped.
        let raced = select(work, Box::pin(wait_started)).await;
        assert!(matches!(raced, Either::Right(_)));
        drop(raced);
        eventually("the closure noticed", || outcome.lock().unwrap().is_some());
        let cancelled = outcome.lock().unwrap().take().unwrap();
        assert!(cancelled.message().unwrap().contains("dropped"), "{cancelled}");
        eventually("nothing left abandoned", || abandoned_threads() == before);
    }

    async fn run_blocking_inside_a_shield_is_not_cut_short_by_the_hidden_cancellation() {
        let scope = CancelScope::new();
        let handle = scope.handle();
        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let outcome = scope
            .run(async move {
                shield(async move {
                    let ran = run_blocking(move |ctx| {
                        handle.cancel();
                        std::thread::sleep(Duration::from_millis(20));
                        (ctx.is_cancelled(), ctx.report_progress(1.0, "still reported"))
                    })
                    .await;
                    *sink.lock().unwrap() = Some(ran.expect("the shield hides the cancellation"));
                })
                .await;
            })
            .await;
        assert_eq!(*seen.lock().unwrap(), Some((false, true)));
        assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
    }

    async fn a_panic_in_the_closure_is_resumed_on_the_awaiting_side() {
        let outcome = AssertUnwindSafe(run_blocking(|_| -> u32 { panic!("boom") }))
            .catch_unwind()
            .await;
        let panic = outcome.expect_err("the panic comes back");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    }
}
