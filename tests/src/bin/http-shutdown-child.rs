//! Child process of the graceful-shutdown tests (`tests/http_shutdown.rs`).
fn main() {}
