use cancelable::{cancellable, Cancelled};

#[cancellable(register = "yes")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
