use cancelable::{cancellable, Cancelled};

#[cancellable(crate = "my cancelable")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
