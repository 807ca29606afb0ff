use cancelable::{cancellable, Cancelled};

#[cancellable(timout = "5s")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
