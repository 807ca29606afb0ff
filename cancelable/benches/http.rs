//! Per-request cost of `RequestScopeLayer` over a bare handler, measured
//! in the same run two ways: in process (the tower service called
//! directly: the layer's own cost, without network noise) and with a real
//! HTTP/1.1 client over loopback (keep-alive connection to axum). See
//! BENCHMARKS.md.
//!
//! `cargo bench -p cancelable --features axum --bench http`

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cancelable::http::{DisconnectMode, RequestScopeLayer};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tower::{Layer, Service, ServiceExt};

#[path = "common/mod.rs"]
mod common;

/// The handler: answers at once.
async fn bare(_request: Request<Empty<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn request(headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut request = Request::get("http://127.0.0.1/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Empty::new()).unwrap()
}

/// Calls `service` `iters` times in a row on `runtime`.
fn call_many<S, B>(
    runtime: &tokio::runtime::Runtime,
    service: S,
    headers: &'static [(&'static str, &'static str)],
    iters: u64,
) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    runtime.block_on(async move {
        let mut service = service;
        let started = Instant::now();
        for _ in 0..iters {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(request(headers))
                .await
                .unwrap();
            black_box(response);
        }
        started.elapsed()
    })
}

fn in_process(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handler = tower::service_fn(bare);
    let mut group = c.benchmark_group("http/in-process");
    group.bench_function("bare handler", |b| {
        b.iter_custom(|iters| call_many(&runtime, handler, &[], iters))
    });
    group.bench_function("bare handler, request with x-request-timeout", |b| {
        b.iter_custom(|iters| call_many(&runtime, handler, &[("x-request-timeout", "5s")], iters))
    });
    let layered = RequestScopeLayer::new().layer(handler);
    group.bench_function("RequestScopeLayer", |b| {
        b.iter_custom(|iters| call_many(&runtime, layered.clone(), &[], iters))
    });
    let timeout = RequestScopeLayer::new()
        .timeout(Duration::from_secs(30))
        .layer(handler);
    group.bench_function("RequestScopeLayer, timeout + x-request-timeout", |b| {
        b.iter_custom(|iters| {
            call_many(
                &runtime,
                timeout.clone(),
                &[("x-request-timeout", "5s")],
                iters,
            )
        })
    });
    let notify = RequestScopeLayer::new()
        .on_disconnect(DisconnectMode::Notify)
        .grace(Duration::from_secs(1))
        .layer(handler);
    group.bench_function("RequestScopeLayer, Notify + grace (spawned task)", |b| {
        b.iter_custom(|iters| call_many(&runtime, notify.clone(), &[], iters))
    });
    group.finish();
}

/// A server for `router` on loopback and a keep-alive HTTP/1.1
/// connection to it.
fn connect(
    runtime: &tokio::runtime::Runtime,
    router: Router,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (send, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        send
    })
}

fn round_trips(
    runtime: &tokio::runtime::Runtime,
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    iters: u64,
) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..iters {
            send.ready().await.unwrap();
            let response = send.send_request(request(&[])).await.unwrap();
            black_box(response.into_body().collect().await.unwrap());
        }
        started.elapsed()
    })
}

fn loopback(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let router = || Router::new().route("/", get(|| async { "ok" }));
    let mut bare = connect(&runtime, router());
    let mut layered = connect(&runtime, router().layer(RequestScopeLayer::new()));
    let mut notify = connect(
        &runtime,
        router().layer(
            RequestScopeLayer::new()
                .on_disconnect(DisconnectMode::Notify)
                .grace(Duration::from_secs(1)),
        ),
    );
    let mut group = c.benchmark_group("http/loopback");
    group.bench_function("bare handler", |b| {
        b.iter_custom(|iters| round_trips(&runtime, &mut bare, iters))
    });
    group.bench_function("RequestScopeLayer", |b| {
        b.iter_custom(|iters| round_trips(&runtime, &mut layered, iters))
    });
    group.bench_function("RequestScopeLayer, Notify + grace (spawned task)", |b| {
        b.iter_custom(|iters| round_trips(&runtime, &mut notify, iters))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config(1500, 20);
    targets = in_process, loopback
}
criterion_main!(benches);
