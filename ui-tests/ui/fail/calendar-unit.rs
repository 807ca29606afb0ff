use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "1month")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
