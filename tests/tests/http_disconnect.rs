//! Client disconnects, for each `DisconnectMode`, on HTTP/1.1 and HTTP/2:
//! a real client sends a request and goes away while the handler works
//! (closing its connection, or resetting its HTTP/2 stream).
//!
//! The handler records what happens to it: whether it saw the
//! cancellation at a checkpoint and with which message, whether it ran to
//! completion, when it was dropped and whether its token was cancelled by
//! then, and whether a task it spawned with a child of its token was
//! cancelled.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use cancelable::http::{DisconnectMode, RequestScopeLayer, CLIENT_DISCONNECTED};
use cancelable::{checkpoint, current_token, CancellationToken};
use cancelable_tests::http::{
    eventually, get as get_request, run, serve, Connection, Version, VERSIONS,
};

/// What a handler went through, in order, with the time of each event.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, Instant)>>>);

impl Events {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push((event.into(), Instant::now()));
    }

    fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.names().iter().any(|event| event == name)
    }

    fn at(&self, name: &str) -> Option<Instant> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(event, _)| event == name)
            .map(|(_, at)| *at)
    }
}

/// Records, when the handler is dropped, whether its token was cancelled
/// by then, with what message and for what reason.
struct OnDrop(Events, CancellationToken);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.push("dropped");
        self.0
            .push(format!("token at drop: {:?}", self.1.message()));
        self.0
            .push(format!("reason at drop: {:?}", self.1.reason()));
    }
}

/// 1.5 s of work in 10 ms steps, checking for cancellation between them;
/// on cancellation, 50 ms of cleanup.
async fn careful(State(events): State<Events>) -> Result<&'static str, String> {
    let token = current_token().expect("a request scope");
    let _on_drop = OnDrop(events.clone(), token.clone());
    let child = token.child();
    let child_events = events.clone();
    tokio::spawn(async move {
        child.cancelled().await;
        child_events.push("child cancelled");
    });
    events.push("started");
    for _ in 0..150 {
        if let Err(cancelled) = checkpoint().await {
            events.push(format!("saw: {}", cancelled.message().unwrap_or_default()));
            tokio::time::sleep(Duration::from_millis(50)).await;
            events.push("cleaned up");
            return Err(cancelled.to_string());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    events.push("completed");
    Ok("done")
}

/// 5 s of work that never looks at cancellation.
async fn oblivious(State(events): State<Events>) -> &'static str {
    let token = current_token().expect("a request scope");
    let _on_drop = OnDrop(events.clone(), token);
    events.push("started");
    tokio::time::sleep(Duration::from_secs(5)).await;
    events.push("completed");
    "done"
}

fn router(events: &Events, layer: RequestScopeLayer) -> Router {
    Router::new()
        .route("/careful", get(careful))
        .route("/oblivious", get(oblivious))
        .with_state(events.clone())
        .layer(layer)
}

/// How the client goes away.
#[derive(Clone, Copy, Debug)]
enum Leave {
    /// Closes the TCP connection.
    Close,
    /// Resets the HTTP/2 stream, keeping the connection.
    ResetStream,
}

/// Sends `path`, waits until the handler started, goes away; returns when
/// it went away.
async fn request_then_leave(
    server: &cancelable_tests::http::Server,
    events: &Events,
    version: Version,
    path: &str,
    leave: Leave,
) -> (Instant, Connection) {
    let mut connection = Connection::open(server.addr, version).await;
    let request = connection.spawn(get_request(&server.url(path), &[]));
    assert!(
        eventually(Duration::from_secs(10), || events.has("started")).await,
        "the handler never started"
    );
    let left = Instant::now();
    match leave {
        Leave::Close => {
            request.abort();
            let closed = std::mem::replace(
                &mut connection,
                Connection::open(server.addr, version).await,
            );
            closed.close();
        }
        Leave::ResetStream => request.abort(),
    }
    (left, connection)
}

fn leaves(version: Version) -> &'static [Leave] {
    match version {
        Version::Http1 => &[Leave::Close],
        Version::Http2 => &[Leave::Close, Leave::ResetStream],
    }
}

#[test]
fn drop_mode_drops_the_handler_after_cancelling_its_token_and_the_work_it_started() {
    run("disconnect_drop", async {
        for version in VERSIONS {
            for &leave in leaves(version) {
                let events = Events::default();
                let server = serve(router(&events, RequestScopeLayer::new())).await;
                let (_left, _connection) =
                    request_then_leave(&server, &events, version, "/careful", leave).await;
                assert!(
                    eventually(Duration::from_secs(5), || events.has("dropped")
                        && events.has("child cancelled"))
                    .await,
                    "{version:?} {leave:?}: {:?}",
                    events.names()
                );
                let names = events.names();
                assert!(
                    names.contains(&format!("token at drop: Some({CLIENT_DISCONNECTED:?})")),
                    "{version:?} {leave:?}: {names:?}"
                );
                // A cause of its own, not an operator's `Manual` cancel.
                assert!(
                    names.contains(&"reason at drop: Some(ClientDisconnected)".to_owned()),
                    "{version:?} {leave:?}: {names:?}"
                );
                assert!(
                    !names.iter().any(|name| name.starts_with("saw")),
                    "{names:?}"
                );
                assert!(!events.has("completed"), "{names:?}");
            }
        }
    });
}

#[test]
fn detach_mode_runs_the_handler_to_completion_without_cancelling_anything() {
    run("disconnect_detach", async {
        for version in VERSIONS {
            for &leave in leaves(version) {
                let events = Events::default();
                let layer = RequestScopeLayer::new().on_disconnect(DisconnectMode::Detach);
                let server = serve(router(&events, layer)).await;
                let (_left, _connection) =
                    request_then_leave(&server, &events, version, "/careful", leave).await;
                assert!(
                    eventually(Duration::from_secs(10), || events.has("dropped")).await,
                    "{version:?} {leave:?}: {:?}",
                    events.names()
                );
                let names = events.names();
                assert!(events.has("completed"), "{version:?} {leave:?}: {names:?}");
                assert!(
                    names.contains(&"token at drop: None".to_owned()),
                    "{names:?}"
                );
                assert!(!events.has("child cancelled"), "{names:?}");
            }
        }
    });
}

#[test]
fn notify_mode_tells_the_handler_which_cleans_up_and_its_work_is_cancelled() {
    run("disconnect_notify", async {
        for version in VERSIONS {
            for &leave in leaves(version) {
                let events = Events::default();
                let layer = RequestScopeLayer::new()
                    .on_disconnect(DisconnectMode::Notify)
                    .grace(Duration::from_secs(2));
                let server = serve(router(&events, layer)).await;
                let (_left, _connection) =
                    request_then_leave(&server, &events, version, "/careful", leave).await;
                assert!(
                    eventually(Duration::from_secs(5), || events.has("dropped")
                        && events.has("child cancelled"))
                    .await,
                    "{version:?} {leave:?}: {:?}",
                    events.names()
                );
                let names = events.names();
                let saw = format!("saw: {CLIENT_DISCONNECTED}");
                let position = |name: &str| names.iter().position(|event| event == name);
                // Saw the cancellation at a checkpoint, cleaned up (for 50 ms,
                // inside the grace), and only then was dropped.
                assert!(
                    position(&saw) < position("cleaned up")
                        && position("cleaned up") < position("dropped"),
                    "{version:?} {leave:?}: {names:?}"
                );
                assert!(position(&saw).is_some(), "{names:?}");
                assert!(!events.has("completed"), "{names:?}");
            }
        }
    });
}

#[test]
fn notify_mode_drops_a_handler_that_ignores_the_cancellation_after_the_grace() {
    const GRACE: Duration = Duration::from_millis(300);
    run("disconnect_notify_grace", async {
        for version in VERSIONS {
            let events = Events::default();
            let layer = RequestScopeLayer::new()
                .on_disconnect(DisconnectMode::Notify)
                .grace(GRACE);
            let server = serve(router(&events, layer)).await;
            let (left, _connection) =
                request_then_leave(&server, &events, version, "/oblivious", Leave::Close).await;
            assert!(
                eventually(Duration::from_secs(10), || events.has("dropped")).await,
                "{version:?}: {:?}",
                events.names()
            );
            let dropped = events.at("dropped").expect("dropped") - left;
            assert!(
                dropped >= GRACE,
                "{version:?}: dropped {dropped:?} after leaving"
            );
            assert!(
                dropped < Duration::from_secs(4),
                "{version:?}: dropped {dropped:?}"
            );
            assert!(!events.has("completed"), "{:?}", events.names());
            assert!(
                events
                    .names()
                    .contains(&format!("token at drop: Some({CLIENT_DISCONNECTED:?})")),
                "{:?}",
                events.names()
            );
            assert!(
                events
                    .names()
                    .contains(&"reason at drop: Some(ClientDisconnected)".to_owned()),
                "{:?}",
                events.names()
            );
        }
    });
}

/// Regression: `Notify` without `.grace()` behaved exactly as `Drop`: the
/// handler was dropped at once and its cleanup never ran. `Notify` has a
/// default grace (1 s).
#[test]
fn notify_mode_without_a_grace_still_lets_the_handler_clean_up() {
    run("disconnect_notify_default_grace", async {
        for version in VERSIONS {
            let events = Events::default();
            let layer = RequestScopeLayer::new().on_disconnect(DisconnectMode::Notify);
            let server = serve(router(&events, layer)).await;
            let (_left, _connection) =
                request_then_leave(&server, &events, version, "/careful", Leave::Close).await;
            assert!(
                eventually(Duration::from_secs(5), || events.has("dropped")).await,
                "{version:?}: {:?}",
                events.names()
            );
            let names = events.names();
            let position = |name: &str| names.iter().position(|event| event == name);
            assert!(
                position("cleaned up").is_some() && position("cleaned up") < position("dropped"),
                "{version:?}: the cleanup never ran: {names:?}"
            );
        }
    });
}

/// Regression: a handler that panicked under `DisconnectMode::Drop` was
/// logged and recorded as a client disconnect (499, `Manual`, "client
/// disconnected"). It is recorded as failed, with the panic message.
#[test]
fn a_panicking_handler_is_recorded_as_a_failure_with_its_panic_message_not_a_disconnect() {
    run("disconnect_panic", async {
        let registry = cancelable::registry::Registry::new();
        let app = Router::new()
            .route(
                "/panics",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if std::hint::black_box(true) {
                        panic!("boom 42");
                    }
                    "unreachable"
                }),
            )
            .layer(RequestScopeLayer::new().register_in(&registry));
        let server = serve(app).await;
        for version in VERSIONS {
            let mut connection = Connection::open(server.addr, version).await;
            let request = connection.spawn(get_request(&server.url("/panics"), &[]));
            // The connection ends without an answer.
            let _ = request.await;
        }
        assert!(
            eventually(Duration::from_secs(5), || {
                registry.history(10, &Default::default()).len() >= 2
            })
            .await
        );
        for operation in registry.history(10, &Default::default()) {
            assert_eq!(
                operation.status,
                cancelable::OperationStatus::Failed,
                "{operation:?}"
            );
            assert_ne!(
                operation.message.as_deref(),
                Some(CLIENT_DISCONNECTED),
                "recorded as a disconnect: {operation:?}"
            );
            let error = operation.error.as_deref().unwrap_or_default();
            assert!(error.contains("boom 42"), "{operation:?}");
        }
    });
}
