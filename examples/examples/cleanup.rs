//! Cleaning up after cancellation: a grace period, cancellation-aware
//! sleeps and a shielded cleanup.
//!
//! Two copies are cancelled by their timeout. The first one's cleanup fits
//! in its grace period and runs to its end; the second one's takes longer
//! than its grace period, and is dropped when the grace runs out. Ends on
//! its own in about a second.
//!
//! `cargo run --example cleanup`

use std::time::Duration;

use cancelable::{cancel_point, shield, sleep, CancelScope, Cancelled};

/// Copies a file every 20 ms until the scope is cancelled.
async fn copy_each_file(copied: &mut usize) -> Result<(), Cancelled> {
    loop {
        cancel_point!();
        // A cancellation-aware wait: `Err` as soon as the scope is
        // cancelled.
        sleep(Duration::from_millis(20)).await?;
        *copied += 1;
    }
}

/// Copies files until the scope is cancelled, then flushes for `flush`.
async fn copy_files(flush: Duration) -> Result<usize, Cancelled> {
    let mut copied = 0;
    let cancelled = copy_each_file(&mut copied)
        .await
        .expect_err("the loop only ends when cancelled");
    println!(
        "  cancelled after {copied} files ({}); flushing...",
        cancelled.reason()
    );
    // The cleanup's own awaits run to their end: the shield hides the
    // cancellation from them.
    shield(async {
        let _ = sleep(flush).await;
        println!("  flushed");
    })
    .await;
    Err(cancelled)
}

#[tokio::main]
async fn main() {
    for (flush, grace) in [
        (Duration::from_millis(100), Duration::from_millis(500)),
        (Duration::from_secs(10), Duration::from_millis(300)),
    ] {
        println!("copying for 200ms, flush takes {flush:?}, grace period {grace:?}:");
        let outcome = CancelScope::new()
            .name("copy")
            .timeout(Duration::from_millis(200))
            .grace(grace)
            .try_run(copy_files(flush))
            .await;
        match outcome {
            Ok(copied) => println!("  copied {copied} files"),
            Err(cancelled) => println!("  {cancelled}"),
        }
    }
}
