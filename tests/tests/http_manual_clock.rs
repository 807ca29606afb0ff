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
use cancelable::http::{GracefulShutdown, RequestScopeLayer, ShutdownOutcome};
use cancelable::testing::ManualClock;
use cancelable_tests::http::{eventually, fetch, get as get_request, run, serve, text, Version};
use http::StatusCode;

/// Real time allowed for what the manual clock made due: generous.
const WITHIN: Duration = Duration::from_secs(10);

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
        clock.advance(Duration::from_secs(10));
        assert!(
            eventually(WITHIN, || seen.load(Ordering::SeqCst)).await,
            "the deadline did not fire on the manual clock"
        );
        // In its grace: no answer yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!request.is_finished(), "answered before the grace ran out");
        clock.advance(Duration::from_secs(3600));
        let response = tokio::time::timeout(WITHIN, request)
            .await
            .expect("the grace did not end on the manual clock")
            .unwrap();
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
        let shutdown = GracefulShutdown::new()
            .signals([])
            .grace(Duration::from_secs(3600))
            .hard_deadline(Duration::from_secs(7200));
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let trigger = shutdown.trigger();
        let serving = tokio::spawn(shutdown.serve(listener, router));
        let url = format!("http://{addr}/work");
        let request =
            tokio::spawn(async move { fetch(addr, Version::Http1, get_request(&url, &[])).await });
        assert!(eventually(WITHIN, || started.load(Ordering::SeqCst)).await);
        trigger.cancel();
        // In the shutdown's grace: the request runs on.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !request.is_finished() && !serving.is_finished(),
            "the grace ended early"
        );
        clock.advance(Duration::from_secs(3600));
        let response = tokio::time::timeout(WITHIN, request)
            .await
            .expect("the shutdown's grace did not end on the manual clock")
            .unwrap();
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
        let shutdown = GracefulShutdown::new()
            .signals([])
            .grace(Duration::from_secs(3600))
            .hard_deadline(Duration::from_secs(7200));
        let (started, seen) = (Arc::default(), Arc::default());
        // Sees the cancellation at the grace's end, then never ends (in a
        // request grace longer than the shutdown): only the hard deadline
        // ends the shutdown.
        let layer = shutdown.layer().grace(Duration::from_secs(100_000));
        let router = stubborn_router(layer, &started, &seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let trigger = shutdown.trigger();
        let serving = tokio::spawn(shutdown.serve(listener, router));
        let url = format!("http://{addr}/stubborn");
        let _request =
            tokio::spawn(async move { fetch(addr, Version::Http1, get_request(&url, &[])).await });
        assert!(eventually(WITHIN, || started.load(Ordering::SeqCst)).await);
        trigger.cancel();
        clock.advance(Duration::from_secs(3600));
        assert!(
            eventually(WITHIN, || seen.load(Ordering::SeqCst)).await,
            "the shutdown's grace did not end on the manual clock"
        );
        // Between the grace's end and the hard deadline: still serving.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!serving.is_finished(), "returned before the hard deadline");
        clock.advance(Duration::from_secs(3600));
        let report = tokio::time::timeout(WITHIN, serving)
            .await
            .expect("the hard deadline did not pass on the manual clock")
            .unwrap()
            .unwrap();
        assert_eq!(report.outcome, ShutdownOutcome::HardDeadline, "{report}");
        assert_eq!(report.handlers_running(), 1, "{report}");
        assert!(
            report.elapsed >= Duration::from_secs(7200),
            "{report}: elapsed on the manual clock"
        );
    });
}
