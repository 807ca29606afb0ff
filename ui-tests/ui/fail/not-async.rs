use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "5s")]
fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {
    let _ = job();
}
