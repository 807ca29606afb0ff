use cancelable::{cancellable, Cancelled};

#[cancellable(on_signal = [])]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
