//! Runnable examples of cancelable: see `examples/`. This library holds the
//! job both CLI examples run, to show that the same annotated code runs
//! unchanged on tokio and on smol.

use std::time::Duration;

use cancelable::{cancel_point, cancellable, Cancelled};

/// Copies `files` files, 100 ms each, printing progress.
///
/// The scope gives it 5 seconds and listens for Ctrl-C: with more than
/// about 50 files it is cancelled by the timeout.
#[cancellable(timeout = "5s", on_signal = "SIGINT")]
pub async fn backup(files: u32) -> Result<u32, Cancelled> {
    for file in 1..=files {
        // Leaves with Err(Cancelled) once the timeout passed or Ctrl-C came.
        cancel_point!();
        // Stands for real work; the async-io timer runs on any executor.
        async_io::Timer::after(Duration::from_millis(100)).await;
        cancelable::report_progress(f64::from(file) / f64::from(files), format!("{file} files"));
        if file % 10 == 0 {
            println!("  copied {file}/{files} files");
        }
    }
    Ok(files)
}

/// Prints how the job ended, and why.
pub fn report(outcome: Result<u32, Cancelled>) {
    match outcome {
        Ok(files) => println!("backup finished: {files} files copied"),
        Err(cancelled) => {
            println!("backup stopped: {cancelled}");
            if cancelled.is_timeout() {
                println!("(the 5 s budget ran out; press Ctrl-C next time to stop it sooner)");
            }
        }
    }
}
