use cancelable::{cancellable, Cancelled};

trait Job {
    async fn run(&self, input: u32) -> Result<u32, Cancelled>;

    #[cancellable(timeout = "1s")]
    async fn run_twice(&self, input: u32) -> Result<u32, Cancelled> {
        let once = self.run(input).await?;
        self.run(once).await
    }
}

struct Double;

impl Job for Double {
    #[cancellable(timeout = "5s", name = "double")]
    async fn run(&self, input: u32) -> Result<u32, Cancelled> {
        Ok(input * 2)
    }
}

fn main() {
    drop(Double.run(1));
    drop(Double.run_twice(1));
}
