use cancelable::{cancellable, Cancelled};

#[cancellable(on_signal = ["sigint", "TERM"])]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
