use cancelable::{cancellable, Cancelled};

#[cancellable(token = n)]
async fn job(n: u32) -> Result<u32, Cancelled> {
    Ok(n)
}

fn main() {}
