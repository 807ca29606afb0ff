use cancelable::{cancellable, Cancelled};

#[cancellable(grace = "2 fortnights")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable(grace = "soon")]
async fn vague() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
