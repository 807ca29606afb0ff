use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "0s")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
