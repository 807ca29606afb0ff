use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s", check_every = "100ms")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
