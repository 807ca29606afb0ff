//! The expansion is clean under every lint group that applies.
#![deny(
    warnings,
    unused,
    nonstandard_style,
    rust_2018_idioms,
    future_incompatible
)]
#![deny(
    unreachable_pub,
    unused_qualifications,
    unused_results,
    single_use_lifetimes
)]
#![deny(
    trivial_casts,
    trivial_numeric_casts,
    unused_lifetimes,
    let_underscore_drop
)]
#![deny(clippy::all, clippy::pedantic)]

use cancelable::{cancel_point, cancellable, CancellationToken, Cancelled};

#[cancellable(
    timeout = "5s",
    on_signal = ["SIGINT", "SIGTERM"],
    token = token,
    condition = || false,
    check_every = "10ms",
    name = "lint-clean",
)]
async fn job(token: CancellationToken, items: Vec<u64>) -> Result<u64, Cancelled> {
    let mut sum = 0;
    for item in items {
        cancel_point!();
        sum += item;
    }
    Ok(sum)
}

#[cancellable]
async fn never_returns_normally() -> Result<(), Cancelled> {
    loop {
        cancel_point!();
    }
}

#[cancellable]
async fn returns_early(n: u64) -> Result<u64, Cancelled> {
    if n > 1 {
        return Ok(n);
    }
    never_returns_normally().await?;
    Ok(0)
}

fn main() {
    drop(job(CancellationToken::new(), vec![1, 2]));
    drop(returns_early(1));
}
