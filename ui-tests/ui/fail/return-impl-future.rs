use std::future::Future;

use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s")]
async fn fetch(n: u32) -> impl Future<Output = Result<u32, Cancelled>> {
    async move { Ok(n) }
}

fn main() {}
