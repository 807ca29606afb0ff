//! `crate = "..."` for a `cancelable` reached through another path.

mod deps {
    pub use cancelable as rt;
}

use deps::rt::{cancellable, Cancelled};

#[cancellable(crate = "crate::deps::rt", timeout = "1s", on_signal = "SIGTERM")]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

mod nested {
    use cancelable as renamed;

    #[renamed::cancellable(crate = "renamed")]
    pub(crate) async fn job() -> Result<(), renamed::Cancelled> {
        Ok(())
    }
}

fn main() {
    drop(job());
    drop(nested::job());
}
