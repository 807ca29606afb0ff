use cancelable::{cancellable, Cancelled};

const LIMIT_SECS: u64 = 5;

#[cancellable(timeout = LIMIT_SECS)]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
