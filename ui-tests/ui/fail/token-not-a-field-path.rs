use cancelable::{cancellable, CancellationToken, Cancelled};

struct Worker {
    stop: CancellationToken,
}

impl Worker {
    fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    #[cancellable(token = self.stop())]
    async fn run(&self) -> Result<(), Cancelled> {
        Ok(())
    }
}

fn main() {}
