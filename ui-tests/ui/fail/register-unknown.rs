use cancelable::{cancellable, Cancelled};

#[cancellable(register = true)]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
