//! The services layer's timers run on the crate's clock: the testing
//! kit's `ManualClock` drives a request's deadline and grace and a
//! graceful shutdown's grace, on a real server on 127.0.0.1 with a real
//! client, with no real waiting. Tokio only, by nature; a binary of its
//! own, as the manual clock is process-wide.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cancelable::http::{GracefulShutdown, RequestScopeLayer, ShutdownOutcome, ShutdownReport};
use cancelable::testing::ManualClock;
use cancelable_tests::http::{eventually, fetch, get as get_request, run, serve, text, Version};
use http::StatusCode;

/// Real time allowed for what the manual clock made due: generous.
const WITHIN: Duration = Duration::from_secs(10);

/// Advances `clock` by `by`, then waits (boundedly, in real time) until
/// `fired` is set: `true` if it is.
async fn advance_until_set(clock: &ManualClock, by: Duration, fired: &AtomicBool) -> bool {
    clock.advance(by);
    eventually(WITHIN, || fired.load(Ordering::SeqCst)).await
}

/// Advances `clock` by `by`, then waits (boundedly, in real time) for
/// what `task` returns; `what` names what the advance should have ended.
async fn advance_and_join<T>(
    clock: &ManualClock,
    by: Duration,
    task: tokio::task::JoinHandle<T>,
    what: &str,
) -> T {
    clock.advance(by);
    match tokio::time::timeout(WITHIN, task).await {
        Ok(joined) => joined.unwrap(),
        Err(_) => panic!("{what} did not end on the manual clock"),
    }
}

/// A shutdown its trigger starts (no signal), with an hour's grace and a
/// hard deadline two hours after the start, on the manual clock.
fn triggered_shutdown() -> GracefulShutdown {
    GracefulShutdown::new()
        .signals([])
        .grace(Duration::from_secs(3600))
        .hard_deadline(Duration::from_secs(7200))
}

/// Serves `router` under `shutdown` on 127.0.0.1, sends it a GET of
/// `path`, waits until the handler `started`, then starts the shutdown
/// (its trigger): the server's task and the request's.
async fn shut_down_during_a_request(
    shutdown: GracefulShutdown,
    router: Router,
    path: &str,
    started: &AtomicBool,
) -> (
    tokio::task::JoinHandle<std::io::Result<ShutdownReport>>,
    tokio::task::JoinHandle<http::Response<bytes::Bytes>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let trigger = shutdown.trigger();
    let serving = tokio::spawn(shutdown.serve(listener, router));
    let url = format!("http://{addr}{path}");
    let request =
        tokio::spawn(async move { fetch(addr, Version::Http1, get_request(&url, &[])).await });
    assert!(eventually(WITHIN, || started.load(Ordering::SeqCst)).await);
    trigger.cancel();
    (serving, request)
}

/// Lets a little real time pass: `true` if `task` still runs then (only
/// the manual clock can end it).
async fn still_running<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(100)).await;
    !task.is_finished()
}

/// A handler that flags its start and its cancellation, then never ends:
/// only the end of its grace ends it.
fn stubborn_router(
    layer: RequestScopeLayer,
    started: &Arc<AtomicBool>,
    seen: &Arc<AtomicBool>,
) -> Router {
    let (started, seen) = (started.clone(), seen.clone());
    Router::new()
        .route(
            "/stubborn",
            get(move || async move {
                started.store(true, Ordering::SeqCst);
                let _ = cancelable::cancelled().await;
                seen.store(true, Ordering::SeqCst);
                std::future::pending::<&'static str>().await
            }),
        )
        .layer(layer)
}

#[test]
fn a_request_deadline_and_grace_are_driven_by_the_manual_clock() {
    run("manual_clock_request_grace", async {
        let clock = ManualClock::install();
        let (started, seen) = (Arc::default(), Arc::default());
        let layer = RequestScopeLayer::new().grace(Duration::from_secs(3600));
        let server = serve(stubborn_router(layer, &started, &seen)).await;
        let url = server.url("/stubborn");
        let request = tokio::spawn(async move {
            fetch(
                server.addr,
                Version::Http1,
                get_request(&url, &[("x-request-timeout", "10s")]),
            )
            .await
        });
        assert!(eventually(WITHIN, || started.load(Ordering::SeqCst)).await);
        // The deadline, 10 s on the manual clock from the request's arrival.
        assert!(
            advance_until_set(&clock, Duration::from_secs(10), &seen).await,
            "the deadline did not fire on the manual clock"
        );
        // In its grace: no answer yet.
        assert!(
            still_running(&request).await,
            "answered before the grace ran out"
        );
        let response =
            advance_and_join(&clock, Duration::from_secs(3600), request, "the grace").await;
        assert_eq!(
            response.status(),
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            text(&response)
        );
        assert!(
            text(&response).contains("`x-request-timeout` of 10s"),
            "{}",
            text(&response)
        );
    });
}

#[test]
fn a_shutdown_grace_is_driven_by_the_manual_clock() {
    run("manual_clock_shutdown_grace", async {
        let clock = ManualClock::install();
        let shutdown = triggered_shutdown();
        let started = Arc::new(AtomicBool::new(false));
        let finished = started.clone();
        // Ends as soon as it sees the cancellation: answered 503.
        let router = Router::new()
            .route(
                "/work",
                get(move || async move {
                    finished.store(true, Ordering::SeqCst);
                    let _ = cancelable::cancelled().await;
                    "cleaned up"
                }),
            )
            .layer(shutdown.layer());
        let (serving, request) =
            shut_down_during_a_request(shutdown, router, "/work", &started).await;
        // In the shutdown's grace: the request runs on.
        assert!(
            still_running(&request).await && !serving.is_finished(),
            "the grace ended early"
        );
        let response = advance_and_join(
            &clock,
            Duration::from_secs(3600),
            request,
            "the shutdown's grace",
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            text(&response)
        );
        let report = tokio::time::timeout(WITHIN, serving)
            .await
            .expect("serve did not return")
            .unwrap()
            .unwrap();
        assert_eq!(
            report.outcome,
            ShutdownOutcome::CancelledInFlight,
            "{report}"
        );
        assert_eq!(report.handlers_cancelled(), 1, "{report}");
        assert!(
            report.elapsed >= Duration::from_secs(3600),
            "{report}: elapsed on the manual clock"
        );
    });
}

#[test]
fn a_shutdown_hard_deadline_is_driven_by_the_manual_clock() {
    run("manual_clock_shutdown_hard_deadline", async {
        let clock = ManualClock::install();
        let shutdown = triggered_shutdown();
        let (started, seen) = (Arc::default(), Arc::default());
        // Sees the cancellation at the grace's end, then never ends (in a
        // request grace longer than the shutdown): only the hard deadline
        // ends the shutdown.
        let layer = shutdown.layer().grace(Duration::from_secs(100_000));
        let router = stubborn_router(layer, &started, &seen);
        let (serving, _request) =
            shut_down_during_a_request(shutdown, router, "/stubborn", &started).await;
        // In the shutdown's grace (its end read off the manual clock before
        // the clock moves: the server's task runs the trigger first).
        assert!(still_running(&serving).await, "the grace ended early");
        assert!(
            advance_until_set(&clock, Duration::from_secs(3600), &seen).await,
            "the shutdown's grace did not end on the manual clock"
        );
        // Between the grace's end and the hard deadline: still serving.
        assert!(
            still_running(&serving).await,
            "returned before the hard deadline"
        );
        let report = advance_and_join(
            &clock,
            Duration::from_secs(3600),
            serving,
            "the hard deadline",
        )
        .await
        .unwrap();
        assert_eq!(report.outcome, ShutdownOutcome::HardDeadline, "{report}");
        assert_eq!(report.handlers_running(), 1, "{report}");
        assert!(
            report.elapsed >= Duration::from_secs(7200),
            "{report}: elapsed on the manual clock"
        );
    });
}
