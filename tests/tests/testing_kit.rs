//! The public testing kit (`cancelable::testing`) on every backend: the
//! manual clock drives scope deadlines with no real waiting, the recorder
//! sees scope events in order, `assert_cancelled_within` fails with a
//! readable message, and `CancelAfterCheckpoints` reaches every
//! cancellation point of a body.
//!
//! The manual clock is process-wide, so the tests of this binary take
//! turns (the `serial` guard).

use std::future::{pending, Future};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cancelable::group::TaskGroup;
use cancelable::stream::CancellableStream;
use cancelable::testing::{
    assert_cancelled_within, CancelAfterCheckpoints, EventKind, ManualClock, OperationRecorder,
};
use cancelable::OrCancelled;
use cancelable::{cancel_point, report_progress, CancelReason, CancelScope, Cancelled, Source};
use futures::{FutureExt, StreamExt};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bound no run here comes near unless something is broken.
const GENEROUS: Duration = Duration::from_secs(10);

/// Lets the executor run what an advance woke (a tokio shard's driver
/// task, say), with a little real time for the multi-threaded ones.
async fn settle() {
    for _ in 0..8 {
        cancelable_tests::yield_once().await;
    }
    cancelable_tests::sleep(Duration::from_millis(20)).await;
}

/// Polls `future` once.
async fn is_pending<F: Future + Unpin>(future: &mut F) -> bool {
    futures::poll!(future).is_pending()
}

/// The panic message of `future`, which must panic.
async fn panic_message_of(future: impl Future) -> String {
    let payload = AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .err()
        .expect("the assertion panics");
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .unwrap_or_default(),
    }
}

/// A body with three cancellation points, recording what it did: the
/// step it finished, and the cleanup after a cancellation.
async fn three_steps(log: Arc<Mutex<Vec<String>>>) -> Result<(), Cancelled> {
    let push = |entry: String| log.lock().unwrap().push(entry);
    for step in 0..3 {
        if let Err(cancelled) = cancelable::checkpoint().await {
            push(format!("cleanup before step {step}"));
            return Err(cancelled);
        }
        // A nested scope's checkpoints count for the outer one.
        CancelScope::new()
            .try_run(async {
                cancel_point!();
                Ok::<_, Cancelled>(())
            })
            .await
            .inspect_err(|_| push(format!("cleanup inside step {step}")))?;
        push(format!("step {step}"));
    }
    Ok(())
}

/// A body with one cancellation point of each kind, logging each it gets
/// through.
async fn every_kind_of_point(log: Arc<Mutex<Vec<&'static str>>>) -> Result<(), Cancelled> {
    let push = |entry: &'static str| log.lock().unwrap().push(entry);
    cancelable::checkpoint().await?;
    push("checkpoint");
    cancelable::sleep(Duration::from_millis(1)).await?;
    push("sleep");
    cancelable::sleep_until(Instant::now()).await?;
    push("sleep_until");
    async {}.or_cancelled().await?;
    push("or_cancelled");
    futures::select_biased! {
        cancelled = cancelable::cancelled().fuse() => return Err(cancelled),
        () = futures::future::ready(()) => {}
    }
    push("cancelled()");
    let mut items = futures::stream::iter([1, 2])
        .within_current()
        .expect("in a scope");
    while items.next().await.is_some() {
        push("stream item");
    }
    if let Some(cancelled) = items.cancellation() {
        return Err(cancelled.clone());
    }
    push("stream end");
    cancel_point!();
    push("cancel_point!");
    Ok(())
}

cancelable_tests::on_every_backend_with! {
    guard = serial();

    async fn cancel_after_checkpoints_stops_at_every_kind_of_cancellation_point() {
        let points = [
            "checkpoint", "sleep", "sleep_until", "or_cancelled", "cancelled()",
            "stream item", "stream item", "stream end", "cancel_point!",
        ];
        for n in 0..=points.len() as u64 {
            let log = Arc::new(Mutex::new(Vec::new()));
            let trip = CancelAfterCheckpoints::new(n);
            let outcome = trip.scope(CancelScope::new()).try_run(every_kind_of_point(log.clone())).await;
            let log = log.lock().unwrap().clone();
            assert_eq!(log, points[..n as usize], "n = {n}: the points passed");
            match outcome {
                Err(cancelled) => {
                    assert!((n as usize) < points.len(), "n = {n}: cancelled past the last point");
                    assert_eq!(cancelled.reason(), &CancelReason::Manual);
                    assert_eq!(trip.checkpoints(), n + 1, "n = {n}");
                }
                Ok(()) => assert_eq!(n as usize, points.len(), "n = {n}: a point was skipped"),
            }
        }
    }

    async fn manual_clock_drives_the_registrys_elapsed_times() {
        // The registry reads the operation's clock through the same
        // indirection as the scope: a registered operation started under
        // the manual clock has run for as long as the clock was advanced.
        let registry = cancelable::registry::Registry::new();
        let clock = ManualClock::install();
        let job = CancelScope::new().name("timed").register_in(&registry);
        let id = job.handle().id();
        let mut job = pin!(job.run(pending::<()>()));
        assert!(is_pending(&mut job).await);
        clock.advance(Duration::from_secs(3600));
        let elapsed = registry.get(id).expect("running").elapsed;
        assert!(
            elapsed >= Duration::from_secs(3600) && elapsed < Duration::from_secs(3600) + GENEROUS,
            "an hour on the manual clock, the registry says {elapsed:?}"
        );
        let listed = registry.list(&Default::default());
        assert!(listed.iter().all(|info| info.elapsed >= Duration::from_secs(3600)), "{listed:?}");
    }

    async fn manual_clock_fires_deadlines_passed_in_one_advance_in_deadline_order() {
        let clock = ManualClock::install();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let timed = |secs: u64| {
            let scope = CancelScope::new().source(Source::timeout(Duration::from_secs(secs)));
            let fired = fired.clone();
            scope
                .handle()
                .cancel_token()
                .on_cancel(move |_| fired.lock().unwrap().push(secs))
                .detach();
            scope.run(pending::<()>())
        };
        let mut t30 = pin!(timed(30));
        let mut t10 = pin!(timed(10));
        let mut t20 = pin!(timed(20));
        assert!(is_pending(&mut t30).await && is_pending(&mut t10).await && is_pending(&mut t20).await);
        clock.advance(Duration::from_secs(31));
        let (a, b, c) = futures::join!(t30, t10, t20);
        assert!(a.is_err() && b.is_err() && c.is_err());
        assert_eq!(*fired.lock().unwrap(), [10, 20, 30], "as real time would fire them");
    }

    async fn manual_clock_ends_a_task_groups_grace() {
        let clock = ManualClock::install();
        let seen = Arc::new(AtomicUsize::new(0));
        let children = seen.clone();
        let group = TaskGroup::new().grace(Duration::from_secs(3600));
        let handle = group.handle();
        let mut run = Box::pin(group.run(|group| async move {
            // Never checks: only the end of the group's grace ends it.
            group.start_soon(pending::<Result<(), Cancelled>>());
            // Sees the cancellation, then cleans up for ever.
            group.start_soon(async move {
                let _ = cancelable::cancelled().await;
                children.fetch_add(1, Ordering::SeqCst);
                pending::<Result<(), Cancelled>>().await
            });
            // The body, in the grace too, never ends either.
            pending::<()>().await;
            Ok::<_, Cancelled>(())
        }));
        assert!(is_pending(&mut run).await);
        handle.cancel();
        settle().await;
        assert!(is_pending(&mut run).await, "the group ended before its grace ran out");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "the child saw the cancellation");
        clock.advance(Duration::from_secs(3599));
        settle().await;
        assert!(is_pending(&mut run).await, "the group ended before its grace ran out");
        clock.advance(Duration::from_secs(1));
        let error = assert_finishes_within(GENEROUS, run).await.unwrap_err();
        assert!(error.is_cancelled(), "{error}");
        assert!(error.failures().is_empty(), "{error}");
    }

    async fn manual_clock_a_dropped_timer_does_not_hold_back_later_ones() {
        let clock = ManualClock::install();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let timed = |secs: u64| {
            let scope = CancelScope::new().source(Source::timeout(Duration::from_secs(secs)));
            let fired = fired.clone();
            scope.handle().cancel_token().on_cancel(move |_| fired.lock().unwrap().push(secs)).detach();
            Box::pin(scope.run(pending::<()>()))
        };
        let (mut t30, mut t10, mut t20) = (timed(30), timed(10), timed(20));
        assert!(is_pending(&mut t30).await && is_pending(&mut t10).await && is_pending(&mut t20).await);
        clock.advance(Duration::from_secs(31));
        drop(t10);
        let (a, b) = assert_finishes_within(GENEROUS, async { futures::join!(t30, t20) }).await;
        assert!(a.is_err() && b.is_err());
        let fired = fired.lock().unwrap().clone();
        assert_eq!(fired[fired.len() - 2..], [20, 30], "{fired:?}");
    }

    async fn assert_cancelled_within_takes_a_task_group_result() {
        let group = TaskGroup::new();
        let handle = group.handle();
        let run = group.run(|group| async move {
            group.start_soon(pending::<Result<(), Cancelled>>());
            pending::<Result<(), Cancelled>>().await
        });
        handle.cancel();
        // A `GroupError` gives its `Cancelled`: no wrapper needed.
        let cancelled = assert_cancelled_within(GENEROUS, run).await;
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
    }

    async fn manual_clock_times_a_scope_out_exactly_when_advanced_to_its_deadline() {
        let real = Instant::now();
        let clock = ManualClock::install();
        let mut run = pin!(CancelScope::new()
            .timeout(Duration::from_secs(3600))
            .run(pending::<()>()));
        assert!(is_pending(&mut run).await, "the scope starts");
        clock.advance(Duration::from_secs(3599));
        settle().await;
        assert!(is_pending(&mut run).await, "one second before its deadline");
        clock.advance(Duration::from_secs(1));
        let cancelled = assert_cancelled_within(GENEROUS, run).await;
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert_eq!(cancelled.elapsed(), Some(Duration::from_secs(3600)));
        drop(clock);
        assert!(real.elapsed() < GENEROUS, "an hour took {:?} of real time", real.elapsed());
    }

    async fn manual_clock_drives_deadlines_timeout_sources_and_sleep() {
        let clock = ManualClock::install();
        let deadline = clock.now() + Duration::from_secs(60);
        let mut by_deadline = pin!(CancelScope::new().deadline(deadline).run(pending::<()>()));
        let mut by_source = pin!(CancelScope::new()
            .source(Source::any_of([Source::timeout(Duration::from_secs(30))]))
            .run(pending::<()>()));
        let mut sleeping = pin!(CancelScope::new()
            .run(cancelable::sleep(Duration::from_secs(45))));
        assert!(is_pending(&mut by_deadline).await);
        assert!(is_pending(&mut by_source).await);
        assert!(is_pending(&mut sleeping).await);

        clock.advance(Duration::from_secs(30));
        let cancelled = assert_cancelled_within(GENEROUS, by_source).await;
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        settle().await;
        assert!(is_pending(&mut sleeping).await, "the sleep ends at 45 s");
        assert!(is_pending(&mut by_deadline).await, "the deadline is at 60 s");

        clock.advance(Duration::from_secs(15));
        let slept = assert_finishes_within(GENEROUS, sleeping).await;
        assert!(slept.is_ok(), "the sleep ended and so did its scope");
        settle().await;
        assert!(is_pending(&mut by_deadline).await, "the deadline is at 60 s");

        clock.advance(Duration::from_secs(15));
        let cancelled = assert_cancelled_within(GENEROUS, by_deadline).await;
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
    }

    async fn manual_clock_drives_condition_intervals() {
        let clock = ManualClock::install();
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = checks.clone();
        // False at the first check (when the body pends), true at the next.
        let holds = move || counted.fetch_add(1, Ordering::SeqCst) >= 1;
        let mut run = pin!(CancelScope::new()
            .condition(holds, Duration::from_secs(3600))
            .run(pending::<()>()));
        assert!(is_pending(&mut run).await);
        for _ in 0..500 {
            if checks.load(Ordering::SeqCst) == 1 {
                break;
            }
            settle().await;
            assert!(is_pending(&mut run).await, "the first check does not hold");
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1, "checked once, at the start");
        // The scope takes the check's outcome (from the blocking thread)
        // at its next poll, and only then waits for the interval.
        settle().await;
        assert!(is_pending(&mut run).await, "the first check does not hold");
        clock.advance(Duration::from_secs(3600));
        let cancelled = assert_cancelled_within(GENEROUS, run).await;
        assert_eq!(cancelled.reason(), &CancelReason::Condition);
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }

    async fn the_recorder_sees_a_failed_body_with_its_error_text() {
        let recorder = OperationRecorder::new();
        let outcome = recorder
            .record(CancelScope::new().name("job"))
            .try_run(async {
                report_progress(None, "writing");
                Err::<(), _>(JobError("disk full"))
            })
            .keep_error_text()
            .await;
        assert!(outcome.is_err());
        recorder.assert_events(&["start job", "progress job", "error job"]);
        assert_eq!(recorder.count(EventKind::Error), 1);
        let events = recorder.events();
        assert_eq!(events[2].detail, "the job failed: disk full");
        assert_eq!(events[2].to_string(), "error job (the job failed: disk full)");
    }

    async fn real_time_comes_back_when_the_manual_clock_is_dropped() {
        drop(ManualClock::install());
        let cancelled = assert_cancelled_within(
            GENEROUS,
            CancelScope::new().timeout(Duration::from_millis(20)).run(pending::<()>()),
        )
        .await;
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
    }

    async fn the_recorder_sees_nested_scopes_start_progress_cancel_and_complete_in_order() {
        let recorder = OperationRecorder::new();
        let inner = recorder.record(CancelScope::new().name("inner"));
        let handle = inner.handle();
        let outcome = recorder
            .record(CancelScope::new().name("outer"))
            .run(async move {
                report_progress(0.5, "half way");
                let inner = inner.run(async {
                    handle.cancel();
                    pending::<()>().await
                });
                inner.await.expect_err("cancelled through its handle");
            })
            .await;
        outcome.expect("the outer scope completes");
        recorder.assert_events(&[
            "start outer",
            "progress outer",
            "start inner",
            "cancel inner",
            "complete outer",
        ]);
        recorder.assert_order(&["start outer", "cancel inner", "complete outer"]);
        let events = recorder.events();
        assert_eq!(events[1].kind, EventKind::Progress);
        assert_eq!(events[1].detail, "half way");
        assert!(events[3].detail.contains("cancelled manually"), "{}", events[3].detail);

        // A wrong order fails with the events listed.
        let message = panic_message_of(async {
            recorder.assert_order(&["complete outer", "start inner"]);
        })
        .await;
        assert!(message.contains("expected `start inner` after `complete outer`, but it was recorded earlier"), "{message}");
        assert!(message.contains("recorded events:\n  1. start outer\n  2. progress outer (half way)"), "{message}");
        let message = panic_message_of(async { recorder.assert_order(&["error outer"]) }).await;
        assert!(message.contains("`error outer`, but it was never recorded"), "{message}");
    }

    async fn assert_cancelled_within_fails_on_completion_and_on_a_body_still_running() {
        let message = panic_message_of(assert_cancelled_within(
            GENEROUS,
            CancelScope::new().run(async { 7 }),
        ))
        .await;
        assert!(message.contains("but the future completed with Ok(7)"), "{message}");
        let message = panic_message_of(assert_cancelled_within(
            Duration::from_millis(20),
            CancelScope::new().run(pending::<()>()),
        ))
        .await;
        assert!(message.contains("expected a cancellation within 20ms, but the future was still running"), "{message}");
        assert!(message.contains("testing_kit.rs"), "names the caller: {message}");
    }

    async fn cancelling_at_each_checkpoint_in_turn_reaches_every_cancellation_point() {
        let mut seen = Vec::new();
        for n in 0.. {
            let log = Arc::new(Mutex::new(Vec::new()));
            let trip = CancelAfterCheckpoints::new(n);
            let outcome = trip.scope(CancelScope::new()).try_run(three_steps(log.clone())).await;
            let log = log.lock().unwrap().clone();
            match outcome {
                Err(cancelled) => {
                    // Seen from the nested scope, the outer one's cancellation.
                    assert_eq!(cancelled.reason().root(), &CancelReason::Manual);
                    assert_eq!(
                        cancelled.message(),
                        Some(format!("cancelled at checkpoint {n} by CancelAfterCheckpoints").as_str())
                    );
                    assert_eq!(trip.checkpoints(), n + 1, "counted up to the one that cancelled");
                    seen.push(log.last().cloned().expect("a cleanup ran"));
                }
                Ok(()) => {
                    assert_eq!(trip.checkpoints(), n, "every checkpoint went through");
                    assert_eq!(log, ["step 0", "step 1", "step 2"]);
                    break;
                }
            }
            assert!(n < 100, "the body never completed");
        }
        assert_eq!(
            seen,
            [
                "cleanup before step 0",
                "cleanup inside step 0",
                "cleanup before step 1",
                "cleanup inside step 1",
                "cleanup before step 2",
                "cleanup inside step 2",
            ]
        );
    }
}

/// A body's own error.
#[derive(Debug)]
struct JobError(&'static str);

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the job failed: {}", self.0)
    }
}

impl From<Cancelled> for JobError {
    fn from(_: Cancelled) -> Self {
        JobError("cancelled")
    }
}

/// `future`'s output, asserting it comes within `within` of real time.
async fn assert_finishes_within<F: Future>(within: Duration, future: F) -> F::Output {
    let bound = cancelable_tests::sleep(within);
    futures::select_biased! {
        output = future.fuse() => output,
        _ = bound.fuse() => panic!("still running after {within:?}"),
    }
}
