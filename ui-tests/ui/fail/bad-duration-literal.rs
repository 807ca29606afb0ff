use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5 parsecs")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
