//! `http::admin_router` on a real server with a real HTTP client: list
//! (with filters), get, cancel by id and by key (the operation really ends
//! with the reason and message given), 404, 409, 400, mounting it behind a
//! bearer-token check, and in-flight requests of a `RequestScopeLayer`
//! that registers them: listed, cancelled by id, answered. Tokio only, as
//! the services.

use std::future::pending;
use std::time::Duration;

use axum::extract::Request as AxumRequest;
use axum::middleware::{self, Next};
use axum::response::Response as AxumResponse;
use axum::routing::get as route_get;
use axum::Router;
use bytes::Bytes;
use cancelable::http::{admin_router, RequestScopeLayer, ADMIN_CANCEL_MESSAGE};
use cancelable::registry::{Registry, COUNTED_NAMES, OTHER_NAMES};
use cancelable::{shield, CancelReason, CancelScope, Cancelled, Signal};
use cancelable_tests::http::{
    eventually, fetch, get, returns_in_the_poll_it_is_cancelled, run, serve, text, Connection,
    Server, Version, VERSIONS,
};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tokio::task::JoinHandle;

const WITHIN: Duration = Duration::from_secs(10);

/// Starts a registered operation named `name` (with `key`, if given) that
/// pends until cancelled, in a task; returns its id and the task.
async fn start(
    registry: &Registry,
    name: &'static str,
    key: Option<&str>,
) -> (u64, JoinHandle<Result<(), Cancelled>>) {
    let mut scope = CancelScope::new().name(name).register_in(registry);
    if let Some(key) = key {
        scope = scope.key(key).expect("free key");
    }
    let id = scope.handle().id();
    let task = tokio::spawn(scope.run(pending::<()>()));
    assert!(
        eventually(WITHIN, || registry.get(id).is_some()).await,
        "{name} never became live"
    );
    (id, task)
}

/// `import` with a registered child `parse` inside it.
async fn start_nested(registry: &Registry) -> (u64, u64, JoinHandle<Result<(), Cancelled>>) {
    let outer = CancelScope::new().name("import").register_in(registry);
    let outer_id = outer.handle().id();
    let inner = CancelScope::new().name("parse").register_in(registry);
    let inner_id = inner.handle().id();
    let task = tokio::spawn(outer.run(async move {
        let _ = inner.run(pending::<()>()).await;
    }));
    assert!(eventually(WITHIN, || registry.get(inner_id).is_some()).await);
    (outer_id, inner_id, task)
}

/// An operator's cancel body: manual, with a message.
const MAINTENANCE: &str = r#"{"reason": "manual", "message": "operator: maintenance"}"#;

async fn admin_server(registry: &Registry) -> Server {
    serve(admin_router(registry)).await
}

async fn get_json(server: &Server, path: &str) -> (StatusCode, Value) {
    let response = fetch(server.addr, Version::Http1, get(&server.url(path), &[])).await;
    let status = response.status();
    let body = serde_json::from_slice(response.body())
        .unwrap_or_else(|error| panic!("GET {path}: not JSON ({error}): {}", text(&response)));
    (status, body)
}

async fn post(
    server: &Server,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::post(server.url(path));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = fetch(server.addr, Version::Http1, request).await;
    let status = response.status();
    let body = serde_json::from_slice(response.body())
        .unwrap_or_else(|error| panic!("POST {path}: not JSON ({error}): {}", text(&response)));
    (status, body)
}

/// An operator cancels operation `id` through the admin API with `body`
/// (accepted: 200); the answer the client of that request then gets.
async fn cancel_then_answer(
    server: &Server,
    id: u64,
    body: &str,
    client: JoinHandle<Response<Bytes>>,
) -> Response<Bytes> {
    let path = format!("/admin/operations/{id}/cancel");
    let (status, answer) = post(server, &path, Some("application/json"), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["cancelled"], true, "{answer}");
    tokio::time::timeout(WITHIN, client)
        .await
        .expect("the client is answered after the cancel")
        .expect("the client")
}

fn names(operations: &Value) -> Vec<String> {
    let mut names: Vec<String> = operations
        .as_array()
        .expect("an array of operations")
        .iter()
        .map(|operation| operation["name"].as_str().unwrap_or("").to_owned())
        .collect();
    names.sort();
    names
}

fn error_text(body: &Value) -> &str {
    body["error"].as_str().expect("an `error` field")
}

#[test]
fn list_shows_the_snapshot_tree_and_filters_by_status_name_and_parent() {
    run("admin_list", async {
        let registry = Registry::new();
        let (_, export_1) = start(&registry, "export-1", None).await;
        let (_, export_2) = start(&registry, "export-2", Some("nightly")).await;
        let (import, parse, nested) = start_nested(&registry).await;
        let server = admin_server(&registry).await;

        let (status, body) = get_json(&server, "/operations").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["live"], 4);
        assert_eq!(body["stuck"], 0);
        assert_eq!(
            names(&body["operations"]),
            ["export-1", "export-2", "import"]
        );
        let import_node = body["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|node| node["name"] == "import")
            .unwrap();
        assert_eq!(import_node["id"], import);
        assert_eq!(import_node["children"][0]["name"], "parse");
        assert_eq!(import_node["children"][0]["id"], parse);
        assert_eq!(import_node["children"][0]["parent_id"], import);
        assert_eq!(import_node["status"], "Running");

        let (status, body) = get_json(&server, "/operations?name=export-*").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["matched"], 2);
        assert_eq!(body["live"], 4);
        assert_eq!(names(&body["operations"]), ["export-1", "export-2"]);
        let keys: Vec<&Value> = body["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|operation| &operation["key"])
            .collect();
        assert!(keys.contains(&&Value::from("nightly")), "{body}");

        let (_, body) = get_json(&server, &format!("/operations?parent={import}")).await;
        assert_eq!(names(&body["operations"]), ["parse"]);
        assert!(body["operations"][0]["children"]
            .as_array()
            .unwrap()
            .is_empty());

        // Filters combine; percent-encoding is decoded.
        let (_, body) = get_json(&server, "/operations?status=running&name=%2A-1").await;
        assert_eq!(names(&body["operations"]), ["export-1"]);
        let (_, body) = get_json(&server, "/operations?status=completed,failed").await;
        assert_eq!(body["matched"], 0);
        let (_, body) = get_json(&server, "/operations?older_than=1h").await;
        assert_eq!(body["matched"], 0);
        let (_, body) = get_json(&server, "/operations?older_than=0").await;
        assert_eq!(body["matched"], 4);

        for task in [export_1, export_2, nested] {
            task.abort();
        }
    });
}

#[test]
fn bad_filters_are_400_saying_what_is_expected() {
    run("admin_bad_filters", async {
        let registry = Registry::new();
        let server = admin_server(&registry).await;
        for (query, says) in [
            ("name=job-[", "never closed"),
            ("status=sleeping", "expected pending, running"),
            ("parent=me", "expected an operation id"),
            ("older_than=soon", "humantime"),
            ("colour=red", "takes status"),
            ("name=%zz", "percent-encoding"),
        ] {
            let (status, body) = get_json(&server, &format!("/operations?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert!(error_text(&body).contains(says), "{query}: {body}");
        }
    });
}

#[test]
fn get_shows_a_live_operation_a_finished_one_and_404_names_an_unknown_id() {
    run("admin_get", async {
        let registry = Registry::new();
        let (id, task) = start(&registry, "export-1", Some("nightly")).await;
        let (import, parse, nested) = start_nested(&registry).await;
        let server = admin_server(&registry).await;

        let (status, body) = get_json(&server, &format!("/operations/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], id);
        assert_eq!(body["name"], "export-1");
        assert_eq!(body["key"], "nightly");
        assert_eq!(body["finished"], false);
        assert_eq!(body["status"], "Running");

        let (_, body) = get_json(&server, &format!("/operations/{import}")).await;
        assert_eq!(body["children"][0]["id"], parse);

        let (status, body) = get_json(&server, "/operations/by-key/nightly").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], id);

        // Finished: the history remembers it.
        CancelScope::new()
            .name("quick")
            .register_in(&registry)
            .key("once")
            .unwrap()
            .run(async {})
            .await
            .unwrap();
        let quick = registry.history(1, &Default::default())[0].id;
        let (status, body) = get_json(&server, &format!("/operations/{quick}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["finished"], true);
        assert_eq!(body["status"], "Completed");
        let (_, body) = get_json(&server, "/operations/by-key/once").await;
        assert_eq!(body["id"], quick);

        let unknown = u64::MAX;
        let (status, body) = get_json(&server, &format!("/operations/{unknown}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["id"], unknown);
        assert!(error_text(&body).contains(&unknown.to_string()), "{body}");
        let (status, body) = get_json(&server, "/operations/by-key/nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(error_text(&body).contains("\"nobody\""), "{body}");

        let (status, body) = get_json(&server, "/operations/forty-two").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error_text(&body).contains("whole numbers"), "{body}");

        task.abort();
        nested.abort();
    });
}

#[test]
fn cancel_ends_the_operation_with_the_reason_and_message_given_then_409() {
    run("admin_cancel", async {
        let registry = Registry::new();
        let server = admin_server(&registry).await;

        // A JSON body.
        let (id, task) = start(&registry, "export-1", None).await;
        let (status, body) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json"),
            r#"{"reason": "manual", "message": "operator: disk full"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["cancelled"], true);
        assert_eq!(body["answer"], "requested", "{body}");
        assert!(
            body["outcome"]
                .as_str()
                .unwrap()
                .contains("requested the cancellation"),
            "{body}"
        );
        assert_eq!(body["id"], id);
        assert_eq!(body["requested"]["message"], "operator: disk full");
        let cancelled = tokio::time::timeout(WITHIN, task)
            .await
            .expect("the operation ends")
            .expect("no panic")
            .expect_err("cancelled");
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("operator: disk full"));

        // Finished now: 409, naming its final status.
        let (status, body) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["status"], "Cancelled");
        assert!(error_text(&body).contains("already finished"), "{body}");

        // By key, with a signal as the reason.
        let (_, task) = start(&registry, "export-2", Some("nightly")).await;
        let (status, body) = post(
            &server,
            "/operations/by-key/nightly/cancel",
            Some("application/json"),
            r#"{"reason": "signal:SIGTERM", "message": "maintenance window"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cancelled = tokio::time::timeout(WITHIN, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Signal(Signal::Terminate));
        assert_eq!(cancelled.message(), Some("maintenance window"));
        let (status, _) = post(
            &server,
            "/operations/by-key/nightly/cancel",
            Some("application/json"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);

        // Reason `timeout`; and an empty body (no parameters at all).
        let (id, task) = start(&registry, "export-3", None).await;
        let (status, body) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json"),
            r#"{"reason": "timeout", "message": "too slow"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cancelled = tokio::time::timeout(WITHIN, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Timeout);
        assert_eq!(cancelled.message(), Some("too slow"));

        let (id, task) = start(&registry, "export-4", None).await;
        let (status, _) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let cancelled = tokio::time::timeout(WITHIN, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some(ADMIN_CANCEL_MESSAGE));
    });
}

#[test]
fn cancel_of_an_operation_already_cancelled_and_still_running_says_so_and_changes_nothing() {
    run("admin_cancel_twice", async {
        let registry = Registry::new();
        let server = admin_server(&registry).await;
        // A shield holds the operation open after its cancel until released.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let scope = CancelScope::new().name("flush").register_in(&registry);
        let id = scope.handle().id();
        let task = tokio::spawn(scope.run(async move {
            shield(async move {
                let _ = released.await;
            })
            .await;
            pending::<()>().await
        }));
        assert!(eventually(WITHIN, || registry.get(id).is_some()).await);

        let (status, body) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json"),
            r#"{"message": "first"}"#,
        )
        .await;
        assert_eq!(
            (status, &body["cancelled"]),
            (StatusCode::OK, &Value::from(true))
        );
        let (status, body) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json"),
            r#"{"reason": "timeout", "message": "second"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["cancelled"], false);
        assert_eq!(body["answer"], "already_requested", "{body}");
        assert!(
            body["outcome"]
                .as_str()
                .unwrap()
                .contains("already cancelled"),
            "{body}"
        );
        assert_eq!(body["operation"]["message"], "first");
        assert_eq!(body["operation"]["reason"], "Manual");

        release.send(()).unwrap();
        let cancelled = tokio::time::timeout(WITHIN, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(cancelled.message(), Some("first"));
    });
}

#[test]
fn cancel_of_an_unknown_operation_is_404_and_a_bad_reason_is_400_listing_the_valid_ones() {
    run("admin_cancel_errors", async {
        let registry = Registry::new();
        let server = admin_server(&registry).await;
        let (status, body) = post(
            &server,
            "/operations/987654321/cancel",
            Some("application/json"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["id"], 987654321u64);
        assert!(error_text(&body).contains("987654321"), "{body}");
        let (status, body) = post(
            &server,
            "/operations/by-key/nobody/cancel",
            Some("application/json"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["key"], "nobody");

        let (id, task) = start(&registry, "export-1", None).await;
        for (content_type, request, says) in [
            (
                Some("application/json"),
                r#"{"reason": "bored"}"#,
                "valid reasons are manual",
            ),
            (Some("application/json"), r#"{"reason": 3}"#, "send {"),
            (Some("application/json"), r#"{"why": "x"}"#, "unknown field"),
            (
                Some("application/json"),
                r#"{"reason": "parent"}"#,
                "valid reasons are manual",
            ),
            (
                Some("application/json"),
                r#"{"reason": "signal:SIGNOPE"}"#,
                "SIGTERM",
            ),
            (
                Some("application/json"),
                r#"{"urgency": "high"}"#,
                "unknown field",
            ),
        ] {
            let (status, body) = post(
                &server,
                &format!("/operations/{id}/cancel"),
                content_type,
                request,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
            assert!(error_text(&body).contains(says), "{request}: {body}");
        }
        // None of them cancelled it.
        let info = registry.get(id).expect("still live");
        assert!(info.reason.is_none(), "{info:?}");
        task.abort();
    });
}

/// The documented way to protect it: a bearer token checked by an axum
/// `middleware::from_fn`.
async fn operators_only(request: AxumRequest, next: Next) -> Result<AxumResponse, StatusCode> {
    let authorised = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        == Some("Bearer s3cret");
    match authorised {
        true => Ok(next.run(request).await),
        false => Err(StatusCode::UNAUTHORIZED),
    }
}

#[test]
fn mounted_behind_a_bearer_token_check_it_answers_only_with_the_token() {
    run("admin_auth", async {
        let registry = Registry::new();
        let (id, task) = start(&registry, "export-1", None).await;
        let app: Router = Router::new().nest(
            "/admin",
            admin_router(&registry).layer(middleware::from_fn(operators_only)),
        );
        let server = serve(app).await;
        let url = server.url("/admin/operations");
        let response = fetch(server.addr, Version::Http1, get(&url, &[])).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let request = Request::post(server.url(&format!("/admin/operations/{id}/cancel")))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = fetch(server.addr, Version::Http1, request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(registry.get(id).unwrap().reason.is_none());

        let response = fetch(
            server.addr,
            Version::Http2,
            get(&url, &[("authorization", "Bearer s3cret")]),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["live"], 1);
        task.abort();
    });
}

/// A service whose `GET /reports/{n}` pends until cancelled, with a
/// registered operation `render` inside it, under a `RequestScopeLayer`
/// built by `scopes`; the admin endpoints of `registry` at `/admin`,
/// outside the layer.
async fn reports_server(registry: &Registry, scopes: RequestScopeLayer) -> Server {
    let inside = registry.clone();
    let report = move || {
        let inside = inside.clone();
        async move {
            let render = CancelScope::new().name("render").register_in(&inside);
            let _ = render.run(pending::<()>()).await;
            // Whatever `render` ended with, the handler waits to be dropped:
            // the answer is the layer's own.
            pending::<&'static str>().await
        }
    };
    let app = Router::new()
        .route("/reports/{n}", route_get(report))
        .layer(scopes)
        .nest("/admin", admin_router(registry));
    serve(app).await
}

/// The top-level operation named `name` in a `GET /operations` answer.
fn operation_named<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["operations"]
        .as_array()?
        .iter()
        .find(|operation| operation["name"] == name)
}

#[test]
fn a_registered_request_is_listed_cancelled_by_id_answered_503_with_the_message_and_leaves() {
    run("admin_request_scopes", async {
        for version in VERSIONS {
            let registry = Registry::new();
            let server =
                reports_server(&registry, RequestScopeLayer::new().register_in(&registry)).await;
            let mut connection = Connection::open(server.addr, version).await;
            let client = connection.spawn(get(&server.url("/reports/7"), &[]));

            // In flight: listed, named after its route, with the handler's
            // registered operation as its child.
            let route = "GET /reports/{n}";
            assert!(
                eventually(WITHIN, || registry.snapshot().live == 2).await,
                "{version:?}: the request and its child never became live"
            );
            let (status, body) = get_json(&server, "/admin/operations").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["live"], 2, "{version:?}: {body}");
            let listed = operation_named(&body, route)
                .unwrap_or_else(|| panic!("{version:?}: no `{route}` in {body}"));
            assert_eq!(listed["status"], "Running", "{version:?}: {body}");
            assert_eq!(listed["metadata"]["method"], "GET", "{body}");
            assert_eq!(listed["metadata"]["path"], "/reports/7", "{body}");
            assert_eq!(listed["children"][0]["name"], "render", "{body}");
            let id = listed["id"].as_u64().expect("an id");

            // Cancelled by id, with the operator's message; the client
            // gets the answer for a manual cancel.
            let response = cancel_then_answer(&server, id, MAINTENANCE, client).await;
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{version:?}: {}",
                text(&response)
            );
            assert!(
                text(&response).contains("operator: maintenance"),
                "{version:?}: {}",
                text(&response)
            );

            // It left the live set, with its child; the history has it.
            assert!(
                eventually(WITHIN, || registry.get(id).is_none()).await,
                "{version:?}: still live after its answer"
            );
            let (_, body) = get_json(&server, "/admin/operations").await;
            assert_eq!(body["live"], 0, "{version:?}: {body}");
            let (status, body) = get_json(&server, &format!("/admin/operations/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["finished"], true, "{body}");
            assert_eq!(body["status"], "Cancelled", "{body}");
            assert_eq!(body["message"], "operator: maintenance", "{body}");
        }
    });
}

#[test]
fn a_registered_request_returning_in_the_poll_an_operator_cancels_it_is_answered_503_and_recorded_cancelled(
) {
    run("admin_request_returns_as_cancelled", async {
        for version in VERSIONS {
            let registry = Registry::new();
            let app = Router::new()
                .route("/racing", route_get(returns_in_the_poll_it_is_cancelled))
                .layer(RequestScopeLayer::new().register_in(&registry))
                .nest("/admin", admin_router(&registry));
            let server = serve(app).await;
            let mut connection = Connection::open(server.addr, version).await;
            let client = connection.spawn(get(&server.url("/racing"), &[]));
            assert!(
                eventually(WITHIN, || registry.snapshot().live == 1).await,
                "{version:?}: the request never became live"
            );
            let (_, body) = get_json(&server, "/admin/operations").await;
            let id = operation_named(&body, "GET /racing")
                .and_then(|operation| operation["id"].as_u64())
                .unwrap_or_else(|| panic!("{version:?}: no `GET /racing` in {body}"));

            // The handler is held in its poll until this cancel reaches its
            // scope, and returns its own answer in that same poll.
            let response = cancel_then_answer(&server, id, MAINTENANCE, client).await;
            let text = text(&response);
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{version:?}: {text}"
            );
            assert!(
                text.contains("request cancelled") && text.contains("operator: maintenance"),
                "{version:?}: {text}"
            );

            assert!(
                eventually(WITHIN, || registry.get(id).is_none()).await,
                "{version:?}: still live after its answer"
            );
            let (status, body) = get_json(&server, &format!("/admin/operations/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["finished"], true, "{body}");
            assert_eq!(body["status"], "Cancelled", "{version:?}: {body}");
            assert_eq!(body["message"], "operator: maintenance", "{body}");
        }
    });
}

#[test]
fn request_scopes_stay_out_of_the_registry_unless_the_layer_registers_them() {
    run("admin_request_scopes_off", async {
        let registry = Registry::new();
        let server = reports_server(
            &registry,
            RequestScopeLayer::new()
                .register_in(&registry)
                .register(false),
        )
        .await;
        let mut connection = Connection::open(server.addr, Version::Http1).await;
        let client = connection.spawn(get(&server.url("/reports/1"), &[]));
        // The handler's own registered operation shows that it runs; the
        // request itself is not there.
        assert!(eventually(WITHIN, || registry.snapshot().live == 1).await);
        let (_, body) = get_json(&server, "/admin/operations").await;
        assert_eq!(body["live"], 1, "{body}");
        assert_eq!(body["operations"][0]["name"], "render", "{body}");
        client.abort();
    });
}

/// Regression: form bodies, a `text/plain` body starting with `{` and an
/// empty body with the reason in the query string all cancelled an
/// operation — each one a "simple request" a cross-site form or `fetch`
/// sends without a CORS preflight, so with cookie-based auth any page the
/// operator visits could cancel jobs. Only `application/json` bodies are
/// accepted (415 otherwise), nothing is read from the query string.
#[test]
fn cancel_requests_a_cross_site_form_can_send_are_refused_415_and_cancel_nothing() {
    run("admin_csrf", async {
        let registry = Registry::new();
        let server = admin_server(&registry).await;
        let (id, task) = start(&registry, "export-1", Some("nightly")).await;
        for path in [
            format!("/operations/{id}/cancel"),
            "/operations/by-key/nightly/cancel".to_owned(),
        ] {
            for (content_type, request) in [
                (
                    Some("application/x-www-form-urlencoded"),
                    "reason=manual&message=forged",
                ),
                (Some("text/plain"), r#"{"reason": "manual", "message": "forged"}"#),
                (
                    Some("multipart/form-data; boundary=x"),
                    "--x\r\ncontent-disposition: form-data; name=\"reason\"\r\n\r\nmanual\r\n--x--\r\n",
                ),
                (None, r#"{"message": "forged"}"#),
                (None, ""),
            ] {
                let (status, body) = post(&server, &path, content_type, request).await;
                assert_eq!(
                    status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{path} {content_type:?} {request:?}: {body}"
                );
                assert!(error_text(&body).contains("application/json"), "{body}");
            }
            // The reason in the query string, no body.
            let (status, body) = post(
                &server,
                &format!("{path}?reason=manual&message=forged"),
                None,
                "",
            )
            .await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}: {body}");
            // Even with a JSON body, parameters in the query string are refused.
            let (status, body) = post(
                &server,
                &format!("{path}?reason=timeout"),
                Some("application/json"),
                "{}",
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(error_text(&body).contains("query string"), "{body}");
        }
        let info = registry.get(id).expect("still live");
        assert!(
            info.reason.is_none(),
            "cancelled by a forgeable request: {info:?}"
        );
        // The JSON request still works, with an empty body too.
        let (status, body) = post(
            &server,
            &format!("/operations/{id}/cancel"),
            Some("application/json; charset=utf-8"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cancelled = tokio::time::timeout(WITHIN, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(cancelled.message(), Some(ADMIN_CANCEL_MESSAGE));
    });
}

/// Regression: `+3` was read as the id 3.
#[test]
fn operation_ids_parse_strictly() {
    run("admin_strict_ids", async {
        let registry = Registry::new();
        let server = admin_server(&registry).await;
        let (id, task) = start(&registry, "export-1", None).await;
        for shape in [format!("+{id}"), format!("{id}%20"), format!("0x{id:x}")] {
            let (status, body) = get_json(&server, &format!("/operations/{shape}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{shape}: {body}");
            let (status, body) = post(
                &server,
                &format!("/operations/{shape}/cancel"),
                Some("application/json"),
                "{}",
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{shape}: {body}");
            assert!(error_text(&body).contains("whole numbers"), "{body}");
        }
        assert!(registry.get(id).expect("live").reason.is_none());
        task.abort();
    });
}

/// Regression: unauthenticated traffic with 60 KB paths under a
/// registering layer made the history keep every path whole (RSS from 13
/// to 75 MB after 2,000 requests). Names and metadata values are cut at
/// 1 KiB.
#[test]
fn the_history_keeps_at_most_a_kibibyte_per_name_and_metadata_value() {
    run("admin_bounded_history", async {
        let registry = Registry::new();
        let app = Router::new()
            .route("/{*rest}", route_get(|| async { "ok" }))
            .fallback(|| async { "fallback" })
            .layer(RequestScopeLayer::new().register_in(&registry));
        let server = serve(app).await;
        let long = "a".repeat(60_000);
        let mut connection = Connection::open(server.addr, Version::Http1).await;
        for round in 0..50 {
            let response = connection
                .send(get(&server.url(&format!("/{round}/{long}")), &[]))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert!(
            eventually(WITHIN, || registry
                .history(1_000, &Default::default())
                .len()
                >= 50)
            .await
        );
        for operation in registry.history(1_000, &Default::default()) {
            let name = operation.name.as_deref().unwrap_or("");
            let path = operation.metadata.get("path").map_or("", String::as_str);
            assert!(name.len() <= 1_030, "a name of {} bytes", name.len());
            assert!(path.len() <= 1_030, "a path of {} bytes kept", path.len());
            assert!(path.ends_with('…'), "a cut value ends with `…`");
        }
    });
}

/// Regression: a request no route matched is named by its path, and the
/// registry's statistics (and the metrics' labels) kept one entry per name
/// for ever: traffic with ever new paths grew them without bound. The
/// first `COUNTED_NAMES` names count under their own, the rest under
/// `OTHER_NAMES`.
#[test]
fn unmatched_paths_do_not_grow_the_statistics_without_bound() {
    run("admin_bounded_statistics", async {
        let registry = Registry::new();
        let app = Router::new()
            .route("/known", route_get(|| async { "ok" }))
            .fallback(|| async { "fallback" })
            .layer(RequestScopeLayer::new().register_in(&registry));
        let server = serve(app).await;
        let mut connection = Connection::open(server.addr, Version::Http1).await;
        let requests = COUNTED_NAMES + 200;
        for n in 0..requests {
            let response = connection
                .send(get(&server.url(&format!("/unknown/{n}")), &[]))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert!(
            eventually(WITHIN, || registry.statistics().total.completed as usize
                >= requests)
            .await
        );
        let statistics = registry.statistics();
        assert_eq!(statistics.by_name.len(), COUNTED_NAMES + 1);
        assert_eq!(statistics.by_name[OTHER_NAMES].completed, 200);
    });
}

/// Regression: a lookup of an unknown id copied the whole history (24–79
/// ms at 1,000 entries with long paths). It is an index look-up now.
#[test]
fn looking_up_an_id_does_not_copy_the_history() {
    run("admin_indexed_history", async {
        let registry = Registry::builder()
            .history_capacity(10_000)
            .build()
            .expect("registry");
        let value = "v".repeat(1_000);
        let mut ids = Vec::new();
        for _ in 0..10_000 {
            let scope = CancelScope::new()
                .name("job")
                .metadata("path", value.clone())
                .register_in(&registry);
            ids.push(scope.handle().id());
            scope.run(async {}).await.expect("completed");
        }
        let server = admin_server(&registry).await;
        let mut connection = Connection::open(server.addr, Version::Http1).await;
        let unknown = ids.iter().max().expect("ids") + 1_000;
        let mut took = Vec::new();
        for round in 0..20 {
            let id = if round % 2 == 0 {
                unknown
            } else {
                ids[round * 400]
            };
            let started = std::time::Instant::now();
            let response = connection
                .send(get(&server.url(&format!("/operations/{id}")), &[]))
                .await;
            took.push(started.elapsed());
            let expected = match id == unknown {
                true => StatusCode::NOT_FOUND,
                false => StatusCode::OK,
            };
            assert_eq!(response.status(), expected, "{}", text(&response));
        }
        took.sort();
        eprintln!(
            "lookups at 10,000 entries: median {:?}, slowest {:?}",
            took[10], took[19]
        );
        // Generous: an index look-up takes microseconds; a copy of the
        // history, tens of milliseconds.
        assert!(
            took[10] < Duration::from_millis(10),
            "median {:?}",
            took[10]
        );
    });
}

/// Regression: an operator's cancel with reason `timeout` was answered
/// "the server's request timeout of 30s passed" after 0.4 s. The answer
/// says who cancelled it and why; and an operator's message stays on one
/// line of the plain-text answer.
#[test]
fn an_operators_timeout_cancel_is_answered_saying_who_cancelled_it_on_one_line() {
    run("admin_timeout_cancel", async {
        let registry = Registry::new();
        let layer = RequestScopeLayer::new()
            .timeout(Duration::from_secs(30))
            .register_in(&registry);
        let server = reports_server(&registry, layer).await;
        let mut connection = Connection::open(server.addr, Version::Http1).await;
        let client = connection.spawn(get(&server.url("/reports/7"), &[]));
        assert!(eventually(WITHIN, || registry.snapshot().live == 2).await);
        let id = registry
            .list(&Default::default())
            .into_iter()
            .find(|operation| operation.name.as_deref() == Some("GET /reports/{n}"))
            .expect("the request")
            .id;
        let cancel = r#"{"reason": "timeout", "message": "too slow\nforged: log line"}"#;
        let response = cancel_then_answer(&server, id, cancel, client).await;
        let body = text(&response);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT, "{body}");
        assert!(!body.contains("30s passed"), "{body}");
        assert!(body.contains("too slow"), "{body}");
        assert_eq!(body.trim_end_matches('\n').lines().count(), 1, "{body:?}");
    });
}
