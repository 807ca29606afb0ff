use cancelable::{cancellable, Cancelled};

struct Worker {
    count: u32,
}

impl Worker {
    #[cancellable(token = self.count)]
    async fn run(&self) -> Result<(), Cancelled> {
        Ok(())
    }
}

fn main() {}
