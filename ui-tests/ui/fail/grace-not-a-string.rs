use cancelable::{cancellable, Cancelled};

#[cancellable(grace = 2)]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable(grace = true)]
async fn flag() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
