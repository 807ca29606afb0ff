//! A CLI-style job under `#[cancellable(timeout = "5s", on_signal = "SIGINT")]`
//! on tokio. Press Ctrl-C to stop it; otherwise its 5 s timeout does.
//!
//! `cargo run --example cli_job`

#[tokio::main]
async fn main() {
    println!("backing up 60 files (Ctrl-C stops it)...");
    cancelable_examples::report(cancelable_examples::backup(60).await);
}
