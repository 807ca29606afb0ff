use cancelable::{cancellable, Cancelled};

#[cancellable(grace = "-2s")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable(grace = -2)]
async fn bare() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
