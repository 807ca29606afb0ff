use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s")]
async fn count() -> Result<u32, Cancelled> {
    let n: u32 = 3;
    n
}

fn main() {}
