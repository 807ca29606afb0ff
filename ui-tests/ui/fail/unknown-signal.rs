use cancelable::{cancellable, Cancelled};

#[cancellable(on_signal = "SIGWINCH")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
