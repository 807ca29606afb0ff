//! Fans out work with a task group: fetches 12 items concurrently, each
//! with a timeout of its own, cancels the rest on the first error, and
//! prints what finished, what failed and what was cancelled.
//!
//! `cargo run --example fan_out`

use std::time::Duration;

use cancelable::group::{TaskError, TaskGroup};
use cancelable::{checkpoint, CancelScope, Cancelled};
// smol re-exports futures-lite's stream helpers.
use smol::stream::StreamExt;

/// How long fetching item `id` takes, and its time budget: small items
/// get 100 ms, the large ones (8, 9, 11) 400 ms. Item 9 is missing.
fn plan(id: u32) -> (Duration, Duration) {
    const TOOK: [u64; 12] = [40, 70, 180, 30, 260, 60, 90, 300, 150, 20, 320, 110];
    let took = Duration::from_millis(TOOK[id as usize - 1]);
    let budget = if matches!(id, 8 | 9 | 11) { 400 } else { 100 };
    (took, Duration::from_millis(budget))
}

/// Stands for a network fetch.
async fn fetch(id: u32) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (took, _) = plan(id);
    let steps = 10;
    for _ in 0..steps {
        // Leaves as soon as the item's timeout or the group's cancellation
        // shows.
        checkpoint().await?;
        tokio::time::sleep(took / steps).await;
    }
    if id == 9 {
        return Err(format!("item {id}: 404 not found").into());
    }
    Ok(format!("item {id}: {} bytes", id * 100))
}

#[tokio::main]
async fn main() {
    println!("fetching items 1..=12, each with its own timeout, stopping at the first error");
    let outcome = TaskGroup::new()
        .name("fan-out")
        .timeout(Duration::from_secs(5))
        .run(|group| async move {
            let mut results = group.results();
            let mut names = std::collections::HashMap::new();
            for id in 1..=12 {
                let item = CancelScope::new()
                    .name(format!("item {id}"))
                    .timeout(plan(id).1);
                let handle = group.child().in_scope(item).start_soon(fetch(id));
                names.insert(handle.id().expect("started"), id);
            }
            group.close();
            let (mut finished, mut failed, mut cancelled) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(outcome) = results.next().await {
                let id = names[&outcome.id()];
                match outcome.error() {
                    None => {
                        println!("  item {id:>2} finished");
                        finished.push(id);
                    }
                    Some(TaskError::Cancelled(why)) if why.is_timeout() => {
                        println!("  item {id:>2} timed out");
                        cancelled.push(id);
                    }
                    Some(TaskError::Cancelled(why)) => {
                        println!("  item {id:>2} cancelled: {}", why.message().unwrap_or("-"));
                        cancelled.push(id);
                    }
                    Some(error) => {
                        println!("  item {id:>2} failed: {error}");
                        failed.push(id);
                    }
                }
            }
            println!("finished:  {finished:?}");
            println!("failed:    {failed:?}");
            println!("cancelled: {cancelled:?}");
            Ok::<_, Cancelled>(finished.len())
        })
        .await;
    match outcome {
        Ok(count) => println!("all done: {count} items"),
        Err(error) => println!("group ended with: {error}"),
    }
}
