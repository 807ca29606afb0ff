use cancelable::{cancellable, Cancelled};

trait Job {
    #[cancellable(timeout = "5s")]
    async fn run(&self) -> Result<(), Cancelled>;
}

fn main() {}
