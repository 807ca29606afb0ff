use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s", timeout = "10s")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
