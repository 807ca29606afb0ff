//! A child process for `tests/tests/exit.rs`: runs a scope whose blocking
//! condition predicate never returns, lets the scope time out, and returns
//! from `main`. The process must then exit, on every backend.
//!
//! Usage: `exit-child <backend>`, backend one of `tokio-current-thread`,
//! `tokio-multi-thread`, `async-std`, `smol`, `block-on`.

use std::time::Duration;

use cancelable::{CancelScope, Cancelled};

async fn scope_with_stuck_predicate() -> Result<(), Cancelled> {
    CancelScope::new()
        .timeout(Duration::from_millis(50))
        .condition(
            || -> bool {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            },
            Duration::from_millis(10),
        )
        .run(std::future::pending::<()>())
        .await
}

fn main() {
    let backend = std::env::args().nth(1).unwrap_or_default();
    let outcome = match backend.as_str() {
        "tokio-current-thread" => {
            cancelable_tests::tokio_current_thread(scope_with_stuck_predicate())
        }
        "tokio-multi-thread" => cancelable_tests::tokio_multi_thread(scope_with_stuck_predicate()),
        "async-std" => cancelable_tests::async_std(scope_with_stuck_predicate()),
        "smol" => cancelable_tests::smol(scope_with_stuck_predicate()),
        "block-on" => cancelable_tests::block_on(scope_with_stuck_predicate()),
        other => {
            eprintln!("unknown backend `{other}`");
            std::process::exit(2);
        }
    };
    match outcome {
        Err(cancelled) => println!("ended: {}", cancelled.reason()),
        Ok(()) => println!("ended: completed"),
    }
}
