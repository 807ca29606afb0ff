use cancelable::{cancellable, Cancelled};

#[cancellable(on_signal = ["Interrupt", "SIGTREM"])]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {}
