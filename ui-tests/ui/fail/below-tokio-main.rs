use cancelable::{cancellable, Cancelled};

#[tokio::main(flavor = "current_thread")]
#[cancellable(timeout = "5s")]
async fn main() -> Result<(), Cancelled> {
    Ok(())
}
