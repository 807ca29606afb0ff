//! The operations registry over HTTP: [`admin_router`] (feature `admin`).

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::registry::{CancelAnswer, FinishedOperation, OperationInfo, OperationNode, Registry};

mod console;
mod query;

use query::{cancel_request, list_filter, parse_id, CancelRequest};

/// The message an operation is cancelled with when the request gives none.
pub const ADMIN_CANCEL_MESSAGE: &str = "cancelled through the admin endpoint";

/// An axum [`Router`] that shows and cancels the operations of `registry`
/// (feature `admin`): the registry's admin API, JSON in and out.
///
/// | method and path | answer |
/// |---|---|
/// | `GET /` | the operator's console: an HTML page (below) |
/// | `GET /operations` | the [`Snapshot`](crate::registry::Snapshot) of live operations: `taken_at`, `live`, `stuck`, `operations` (a tree: each with its `children`). Query filters as [`Filter`](crate::registry::Filter) takes them: `status` (repeatable or comma-separated), `name` (a glob [`Pattern`](crate::registry::Pattern)), `parent` (an id), `older_than` (`2500` ms or humantime `1m30s`); with a filter, `operations` is the flat list of matching operations (`children` empty) and `matched` counts them. A bad filter is a `400` saying what is expected. |
/// | `GET /operations/{id}` | the live operation ([`OperationInfo`] and its `children`, `"finished": false`), or a finished one the history remembers ([`FinishedOperation`], `"finished": true`); `404` with `{"error", "id"}` for an unknown id. |
/// | `POST /operations/{id}/cancel` | cancels it with `reason` and `message` from a JSON body (`Content-Type: application/json`, `{"reason": "manual", "message": "…"}`; both optional: `manual`, [`ADMIN_CANCEL_MESSAGE`]; an empty body is `{}`); any other content type is a `415`, parameters in the query string a `400` (see *Cross-site requests* below). `200` with `"answer": "requested"` (and `"cancelled": true`: this request asked for the cancellation; the operation ends cancelled at its next checkpoint, or completes if its body finishes first) and the operation as it is now, or `"answer": "already_requested"` (`"cancelled": false`) and the cause it was already cancelled with; `404` unknown id; `409` already finished (with its final status); `400` for a reason that is not one of `manual`, `timeout`, `condition`, `error`, `signal:SIGTERM` (any signal name). |
/// | `GET /operations/by-key/{key}` | as `GET /operations/{id}`, for the live operation holding `key`. |
/// | `POST /operations/by-key/{key}/cancel` | as `POST /operations/{id}/cancel`, by key. |
///
/// Every error answer is JSON with an `error` field saying what went wrong
/// and what to do instead.
///
/// # The console
/// `GET /` (`/admin` where the router is nested at `/admin`: axum's
/// `nest` does not match `/admin/`) is a page an operator reads instead of
/// JSON: the statistics (counts by
/// status, cancellation lag p50 and p99), the tree of live operations
/// (name, id, key, status, elapsed, time to the deadline, progress bar and
/// message, metadata) with stuck and cancelling operations marked, and the
/// most recent finished operations with their reason, message and lag. It
/// is rendered on the server, so it reads without JavaScript; with it the
/// page updates every second ("updated n s ago" says how fresh it is) and
/// each live operation gets a *Cancel…* button that asks for a reason and
/// a message, then posts them as JSON to `POST /operations/{id}/cancel`
/// and shows the outcome. The script and style sheet are embedded in the
/// crate (`/console/console.js`, `/console/console.css`); the page loads
/// nothing else, and its `Content-Security-Policy` allows nothing from
/// another origin. It works on a phone's width, with the keyboard and
/// with a screen reader. It sits behind whatever authentication you mount
/// the router behind (a browser then needs a cookie or basic
/// authentication the middleware accepts, rather than a bearer token).
///
/// # Protect it
/// The router is off unless you mount it, and it has no authentication of
/// its own: anyone who reaches it can cancel any registered operation.
/// Mount it behind your authentication, and only on an address your
/// operators reach. With nothing but axum, a bearer token check:
///
/// ```no_run
/// use axum::extract::Request;
/// use axum::http::{header, StatusCode};
/// use axum::middleware::{self, Next};
/// use axum::response::Response;
/// use axum::Router;
/// use cancelable::{http::admin_router, registry};
///
/// async fn operators_only(request: Request, next: Next) -> Result<Response, StatusCode> {
///     let expected = std::env::var("ADMIN_TOKEN").map_err(|_| StatusCode::UNAUTHORIZED)?;
///     let given = request
///         .headers()
///         .get(header::AUTHORIZATION)
///         .and_then(|value| value.to_str().ok())
///         .and_then(|value| value.strip_prefix("Bearer "));
///     match given {
///         Some(token) if !expected.is_empty() && token == expected => Ok(next.run(request).await),
///         _ => Err(StatusCode::UNAUTHORIZED),
///     }
/// }
///
/// # async fn doc() -> std::io::Result<()> {
/// let app: Router = Router::new()
///     // .route(..) your own routes
///     .nest(
///         "/admin",
///         admin_router(registry::global()).layer(middleware::from_fn(operators_only)),
///     );
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
///
/// `curl -H "Authorization: Bearer $ADMIN_TOKEN" localhost:9000/admin/operations?name=export-*`
/// then lists the running exports, and
/// `curl -H "Authorization: Bearer $ADMIN_TOKEN" --json '{"reason": "manual", "message": "stuck"}' localhost:9000/admin/operations/42/cancel`
/// cancels one.
///
/// # Cross-site requests
/// A browser sends a cross-site form (`application/x-www-form-urlencoded`,
/// `multipart/form-data`, `text/plain`) or a body-less `POST` without
/// asking the server first (no CORS preflight), with the operator's
/// cookies. So the cancel endpoints accept **only `application/json`
/// bodies** (`415` otherwise) and read nothing from the query string: a
/// page the operator visits cannot cancel jobs, even when your
/// authentication is a cookie (as the console's may be). Keep it so: do
/// not add a CORS layer that allows other origins to this router, and
/// prefer a bearer token, which a browser never sends by itself.
pub fn admin_router<S>(registry: &Registry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    api_routes(registry).merge(console::routes(registry))
}

/// The JSON API of [`admin_router`].
fn api_routes<S>(registry: &Registry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/operations", get(list))
        .route("/operations/{id}", get(get_by_id))
        .route("/operations/{id}/cancel", post(cancel_by_id))
        .route("/operations/by-key/{key}", get(get_by_key))
        .route("/operations/by-key/{key}/cancel", post(cancel_by_key))
        .with_state(registry.clone())
}

/// [`admin_router`] over the local registry of `remote` (features `admin`
/// and `redis`), whose console also shows the cluster: every node that
/// published a snapshot, with its live operations (name, id, key, status,
/// elapsed, reason and message, stuck flag, metadata). The JSON API, and
/// the console's cancel buttons, act on this node's operations;
/// [`RemoteRegistry::cancel`](crate::remote::RemoteRegistry::cancel)
/// reaches the others. Mount it behind your authentication, as
/// [`admin_router`].
///
/// ```no_run
/// use cancelable::http::cluster_admin_router;
/// use cancelable::remote::RemoteRegistry;
///
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// let remote = RemoteRegistry::builder("redis://127.0.0.1:6379", "web-1")
///     .connect()
///     .await?;
/// let app: axum::Router = axum::Router::new().nest("/admin", cluster_admin_router(&remote));
/// # drop(app);
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "admin", feature = "redis"))))]
pub fn cluster_admin_router<S>(remote: &crate::remote::RemoteRegistry) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    api_routes(remote.local()).merge(console::cluster_routes(remote))
}

/// A JSON answer.
fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": format!("could not encode the answer as JSON: {error}") })
                .to_string(),
        )
            .into_response(),
    }
}

/// A JSON error answer: `{"error": message, ..extra}`.
fn error(status: StatusCode, message: impl Into<String>, extra: serde_json::Value) -> Response {
    let mut body = serde_json::json!({ "error": message.into() });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    json(status, &body)
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message, serde_json::Value::Null)
}

/// `GET /operations`.
async fn list(State(registry): State<Registry>, RawQuery(query): RawQuery) -> Response {
    let filter = match list_filter(query.as_deref().unwrap_or("")) {
        Ok(filter) => filter,
        Err(message) => return bad_request(message),
    };
    let snapshot = registry.snapshot();
    let Some(filter) = filter else {
        return json(StatusCode::OK, &snapshot);
    };
    /// A [`Snapshot`] narrowed to the operations that pass a filter.
    #[derive(Serialize)]
    struct Filtered {
        taken_at: std::time::SystemTime,
        live: usize,
        stuck: usize,
        matched: usize,
        operations: Vec<OperationNode>,
    }
    let operations: Vec<OperationNode> = snapshot
        .iter()
        .filter(|node| {
            let operation = &node.operation;
            filter.accepts(
                operation.status,
                operation.name.as_deref(),
                || operation.parent_id,
                Some(operation.elapsed),
            )
        })
        .map(|node| OperationNode {
            operation: node.operation.clone(),
            children: Vec::new(),
        })
        .collect();
    json(
        StatusCode::OK,
        &Filtered {
            taken_at: snapshot.taken_at,
            live: snapshot.live,
            stuck: snapshot.stuck,
            matched: operations.len(),
            operations,
        },
    )
}

/// A live operation with the registered operations inside it.
fn live_node(registry: &Registry, id: u64) -> Option<OperationNode> {
    let snapshot = registry.snapshot();
    snapshot.find(id).cloned().or_else(|| {
        // Started after the snapshot: without children.
        registry.get(id).map(|operation| OperationNode {
            operation,
            children: Vec::new(),
        })
    })
}

#[derive(Serialize)]
struct Live {
    finished: bool,
    #[serde(flatten)]
    node: OperationNode,
}

#[derive(Serialize)]
struct Finished {
    finished: bool,
    #[serde(flatten)]
    operation: FinishedOperation,
}

/// The live or finished operation `id`.
fn show(registry: &Registry, id: u64) -> Response {
    if let Some(node) = live_node(registry, id) {
        return json(
            StatusCode::OK,
            &Live {
                finished: false,
                node,
            },
        );
    }
    match registry.finished(id) {
        Some(operation) => json(
            StatusCode::OK,
            &Finished {
                finished: true,
                operation,
            },
        ),
        None => not_found_id(id),
    }
}

fn not_found_id(id: u64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no operation with id {id}: it never registered (call `register()` on its scope), \
             or it finished long enough ago to leave the history; `GET /operations` lists the \
             live ones"
        ),
        serde_json::json!({ "id": id }),
    )
}

fn not_found_key(key: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no live operation holds the key {key:?}; `GET /operations` lists the live ones \
             with their keys"
        ),
        serde_json::json!({ "key": key }),
    )
}

/// `GET /operations/{id}`.
async fn get_by_id(State(registry): State<Registry>, Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Ok(id) => show(&registry, id),
        Err(message) => bad_request(message),
    }
}

/// `GET /operations/by-key/{key}`.
async fn get_by_key(State(registry): State<Registry>, Path(key): Path<String>) -> Response {
    if let Some(operation) = registry.get_by_key(&key) {
        if let Some(node) = live_node(&registry, operation.id) {
            return json(
                StatusCode::OK,
                &Live {
                    finished: false,
                    node,
                },
            );
        }
    }
    match registry.finished_by_key(&key) {
        Some(operation) => json(
            StatusCode::OK,
            &Finished {
                finished: true,
                operation,
            },
        ),
        None => not_found_key(&key),
    }
}

#[derive(Serialize)]
struct CancelOutcome {
    id: u64,
    /// Whether this request asked for the cancellation (the answer is
    /// `requested`): a request, not a promise that it ends cancelled.
    cancelled: bool,
    /// `requested` or `already_requested` ([`CancelAnswer`]).
    answer: &'static str,
    /// What happened, in words.
    outcome: String,
    /// The reason and message asked for.
    requested: Requested,
    /// The operation now (its `reason` and `message` are those it was
    /// cancelled with, which differ from the request's if it was already
    /// cancelled).
    operation: Option<OperationInfo>,
}

#[derive(Serialize)]
struct Requested {
    reason: String,
    message: String,
}

/// Cancels the live operation `id` (found by id or key); `None` if it is
/// not live.
fn cancel_live(registry: &Registry, id: u64, request: CancelRequest) -> Option<Response> {
    let answer = registry
        .cancel(id, request.reason.clone(), request.message.clone())
        .ok()?;
    let cancelled = match answer {
        CancelAnswer::Requested(_) => true,
        CancelAnswer::AlreadyRequested(_) => false,
        // Ended (or not started) between the look-up and the cancel.
        _ => return None,
    };
    let operation = registry.get(id);
    let outcome = match (cancelled, &operation) {
        (true, _) => format!(
            "requested the cancellation of operation {id} ({}: {:?}); it ends cancelled at \
             its next checkpoint, or completes if its body finishes first",
            request.reason, request.message
        ),
        (false, Some(info)) => match (&info.reason, &info.message) {
            (Some(reason), message) => format!(
                "operation {id} was already cancelled ({reason}{}) and has not ended yet; \
                 nothing changed",
                message
                    .as_deref()
                    .map_or(String::new(), |message| format!(": {message:?}"))
            ),
            (None, _) => format!("operation {id} was already cancelled; nothing changed"),
        },
        // Finished between the look-up and the cancel.
        (false, None) => return None,
    };
    Some(json(
        StatusCode::OK,
        &CancelOutcome {
            id,
            cancelled,
            answer: if cancelled {
                "requested"
            } else {
                "already_requested"
            },
            outcome,
            requested: Requested {
                reason: request.reason_text,
                message: request.message,
            },
            operation,
        },
    ))
}

fn already_finished(operation: &FinishedOperation) -> Response {
    let mut text = format!(
        "operation {} has already finished ({:?}",
        operation.id, operation.status
    );
    if let Some(reason) = &operation.reason {
        let _ = write!(text, ", {reason}");
    }
    text.push_str("); there is nothing to cancel");
    error(
        StatusCode::CONFLICT,
        text,
        serde_json::json!({
            "id": operation.id,
            "key": operation.key,
            "status": operation.status,
        }),
    )
}

/// `POST /operations/{id}/cancel`.
async fn cancel_by_id(
    State(registry): State<Registry>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(message) => return bad_request(message),
    };
    let request = match cancel_request(query.as_deref(), &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if registry.get(id).is_some() {
        if let Some(response) = cancel_live(&registry, id, request) {
            return response;
        }
    }
    match registry.finished(id) {
        Some(operation) => already_finished(&operation),
        None => not_found_id(id),
    }
}

/// `POST /operations/by-key/{key}/cancel`.
async fn cancel_by_key(
    State(registry): State<Registry>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match cancel_request(query.as_deref(), &headers, &body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Some(operation) = registry.get_by_key(&key) {
        if let Some(response) = cancel_live(&registry, operation.id, request) {
            return response;
        }
    }
    match registry.finished_by_key(&key) {
        Some(operation) => already_finished(&operation),
        None => not_found_key(&key),
    }
}
