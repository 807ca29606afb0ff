//! `#[cancellable]` above `#[tokio::main]` expands first, on the `async fn`.
use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s")]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Cancelled> {
    Ok(())
}
