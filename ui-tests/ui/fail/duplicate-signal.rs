use cancelable::{cancellable, Cancelled};

#[cancellable(on_signal = ["SIGINT", "SIGTERM", "SIGINT"])]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
