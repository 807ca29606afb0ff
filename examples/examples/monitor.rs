//! A live view of the operations registry: several named operations (some
//! nested, one that ignores its cancellation for a while) run, the registry
//! is printed as a table every second, one operation is cancelled by id,
//! the stubborn one is flagged stuck, and the final statistics show the
//! cancellation lag of each kind of operation.
//!
//! Run it with `cargo run --example monitor`; it ends on its own in about
//! five seconds.

use std::time::Duration;

use cancelable::registry::{self, CancelAnswer, Filter, OperationNode, Registry, RegistryError};
use cancelable::{checkpoint, report_progress, shield, CancelReason, CancelScope, Cancelled};

/// Works in 100 ms steps, reporting progress, until done or cancelled.
async fn steps(total: u32) -> Result<u32, Cancelled> {
    for step in 1..=total {
        checkpoint().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        report_progress(
            f64::from(step) / f64::from(total),
            format!("step {step}/{total}"),
        );
    }
    Ok(total)
}

/// An import with two nested registered stages.
async fn ingest() -> Result<u32, Cancelled> {
    let parse = CancelScope::new()
        .name("parse")
        .register()
        .try_run(steps(20));
    let index = CancelScope::new()
        .name("index")
        .register()
        .try_run(steps(60));
    let (parsed, indexed) = tokio::join!(parse, index);
    Ok(parsed? + indexed?)
}

/// A flush that cancellation cannot interrupt: it runs 3.5 s in a shield,
/// so a cancel at 1 s leaves it running, flagged stuck, until it is done.
async fn stubborn() -> Result<(), Cancelled> {
    shield(async {
        for _ in 0..35 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    Ok(())
}

fn millis(duration: Option<Duration>) -> String {
    match duration {
        None => "-".into(),
        Some(d) if d < Duration::from_millis(1) => format!("{} µs", d.as_micros()),
        Some(d) => format!("{} ms", d.as_millis()),
    }
}

fn print_node(node: &OperationNode, depth: usize) {
    let op = &node.operation;
    let state = if op.stuck {
        "STUCK"
    } else if op.reason.is_some() {
        "cancelling"
    } else {
        "running"
    };
    let name = format!(
        "{}{}",
        "  ".repeat(depth),
        op.name.as_deref().unwrap_or("?")
    );
    let progress = op
        .progress
        .as_ref()
        .and_then(|progress| progress.fraction)
        .map_or_else(
            || "-".into(),
            |fraction| format!("{:.0} %", fraction * 100.0),
        );
    println!(
        "{:>6}  {:<14} {:<10} {:<10} {:>9} {:>10} {:>8} {:>11}",
        op.id,
        name,
        op.key.as_deref().unwrap_or("-"),
        state,
        millis(Some(op.elapsed)),
        millis(op.remaining),
        progress,
        op.checkpoints_since_cancel,
    );
    for child in &node.children {
        print_node(child, depth + 1);
    }
}

fn print_table(registry: &Registry, second: u32) {
    let snapshot = registry.snapshot();
    println!(
        "\n-- t = {second} s: {} live, {} stuck --",
        snapshot.live, snapshot.stuck
    );
    println!(
        "{:>6}  {:<14} {:<10} {:<10} {:>9} {:>10} {:>8} {:>11}",
        "ID", "NAME", "KEY", "STATE", "ELAPSED", "REMAINING", "PROGRESS", "CHECKPOINTS"
    );
    for node in &snapshot.operations {
        print_node(node, 0);
    }
}

#[tokio::main]
async fn main() {
    let registry = registry::global();
    let mut tasks = Vec::new();
    let ingest_scope = CancelScope::new()
        .name("ingest")
        .register()
        .key("ingest-1")
        .expect("the key is free");
    tasks.push(tokio::spawn(ingest_scope.try_run(ingest())));
    tasks.push(tokio::spawn(
        CancelScope::new()
            .name("report")
            .timeout(Duration::from_secs(4))
            .register()
            .try_run(steps(100)),
    ));
    tasks.push(tokio::spawn(async {
        CancelScope::new()
            .name("stubborn")
            .register()
            .try_run(stubborn())
            .await
            .map(|()| 0)
    }));

    for second in 1..=5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if second == 1 {
            // Stop the report by id, as an operator would.
            let report = &registry.list(&Filter::new().name("report").unwrap())[0];
            let answer = registry.cancel(report.id, CancelReason::Manual, "operator request");
            println!("\ncancel report (id {}): {}", report.id, said(answer));
            let stubborn = &registry.list(&Filter::new().name("stub*").unwrap())[0];
            let answer = registry.cancel(stubborn.id, CancelReason::Manual, "shutting down");
            println!("cancel stubborn (id {}): {}", stubborn.id, said(answer));
        }
        print_table(registry, second);
    }

    let cancelled = registry.cancel_all(&Filter::new(), CancelReason::Manual, "demo over");
    println!("\ncancel_all: {cancelled} more cancellations requested");
    for task in tasks {
        let _ = task.await;
    }

    println!("\n-- final statistics --");
    println!(
        "{:<10} {:>9} {:>9} {:>6} {:>12} {:>12} {:>12}",
        "NAME", "COMPLETED", "CANCELLED", "FAILED", "MEAN TIME", "MEAN LAG", "MAX LAG"
    );
    for (name, stats) in &registry.statistics().by_name {
        println!(
            "{:<10} {:>9} {:>9} {:>6} {:>12} {:>12} {:>12}",
            name,
            stats.completed,
            stats.cancelled,
            stats.failed,
            millis(stats.durations.mean()),
            millis(stats.lag.mean()),
            millis(stats.lag.max()),
        );
    }
}

/// What a cancel answered, in words.
fn said(answer: Result<CancelAnswer, RegistryError>) -> String {
    match answer {
        Ok(CancelAnswer::Requested(_)) => "requested (it ends at its next await)".into(),
        Ok(CancelAnswer::AlreadyRequested(_)) => "already requested".into(),
        Ok(CancelAnswer::Ended(finished)) => format!("already ended ({})", finished.status),
        Ok(other) => format!("{other:?}"),
        Err(error) => error.to_string(),
    }
}
