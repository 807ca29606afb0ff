#![deny(dead_code)]

use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "1s", on_signal = "SIGINT", condition = || false)]
async fn job(n: u32) -> Result<u32, Cancelled> {
    Ok(n)
}

fn main() {
    drop(job(1));
}
