//! A trivial axum handler served three ways, for measuring what the request
//! layer costs with a real HTTP/2 load generator (`scripts/layer-load`
//! runs h2load against each, alternating):
//!
//! * `none` — no layer;
//! * `layer` — `RequestScopeLayer` (a scope per request, unregistered);
//! * `registered` — the same layer with `register(true)` (every request a
//!   live operation of the global registry, then an entry of its history).
//!
//! `cargo run --release -p cancelable-examples --example layer_load -- registered`
//! prints `listening <port>` and serves on 127.0.0.1 until killed.

use std::io::Write;

use axum::routing::get;
use axum::Router;
use cancelable::http::RequestScopeLayer;

fn main() -> std::io::Result<()> {
    let mode = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "layer".to_owned());
    let app = Router::new().route("/", get(|| async { "ok" }));
    let app = match mode.as_str() {
        "none" => app,
        "layer" => app.layer(RequestScopeLayer::new()),
        "registered" => app.layer(RequestScopeLayer::new().register(true)),
        other => {
            eprintln!("layer_load: unknown mode {other:?}: use none, layer or registered");
            std::process::exit(2);
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("listening {}", listener.local_addr()?.port());
            std::io::stdout().flush()?;
            axum::serve(listener, app).await
        })
}
