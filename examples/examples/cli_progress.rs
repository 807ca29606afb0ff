//! A CLI job with an indicatif progress bar: items processed under
//! `#[cancellable(timeout = "20s", on_signal = "SIGINT")]`, a
//! `cancel_point!()` before each. On Ctrl-C (or the timeout) it stops at
//! the next item, leaves the bar where it stopped (abandoned, not
//! cleared) and prints what was done and why it stopped.
//!
//! `cargo run --example cli_progress`. It ends on its own within seconds:
//! if nobody presses Ctrl-C, it raises SIGINT at itself after 1.5 s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cancelable::{cancel_point, cancellable, Cancelled};
use indicatif::{ProgressBar, ProgressStyle};

/// How many items the job has.
const ITEMS: u64 = 200;

/// Processes every item, 25 ms each (about 5 s in all); `done` counts
/// the items finished, for the summary.
#[cancellable(timeout = "20s", on_signal = "SIGINT")]
async fn process(bar: &ProgressBar, done: &AtomicU64) -> Result<u64, Cancelled> {
    for item in 1..=ITEMS {
        // Leaves with Err(Cancelled) once Ctrl-C came or the timeout passed.
        cancel_point!();
        tokio::time::sleep(Duration::from_millis(25)).await;
        done.store(item, Ordering::Relaxed);
        bar.set_message(format!("item {item}"));
        bar.inc(1);
    }
    Ok(ITEMS)
}

#[tokio::main]
async fn main() {
    let bar = ProgressBar::new(ITEMS);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    println!("processing {ITEMS} items (Ctrl-C stops at the next item)...");

    // Nobody may be at the keyboard: raise SIGINT at ourselves after a
    // moment; press Ctrl-C to beat it.
    #[cfg(unix)]
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(1500));
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGINT);
    });

    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let outcome = process(&bar, &done).await;
    let done = done.load(Ordering::Relaxed);
    let percent = done * 100 / ITEMS;
    match outcome {
        Ok(items) => {
            bar.finish_with_message("all done");
            println!("processed all {items} items in {:.1?}", started.elapsed());
        }
        Err(cancelled) => {
            // The bar stays visible where it stopped.
            bar.abandon_with_message(format!("stopped: {}", cancelled.reason()));
            println!(
                "stopped after {done}/{ITEMS} items ({percent}%) in {:.1?}",
                started.elapsed()
            );
            println!("why: {cancelled}");
            if cancelled.reason().signal().is_some() {
                println!("(Ctrl-C: the items done so far are kept; run again to finish)");
            } else if cancelled.is_timeout() {
                println!("(the 20 s budget ran out)");
            }
        }
    }
}
