use std::future::Future;

use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s")]
fn fetch(n: u32) -> impl Future<Output = Result<u32, Cancelled>> + Send {
    async move { Ok(n) }
}

fn main() {
    drop(fetch(1));
}
