//! An axum service with request scopes, deadline propagation, the three
//! client-disconnect modes, graceful shutdown, and the operations
//! registry's admin endpoints behind a bearer token, where every request
//! in flight is listed and can be cancelled — as JSON, or in the
//! operator's console at `/admin` (a browser logs in as user `operator`
//! with the token as password).
//!
//! `cargo run --example web_service` prints the URLs to try and serves
//! until Ctrl-C (a second Ctrl-C ends the shutdown at once). The admin
//! token is `$ADMIN_TOKEN`, or a random one printed at start.
//! `cargo run --example web_service -- --demo` runs a short demo against
//! itself and exits within seconds.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cancelable::http::{
    admin_router, BoxError, DisconnectMode, GracefulShutdown, PropagateDeadlineLayer, RequestScope,
};
use cancelable::{cancel_point, cancellable, registry, CancelReason, Cancelled};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// `?ms=N` from the query string.
fn millis(uri: &Uri, default: u64) -> u64 {
    uri.query()
        .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("ms=")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(default)
}

/// `ms` milliseconds of work in 10 ms steps, with a checkpoint before each
/// and progress reported to the request scope. A `#[cancellable]`
/// function: it nests under the request's scope, and registers in the
/// global registry, where the admin endpoints list and cancel it.
#[cancellable(register = true)]
async fn work(ms: u64) -> Result<u64, Cancelled> {
    let steps = ms.div_ceil(10).max(1);
    for step in 1..=steps {
        cancel_point!();
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelable::report_progress(step as f64 / steps as f64, format!("step {step}/{steps}"));
    }
    Ok(steps)
}

/// `GET /work?ms=N`: works N ms (default 500).
/// A `Cancelled` answers 504 for a timeout, 503 for a shutdown.
async fn work_route(uri: Uri) -> Result<String, Cancelled> {
    let ms = millis(&uri, 500);
    let steps = work(ms).await?;
    Ok(format!("worked {ms} ms in {steps} steps\n"))
}

/// `GET /remaining`: the request's deadline as the handler sees it.
async fn remaining(scope: RequestScope) -> String {
    format!(
        "remaining: {:?}\nfrom: {}\nscope: {:?}\n",
        scope.remaining(),
        scope
            .deadline_source()
            .map_or("no deadline".to_owned(), ToString::to_string),
        scope.handle().context().name,
    )
}

/// `GET /fanout`: calls `/echo-timeout` on this server through
/// `PropagateDeadlineLayer`: the call carries our remaining time.
async fn fanout(
    scope: RequestScope,
    axum::extract::State(base): axum::extract::State<String>,
) -> String {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let client = PropagateDeadlineLayer::http()
        .margin(Duration::from_millis(5))
        .layer(client);
    let request = http::Request::get(format!("{base}/echo-timeout"))
        .body(Empty::new())
        .expect("request");
    let downstream = match client.oneshot(request).await {
        Ok(response) => {
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            format!(
                "{:?}",
                body.map(|b| String::from_utf8_lossy(&b).into_owned())
            )
        }
        Err(error) => describe_error(&error),
    };
    format!(
        "we had {:?} left; the downstream call said: {downstream}\n",
        scope.remaining()
    )
}

fn describe_error(error: &BoxError) -> String {
    match error.downcast_ref::<Cancelled>() {
        Some(cancelled) => format!("not sent or cut short: {cancelled}"),
        None => format!("failed: {error}"),
    }
}

/// `GET /echo-timeout`: the `x-request-timeout` this request came with.
async fn echo_timeout(headers: http::HeaderMap) -> String {
    format!("x-request-timeout: {:?}", headers.get("x-request-timeout"))
}

/// `GET /notify?ms=N` (Notify mode): if the client goes away, the handler
/// sees it at its next checkpoint and cleans up within the grace.
async fn notify(uri: Uri) -> Result<String, String> {
    let ms = millis(&uri, 3000);
    match work(ms).await {
        Ok(_) => Ok(format!("worked {ms} ms\n")),
        Err(cancelled) => {
            println!(
                "  [server] /notify saw: {} ({}) — cleaning up",
                cancelled.message().unwrap_or("?"),
                cancelled.reason()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            println!("  [server] /notify cleaned up");
            Err(cancelled.to_string())
        }
    }
}

/// `GET /detach?ms=N` (Detach mode): runs to completion even if the
/// client goes away.
async fn detach(uri: Uri) -> String {
    let ms = millis(&uri, 1000);
    let outcome = work(ms).await;
    println!("  [server] /detach finished: {outcome:?}");
    format!("{outcome:?}\n")
}

/// The bearer token the admin endpoints want.
#[derive(Clone)]
struct AdminToken(String);

/// `$ADMIN_TOKEN`, or a random token for this run.
fn admin_token() -> AdminToken {
    use std::hash::{BuildHasher, Hasher};
    let token = std::env::var("ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos()),
            );
            format!("{:016x}", hasher.finish())
        });
    AdminToken(token)
}

/// Lets through requests that carry `Authorization: Bearer <token>` (curl,
/// scripts) or HTTP basic authentication as user `operator` with the token
/// as password (a browser on the console, which asks for them).
async fn operators_only(
    axum::extract::State(AdminToken(token)): axum::extract::State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let basic = format!("Basic {}", base64(format!("operator:{token}").as_bytes()));
    match given {
        Some(given) if given.strip_prefix("Bearer ") == Some(&token) || given == basic => {
            next.run(request).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Basic realm=\"operators\"")],
        )
            .into_response(),
    }
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn app(shutdown: &GracefulShutdown, base: String, token: AdminToken) -> Router {
    // Every route gets a request scope: 5 s at most, less if the client
    // asks (x-request-timeout, grpc-timeout), cancelled at shutdown, and
    // registered in the global registry as `GET /work` etc., where the
    // admin endpoints list and cancel it.
    let scopes = shutdown
        .layer()
        .timeout(Duration::from_secs(5))
        .register(true);
    let dropping = Router::new()
        .route("/work", get(work_route))
        .route("/remaining", get(remaining))
        .route("/fanout", get(fanout))
        .route("/echo-timeout", get(echo_timeout))
        .with_state(base)
        .layer(scopes.clone());
    let notifying = Router::new().route("/notify", get(notify)).layer(
        scopes
            .clone()
            .on_disconnect(DisconnectMode::Notify)
            .grace(Duration::from_millis(500)),
    );
    let detaching = Router::new()
        .route("/detach", get(detach))
        .layer(scopes.on_disconnect(DisconnectMode::Detach));
    // The registry's admin endpoints: only with the bearer token.
    let admin = admin_router(registry::global())
        .layer(middleware::from_fn_with_state(token, operators_only));
    dropping
        .merge(notifying)
        .merge(detaching)
        .nest("/admin", admin)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let demo = std::env::args().any(|arg| arg == "--demo");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = GracefulShutdown::new()
        .grace(Duration::from_millis(if demo { 300 } else { 2000 }))
        .hard_deadline(Duration::from_secs(5));
    let token = admin_token();
    let app = app(&shutdown, base.clone(), token.clone());
    if demo {
        let trigger = shutdown.trigger();
        let client_base = base.clone();
        tokio::spawn(async move {
            run_demo(&client_base).await;
            admin_demo(&client_base, &token.0).await;
            println!("\n7. shutdown with a request in flight (grace 300 ms):");
            let in_flight = tokio::spawn(show(client_base.clone(), "/work?ms=4000", &[]));
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel_with(CancelReason::Manual, "the demo is over");
            let _ = in_flight.await;
        });
    } else {
        println!("listening on {base} — try:");
        println!("  curl {base}/work?ms=300");
        println!("  curl -H 'x-request-timeout: 200ms' {base}/work?ms=1000      # 504");
        println!("  curl -H 'x-request-timeout: soon' {base}/work               # 400");
        println!("  curl -H 'x-request-timeout: 1.5s' {base}/remaining");
        println!(
            "  curl -H 'x-request-timeout: 300' {base}/fanout              # deadline propagation"
        );
        println!(
            "  curl {base}/notify?ms=5000   # then Ctrl-C curl: the server log shows the cleanup"
        );
        println!("  curl {base}/detach?ms=3000   # then Ctrl-C curl: the handler still finishes");
        println!(
            "  open {base}/admin in a browser: the operator's console (user operator, password {})",
            token.0
        );
        let auth = format!("-H 'Authorization: Bearer {}'", token.0);
        println!("  curl {auth} '{base}/admin/operations?name=GET%20/work'   # while a /work runs");
        println!(
            "  curl {auth} --json '{{\"reason\": \"manual\", \"message\": \"enough\"}}' {base}/admin/operations/ID/cancel"
        );
        println!("Ctrl-C stops the server gracefully (grace 2 s, hard deadline 5 s); twice ends it at once.");
    }
    let report = shutdown.serve(listener, app).await?;
    println!("server: {report}");
    Ok(())
}

/// Sends `path` with `headers` and prints the status and body.
async fn show(base: String, path: &'static str, headers: &[(&str, &str)]) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    match client
        .request(request.body(Empty::new()).expect("request"))
        .await
    {
        Ok(response) => {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            print!(
                "   GET {path} {headers:?} -> {status} after {:.0?}: {}",
                started.elapsed(),
                String::from_utf8_lossy(&body)
            );
            if !body.ends_with(b"\n") {
                println!();
            }
        }
        Err(error) => println!("   GET {path} -> failed: {error}"),
    }
}

/// Sends `method path` to the admin endpoints, with the bearer token if
/// given; the status and body.
async fn admin_call(base: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let client: Client<HttpConnector, http_body_util::Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = if method == "POST" {
        r#"{"reason": "manual", "message": "stopped by the operator from the admin endpoint"}"#
    } else {
        ""
    };
    let request = request
        .body(http_body_util::Full::new(Bytes::from(body)))
        .expect("request");
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(error) => (0, format!("failed: {error}")),
    }
}

/// Step 6: the admin endpoints list a request in flight to `/work` (a
/// registered request scope, with the registered `work` inside it) and
/// cancel it by id: the client gets a 503 with the operator's message.
async fn admin_demo(base: &str, token: &str) {
    println!("\n6. the admin endpoints (bearer token required) list and cancel a running /work:");
    let in_flight = tokio::spawn(show(base.to_owned(), "/work?ms=4000", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = admin_call(base, "GET", "/admin/operations", None).await;
    println!("   GET /admin/operations without the token -> {status}");
    let (status, body) = admin_call(
        base,
        "GET",
        "/admin/operations?name=GET%20/work",
        Some(token),
    )
    .await;
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let operation = &listed["operations"][0];
    println!(
        "   GET /admin/operations?name=GET%20/work -> {status}: {} live, {} matched; id {} {} {}",
        listed["live"],
        listed["matched"],
        operation["id"],
        operation["name"],
        operation["metadata"],
    );
    let Some(id) = operation["id"].as_u64() else {
        println!("   (no running /work found)");
        return;
    };
    let (status, page) = admin_call(base, "GET", "/admin", Some(token)).await;
    println!(
        "   GET /admin -> {status}: the operator's console, {} bytes of HTML, lists {} live \
         operation(s), {} (id {id}) among them",
        page.len(),
        page.matches("class=\"op ").count(),
        if page.contains(&format!("id=\"op-{id}\"")) && page.contains("GET /work") {
            "GET /work"
        } else {
            "not GET /work"
        },
    );
    let (status, body) = admin_call(
        base,
        "POST",
        &format!("/admin/operations/{id}/cancel"),
        Some(token),
    )
    .await;
    let outcome: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    println!(
        "   POST /admin/operations/{id}/cancel -> {status}: {}",
        outcome["outcome"]
    );
    let _ = in_flight.await;
    let (status, body) = admin_call(
        base,
        "POST",
        &format!("/admin/operations/{id}/cancel"),
        Some(token),
    )
    .await;
    let outcome: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    println!(
        "   POST /admin/operations/{id}/cancel again -> {status}: {}",
        outcome["error"]
    );
}

async fn run_demo(base: &str) {
    let base = base.to_owned();
    println!("1. a request within its deadline:");
    show(base.clone(), "/work?ms=100", &[]).await;
    println!("\n2. the client's x-request-timeout passes first:");
    show(
        base.clone(),
        "/work?ms=2000",
        &[("x-request-timeout", "300ms")],
    )
    .await;
    println!("\n3. a malformed timeout header:");
    show(
        base.clone(),
        "/work?ms=100",
        &[("x-request-timeout", "soon")],
    )
    .await;
    show(base.clone(), "/work?ms=100", &[("grpc-timeout", "10s")]).await;
    println!("\n4. what the handler sees, and deadline propagation to a downstream call:");
    show(base.clone(), "/remaining", &[("x-request-timeout", "1.5s")]).await;
    show(base.clone(), "/fanout", &[("x-request-timeout", "250")]).await;
    println!("\n5. the client goes away after 200 ms (Notify, then Detach):");
    for path in ["/notify?ms=3000", "/detach?ms=600"] {
        let request = tokio::spawn(show(base.clone(), path, &[]));
        tokio::time::sleep(Duration::from_millis(200)).await;
        request.abort();
        println!("   (client gone from {path})");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}
