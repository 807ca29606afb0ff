use cancelable::{cancellable, CancellationToken, Cancelled};

#[cancellable(token = tok)]
async fn job(token: CancellationToken, n: u32) -> Result<u32, Cancelled> {
    let _ = token;
    Ok(n)
}

fn main() {}
