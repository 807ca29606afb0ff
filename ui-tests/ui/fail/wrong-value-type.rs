use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = 5)]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
