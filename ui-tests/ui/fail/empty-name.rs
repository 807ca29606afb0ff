use cancelable::{cancellable, Cancelled};

#[cancellable(name = "")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
