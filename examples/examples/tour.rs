//! A tour of cancelable: the same kind of job cancelled three ways —
//! by a timeout, by a token cancelled from another thread, and by Ctrl-C.
//!
//! Run it with `cargo run --example tour`. It ends on its own within a few
//! seconds: if nobody presses Ctrl-C, it raises SIGINT at itself.

use std::time::Duration;

use cancelable::{checkpoint, report_progress, CancelScope, CancellationToken, Cancelled, Signal};

/// A job that works in small steps and checks for cancellation between them.
async fn crunch(steps: u32) -> Result<u32, Cancelled> {
    for step in 1..=steps {
        checkpoint().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        report_progress(
            f64::from(step) / f64::from(steps),
            format!("step {step}/{steps}"),
        );
    }
    Ok(steps)
}

fn print_outcome(what: &str, outcome: Result<u32, Cancelled>) {
    match outcome {
        Ok(steps) => println!("{what}: finished all {steps} steps"),
        Err(cancelled) => println!("{what}: {cancelled}"),
    }
}

#[tokio::main]
async fn main() {
    // 1. A timeout: the job needs ~5 s, the scope allows 300 ms.
    let outcome = CancelScope::new()
        .name("timed job")
        .timeout(Duration::from_millis(300))
        .try_run(crunch(100))
        .await;
    print_outcome("1. timeout", outcome);

    // 2. A token cancelled from a plain OS thread, with a message.
    let token = CancellationToken::new();
    let remote = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        remote.cancel_with(cancelable::CancelReason::Manual, "operator pressed stop");
    });
    let outcome = CancelScope::new()
        .name("token job")
        .token(&token)
        .try_run(crunch(100))
        .await;
    print_outcome("2. token", outcome);

    // 3. Ctrl-C. Nobody may be at the keyboard, so the job raises SIGINT at
    //    its own process after a second; press Ctrl-C to beat it.
    println!("3. press Ctrl-C within a second (or wait)...");
    let outcome = CancelScope::new()
        .name("interruptible job")
        .on_signal(Signal::Interrupt)
        .timeout(Duration::from_secs(10))
        .on_progress(|progress| {
            if progress
                .fraction
                .is_some_and(|fraction| (0.1..0.11).contains(&fraction))
            {
                println!("   progress: {}", progress.message);
            }
        })
        .try_run(async {
            let raise = async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                #[cfg(unix)]
                signal_hook::low_level::raise(Signal::Interrupt.number()).expect("raise SIGINT");
                std::future::pending::<()>().await;
                Ok(0)
            };
            tokio::select! {
                outcome = crunch(100) => outcome,
                outcome = raise => outcome,
            }
        })
        .await;
    print_outcome("3. Ctrl-C", outcome);

    // Outside any listening scope, Ctrl-C has its default effect again:
    // it would end this program.
    println!("done: Ctrl-C now ends programs as usual");
}
