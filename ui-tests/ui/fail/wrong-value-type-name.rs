use cancelable::{cancellable, Cancelled};

#[cancellable(name = job)]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
