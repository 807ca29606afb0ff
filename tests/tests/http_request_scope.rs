//! `RequestScopeLayer` on real servers: deadlines from `x-request-timeout`,
//! `grpc-timeout` and the server's own timeout; the answers (504, gRPC
//! `DEADLINE_EXCEEDED`, 503, 400); what handlers see; request bodies that
//! pass through untouched. Tokio only, by nature.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use cancelable::http::{CancelCause, RequestScope, RequestScopeLayer};
use cancelable::{cancellable, current_scope, CancelReason, CancellationToken, Cancelled};
use cancelable_tests::http::{
    eventually, fetch, get as get_request, grpc, run, serve, text, Version, VERSIONS,
};
use http::StatusCode;
use http_body_util::BodyExt;

/// A generous upper bound for "answered at the deadline, not much later".
const LATE: Duration = Duration::from_secs(5);

/// A handler that would answer after a minute.
async fn sluggish() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "too late"
}

fn sluggish_router(layer: RequestScopeLayer) -> Router {
    Router::new().route("/slow", get(sluggish)).layer(layer)
}

#[test]
fn x_request_timeout_in_milliseconds_or_humantime_ends_the_request_with_504_naming_the_header() {
    run("x_request_timeout", async {
        let server = serve(sluggish_router(RequestScopeLayer::new())).await;
        for version in VERSIONS {
            for (value, shown) in [("100", "100ms"), ("150ms", "150ms"), ("0.2s", "200ms")] {
                let started = Instant::now();
                let response = fetch(
                    server.addr,
                    version,
                    get_request(&server.url("/slow"), &[("x-request-timeout", value)]),
                )
                .await;
                let elapsed = started.elapsed();
                assert_eq!(
                    response.status(),
                    StatusCode::GATEWAY_TIMEOUT,
                    "{version:?} {value}"
                );
                let body = text(&response);
                assert!(
                    body.contains(&format!("`x-request-timeout` of {shown}")),
                    "{version:?}: {body}"
                );
                assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
                assert!(elapsed < LATE, "{elapsed:?}");
            }
        }
    });
}

#[test]
fn the_server_timeout_applies_without_headers_and_the_earliest_deadline_wins() {
    run("server_timeout", async {
        let layer = RequestScopeLayer::new().timeout(Duration::from_millis(200));
        let server = serve(sluggish_router(layer)).await;
        for version in VERSIONS {
            let response =
                fetch(server.addr, version, get_request(&server.url("/slow"), &[])).await;
            assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
            assert!(
                text(&response).contains("the server's request timeout of 200ms"),
                "{}",
                text(&response)
            );
            // A header asking for less gets less; one asking for more does not.
            let response = fetch(
                server.addr,
                version,
                get_request(&server.url("/slow"), &[("x-request-timeout", "50")]),
            )
            .await;
            assert!(text(&response).contains("`x-request-timeout` of 50ms"));
            let response = fetch(
                server.addr,
                version,
                get_request(&server.url("/slow"), &[("x-request-timeout", "1h")]),
            )
            .await;
            assert!(text(&response).contains("server's request timeout"));
        }
    });
}

#[test]
fn a_custom_timeout_header_name_is_honoured_and_the_default_one_ignored() {
    run("custom_header", async {
        let layer = RequestScopeLayer::new()
            .timeout(Duration::from_millis(300))
            .timeout_header(http::HeaderName::from_static("x-budget"));
        let server = serve(sluggish_router(layer)).await;
        let response = fetch(
            server.addr,
            Version::Http1,
            get_request(
                &server.url("/slow"),
                &[("x-budget", "50ms"), ("x-request-timeout", "garbage")],
            ),
        )
        .await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(
            text(&response).contains("`x-budget` of 50ms"),
            "{}",
            text(&response)
        );
    });
}

#[test]
fn grpc_timeout_ends_a_grpc_call_with_deadline_exceeded_naming_the_header() {
    run("grpc_timeout", async {
        let router = grpc::route(|_request| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(tonic::Response::new(grpc::WorkReply::default()))
        })
        .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        let mut request = tonic::Request::new(grpc::WorkRequest { millis: 0 });
        request.set_timeout(Duration::from_millis(100));
        let started = Instant::now();
        let status = grpc::call(grpc::channel(), server.addr, request)
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("`grpc-timeout` of 100ms"),
            "{status:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(100) && elapsed < LATE,
            "{elapsed:?}"
        );
    });
}

#[test]
fn malformed_timeout_headers_are_400_saying_what_is_expected_and_the_handler_never_runs() {
    run("malformed", async {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let router = Router::new()
            .route(
                "/",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { "ran" }
                }),
            )
            .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        let cases = [
            ("x-request-timeout", "soon", "expected milliseconds"),
            ("x-request-timeout", "-1", "expected milliseconds"),
            ("x-request-timeout", "1.5.5s", "expected milliseconds"),
            (
                "x-request-timeout",
                "99999999999999999999999",
                "expected milliseconds",
            ),
            ("grpc-timeout", "10s", "expected 1 to 8 digits"),
            ("grpc-timeout", "123456789m", "expected 1 to 8 digits"),
            ("grpc-timeout", "", "expected 1 to 8 digits"),
        ];
        for version in VERSIONS {
            for (header, value, expected) in cases {
                let response = fetch(
                    server.addr,
                    version,
                    get_request(&server.url("/"), &[(header, value)]),
                )
                .await;
                assert_eq!(
                    response.status(),
                    StatusCode::BAD_REQUEST,
                    "{header}: {value}"
                );
                let body = text(&response);
                assert!(
                    body.contains(&format!("malformed `{header}` header")),
                    "{body}"
                );
                assert!(body.contains(expected), "{body}");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // A well-formed request still works.
        let response = fetch(
            server.addr,
            Version::Http1,
            get_request(&server.url("/"), &[]),
        )
        .await;
        assert_eq!(text(&response), "ran");
    });
}

#[test]
fn a_malformed_grpc_timeout_on_a_grpc_call_is_invalid_argument() {
    run("malformed_grpc", async {
        let router =
            grpc::route(|_request| async { Ok(tonic::Response::new(grpc::WorkReply::default())) })
                .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        let mut request = tonic::Request::new(grpc::WorkRequest { millis: 0 });
        request
            .metadata_mut()
            .insert("grpc-timeout", "5 seconds".parse().expect("metadata"));
        let status = grpc::call(grpc::channel(), server.addr, request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("expected 1 to 8 digits"),
            "{status:?}"
        );
    });
}

#[cancellable]
async fn nested_wait() -> Result<(), Cancelled> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

#[test]
fn handlers_see_their_request_scope_and_cancellable_functions_nest_under_it() {
    run("handler_scope", async {
        // What the handler saw: it finishes after the deadline, so its own
        // answer is not sent (the layer's 504 is).
        let seen = Arc::new(Mutex::new(None::<String>));
        let report = seen.clone();
        let router = Router::new()
            .route(
                "/scope",
                get(|scope: RequestScope| async move {
                    let current = current_scope().expect("the handler runs in its scope");
                    assert_eq!(current.id(), scope.handle().id());
                    let remaining = scope.remaining().expect("a deadline");
                    scope.report_progress(0.5, "half way");
                    let progress = current.context().progress.map(|p| p.message);
                    // A #[cancellable] function nests under the request scope
                    // and ends with its reason when the deadline passes.
                    let nested = nested_wait().await.unwrap_err();
                    *report.lock().unwrap() = Some(format!(
                        "remaining {} ms; {progress:?}; nested: {}; source: {:?}",
                        remaining.as_millis(),
                        nested.reason(),
                        scope.deadline_source(),
                    ));
                    "the handler's own answer"
                }),
            )
            .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        let response = fetch(
            server.addr,
            Version::Http1,
            get_request(&server.url("/scope"), &[("x-request-timeout", "300")]),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            text(&response)
        );
        let body = seen
            .lock()
            .unwrap()
            .clone()
            .expect("the handler reported what it saw");
        let remaining: u64 = body
            .strip_prefix("remaining ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .expect("remaining");
        assert!(remaining <= 300 && remaining > 0, "{body}");
        assert!(body.contains("Some(\"half way\")"), "{body}");
        assert!(
            body.contains("nested: enclosing scope cancelled (timeout)"),
            "{body}"
        );
        assert!(
            body.contains("Header(\"x-request-timeout\", 300ms)"),
            "{body}"
        );
    });
}

#[test]
fn without_the_layer_the_extractor_says_how_to_add_it() {
    run("missing_layer", async {
        let router = Router::new()
            .route("/", get(|_scope: RequestScope| async { "never" }))
            .route(
                "/optional",
                get(|scope: Option<RequestScope>| async move { format!("{}", scope.is_some()) }),
            );
        let server = serve(router).await;
        let response = fetch(
            server.addr,
            Version::Http1,
            get_request(&server.url("/"), &[]),
        )
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text(&response).contains("RequestScopeLayer"));
        let response = fetch(
            server.addr,
            Version::Http1,
            get_request(&server.url("/optional"), &[]),
        )
        .await;
        assert_eq!(text(&response), "false");
    });
}

#[test]
fn cancelling_the_server_token_answers_503_saying_the_server_shuts_down() {
    run("server_token", async {
        let token = CancellationToken::new();
        let server = serve(sluggish_router(
            RequestScopeLayer::new().server_token(&token),
        ))
        .await;
        let cancel = {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                token.cancel_with(CancelReason::Manual, "maintenance window");
            })
        };
        for version in VERSIONS {
            let response =
                fetch(server.addr, version, get_request(&server.url("/slow"), &[])).await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = text(&response);
            assert!(body.contains("server shutting down"), "{body}");
            assert!(body.contains("maintenance window"), "{body}");
        }
        cancel.await.expect("cancel task");
    });
}

/// A handler that works past its deadline without pending, then returns
/// the error of the checkpoint that finds the deadline passed — in the
/// poll in which its scope learns of the deadline — as an `Err(String)`,
/// which axum answers with `200 OK`.
async fn overruns_its_deadline(scope: RequestScope) -> Result<&'static str, String> {
    let deadline = scope.deadline().expect("the request has a deadline");
    tokio::task::block_in_place(|| {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    });
    // A checkpoint enforces the deadlines every 32nd call, before it would
    // yield: this loop returns without pending.
    loop {
        cancelable::checkpoint()
            .await
            .map_err(|cancelled| format!("the handler's own answer: {cancelled}"))?;
    }
}

#[test]
fn a_handler_returning_its_error_in_the_poll_its_deadline_passes_gets_504_not_its_own_answer() {
    run("returns_as_deadline_passes", async {
        for grace in [Duration::ZERO, Duration::from_secs(5)] {
            let layer = RequestScopeLayer::new().grace(grace);
            let app = Router::new()
                .route("/racing", get(overruns_its_deadline))
                .layer(layer);
            let server = serve(app).await;
            for version in VERSIONS {
                let response = fetch(
                    server.addr,
                    version,
                    get_request(&server.url("/racing"), &[("x-request-timeout", "50")]),
                )
                .await;
                let body = text(&response);
                assert_eq!(
                    response.status(),
                    StatusCode::GATEWAY_TIMEOUT,
                    "{version:?}, grace {grace:?}: {body}"
                );
                assert!(
                    body.contains("`x-request-timeout` of 50ms passed"),
                    "{version:?}, grace {grace:?}: {body}"
                );
            }
        }
    });
}

#[test]
fn the_status_of_each_cause_is_configurable() {
    run("statuses", async {
        let layer =
            RequestScopeLayer::new().status(CancelCause::Deadline, StatusCode::REQUEST_TIMEOUT);
        let server = serve(sluggish_router(layer)).await;
        let response = fetch(
            server.addr,
            Version::Http2,
            get_request(&server.url("/slow"), &[("x-request-timeout", "20")]),
        )
        .await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    });
}

/// The request body reaches the handler as the client sends it: the
/// client sends the rest of 50 MB only once the handler has seen the first
/// chunk, which deadlocks (and times out) if the layer read or buffered
/// the body first.
#[test]
fn a_50_mb_streaming_post_reaches_the_handler_as_it_is_sent() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 50 * 1024 * 1024;
    run("streaming_post", async {
        for version in VERSIONS {
            let (first_seen, mut first_seen_rx) = tokio::sync::mpsc::channel::<()>(1);
            let first_seen = Arc::new(Mutex::new(Some(first_seen)));
            let router = Router::new()
                .route(
                    "/upload",
                    post(move |request: Request| {
                        let first_seen = first_seen.clone();
                        async move {
                            let mut body = request.into_body();
                            let mut total = 0usize;
                            while let Some(frame) = body.frame().await {
                                let frame = frame.map_err(|error| error.to_string())?;
                                if let Some(data) = frame.data_ref() {
                                    total += data.len();
                                    if let Some(seen) = first_seen.lock().unwrap().take() {
                                        seen.try_send(()).map_err(|error| error.to_string())?;
                                    }
                                }
                            }
                            Ok::<_, String>(total.to_string())
                        }
                    }),
                )
                .layer(RequestScopeLayer::new().timeout(Duration::from_secs(60)));
            let server = serve(router).await;

            let (chunks, chunks_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            let stream = futures::stream::unfold(chunks_rx, |mut rx| async move {
                rx.recv().await.map(|bytes| {
                    (
                        Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes)),
                        rx,
                    )
                })
            });
            let body = http_body_util::StreamBody::new(Box::pin(stream));
            let request = http::Request::post(server.url("/upload"))
                .body(body)
                .expect("request");
            let io = hyper_util::rt::TokioIo::new(
                tokio::net::TcpStream::connect(server.addr)
                    .await
                    .expect("connect"),
            );
            let response = match version {
                Version::Http1 => {
                    let (mut send, connection) = hyper::client::conn::http1::handshake(io)
                        .await
                        .expect("handshake");
                    tokio::spawn(connection);
                    tokio::spawn(async move { send.send_request(request).await })
                }
                Version::Http2 => {
                    let (mut send, connection) = hyper::client::conn::http2::handshake(
                        hyper_util::rt::TokioExecutor::new(),
                        io,
                    )
                    .await
                    .expect("handshake");
                    tokio::spawn(connection);
                    tokio::spawn(async move { send.send_request(request).await })
                }
            };
            let chunk = Bytes::from(vec![7u8; CHUNK]);
            chunks.send(chunk.clone()).await.expect("first chunk");
            tokio::time::timeout(Duration::from_secs(30), first_seen_rx.recv())
                .await
                .expect("the handler sees the first chunk before the rest is sent")
                .expect("signal");
            for _ in 1..TOTAL / CHUNK {
                chunks.send(chunk.clone()).await.expect("chunk");
            }
            drop(chunks);
            let response = response.await.expect("client task").expect("response");
            let response = cancelable_tests::http::collect(response).await;
            assert_eq!(response.status(), StatusCode::OK, "{version:?}");
            assert_eq!(text(&response), TOTAL.to_string(), "{version:?}");
        }
    });
}

#[test]
fn tonic_handlers_find_their_request_scope_in_the_request_extensions() {
    run("tonic_extensions", async {
        let router = grpc::route(|request: tonic::Request<grpc::WorkRequest>| async move {
            let scope = request
                .extensions()
                .get::<RequestScope>()
                .expect("the layer's RequestScope")
                .clone();
            let current = current_scope().expect("the handler runs in its scope");
            assert_eq!(current.id(), scope.handle().id());
            Ok(tonic::Response::new(grpc::WorkReply {
                outcome: format!(
                    "{:?} {}",
                    scope.deadline_source(),
                    scope.handle().context().name.unwrap_or_default()
                ),
            }))
        })
        .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        let mut request = tonic::Request::new(grpc::WorkRequest { millis: 0 });
        request.set_timeout(Duration::from_secs(3));
        let reply = grpc::call(grpc::channel(), server.addr, request)
            .await
            .expect("call");
        assert!(
            reply.outcome.starts_with("Some(GrpcTimeout("),
            "{}",
            reply.outcome
        );
        assert!(
            reply.outcome.ends_with("POST /test.Worker/Work"),
            "{}",
            reply.outcome
        );
    });
}

/// Regression: a handler that returns after its deadline without having
/// yielded (so no timer could fire while it ran) was answered with its own
/// `200`. The layer checks the clock when the handler returns.
#[test]
fn a_handler_returning_after_its_deadline_without_yielding_is_answered_504() {
    run("late_without_yielding", async {
        let router = Router::new()
            .route(
                "/blocking",
                get(|| async {
                    std::thread::sleep(Duration::from_millis(300));
                    "the handler's own answer"
                }),
            )
            .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        for version in VERSIONS {
            let response = fetch(
                server.addr,
                version,
                get_request(&server.url("/blocking"), &[("x-request-timeout", "100")]),
            )
            .await;
            let body = text(&response);
            assert_eq!(
                response.status(),
                StatusCode::GATEWAY_TIMEOUT,
                "{version:?}: {body}"
            );
            assert!(body.contains("`x-request-timeout` of 100ms"), "{body}");
        }
    });
}

/// Regression: `x-request-timeout: 0` and `grpc-timeout: 0n` called the
/// handler, which answered `200`. An incoming deadline that has already
/// passed is answered at once, without calling the handler.
#[test]
fn an_already_expired_incoming_deadline_is_answered_504_without_calling_the_handler() {
    run("expired_on_arrival", async {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let router = Router::new()
            .route(
                "/quick",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { "the handler's own answer" }
                }),
            )
            .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        for version in VERSIONS {
            for (name, value) in [("x-request-timeout", "0"), ("grpc-timeout", "0n")] {
                let response = fetch(
                    server.addr,
                    version,
                    get_request(&server.url("/quick"), &[(name, value)]),
                )
                .await;
                let body = text(&response);
                assert_eq!(
                    response.status(),
                    StatusCode::GATEWAY_TIMEOUT,
                    "{version:?} {name}: {value}: {body}"
                );
                assert!(body.contains(&format!("`{name}` of 0ns")), "{body}");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler was called");
    });
}

/// Regression: with two `x-request-timeout` headers the first one won,
/// even when the second asked for less.
#[test]
fn with_several_timeout_headers_the_earliest_deadline_applies() {
    run("several_timeout_headers", async {
        let server = serve(sluggish_router(RequestScopeLayer::new())).await;
        for version in VERSIONS {
            for (first, second) in [("5000", "100"), ("100", "5000")] {
                let started = Instant::now();
                let response = fetch(
                    server.addr,
                    version,
                    get_request(
                        &server.url("/slow"),
                        &[("x-request-timeout", first), ("x-request-timeout", second)],
                    ),
                )
                .await;
                let body = text(&response);
                assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT, "{body}");
                assert!(
                    body.contains("`x-request-timeout` of 100ms"),
                    "{first}, {second}: {body}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(4),
                    "{:?}",
                    started.elapsed()
                );
            }
        }
    });
}

/// Regression: an operator's message of 300 KB left a gRPC client with no
/// status at all (the header was too large). `grpc-message` is at most
/// 8 KiB, percent-encoded.
#[test]
fn a_huge_cancel_message_still_gives_the_grpc_client_a_status_with_a_bounded_message() {
    run("grpc_message_bound", async {
        let router = grpc::route(|_request| async {
            let scope = current_scope().expect("a request scope");
            let message = format!("é\n{}", "x".repeat(300_000));
            scope.cancel_with(CancelReason::Manual, message);
            std::future::pending::<Result<tonic::Response<grpc::WorkReply>, tonic::Status>>().await
        })
        .layer(RequestScopeLayer::new());
        let server = serve(router).await;
        let status = grpc::call(
            grpc::channel(),
            server.addr,
            tonic::Request::new(grpc::WorkRequest { millis: 0 }),
        )
        .await
        .expect_err("cancelled");
        assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
        assert!(
            status.message().starts_with("request cancelled"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("é\n"),
            "decoded: {:?}",
            &status.message()[..60]
        );
        assert!(
            status.message().len() <= 8 * 1024,
            "{}",
            status.message().len()
        );
    });
}

/// Regression: `From<Cancelled> for tonic::Status` mapped a shutdown
/// started with `trigger()` to `CANCELLED`, where the layer answers
/// `UNAVAILABLE`: one mapping.
#[test]
fn a_handlers_own_status_for_a_shutdown_matches_the_layers_answer() {
    run("grpc_shutdown_mapping", async {
        let shutdown = cancelable::http::GracefulShutdown::new()
            .signals([])
            .grace(Duration::ZERO)
            .hard_deadline(Duration::from_secs(5));
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<tonic::Code>();
        let seen_tx = Arc::new(Mutex::new(seen_tx));
        let router = grpc::route(move |_request| {
            let seen_tx = seen_tx.clone();
            async move {
                let token = cancelable::current_token().expect("a request scope");
                token.cancelled().await;
                let status = tonic::Status::from(token.check().unwrap_err());
                seen_tx.lock().unwrap().send(status.code()).unwrap();
                Err(status)
            }
        })
        .layer(shutdown.layer());
        let trigger = shutdown.trigger();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(shutdown.serve(listener, router));
        let call = tokio::spawn(grpc::call(
            grpc::channel(),
            addr,
            tonic::Request::new(grpc::WorkRequest { millis: 0 }),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
        let answered = call.await.unwrap().expect_err("cancelled");
        let own = seen_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the handler's status");
        assert_eq!(answered.code(), tonic::Code::Unavailable, "{answered:?}");
        assert_eq!(own, answered.code(), "the handler's own mapping differs");
        let _ = serving.await;
    });
}

/// A registered request cleaning up in the layer's grace is reported in
/// its grace, not shielded: the layer's grace is the scope's grace.
#[test]
fn a_registered_request_in_its_grace_shows_in_grace_not_shielded() {
    run("request_in_grace_in_the_registry", async {
        let registry = cancelable::registry::Registry::builder()
            .stuck_after(Duration::from_secs(600))
            .build()
            .unwrap();
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let go = release.clone();
        let app = Router::new()
            .route(
                "/cleanup",
                get(move || async move {
                    let _ = cancelable::cancelled().await;
                    while !go.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    "cleaned up"
                }),
            )
            .layer(
                RequestScopeLayer::new()
                    .grace(Duration::from_secs(30))
                    .register_in(&registry),
            );
        let server = serve(app).await;
        let url = server.url("/cleanup");
        let request = tokio::spawn(async move {
            fetch(
                server.addr,
                Version::Http1,
                get_request(&url, &[("x-request-timeout", "50")]),
            )
            .await
        });
        let filter = cancelable::registry::Filter::new();
        let in_flight = |registry: &cancelable::registry::Registry| {
            registry
                .list(&filter)
                .into_iter()
                .find(|info| info.reason.is_some())
        };
        assert!(eventually(LATE, || in_flight(&registry).is_some()).await);
        let info = in_flight(&registry).unwrap();
        release.store(true, Ordering::SeqCst);
        assert!(info.in_grace && !info.shielded, "{info:?}");
        let response = request.await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            text(&response)
        );
    });
}
