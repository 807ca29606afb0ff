use cancelable::{cancellable, Cancelled};

#[cancellable(on_signal = "SIGKILL")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
