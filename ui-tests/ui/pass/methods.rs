use std::time::Duration;

use cancelable::{cancellable, Cancelled};

struct Worker {
    done: u32,
    limit: Duration,
}

impl Worker {
    #[cancellable(timeout = "1s")]
    async fn by_ref(&self) -> Result<u32, Cancelled> {
        Ok(self.done)
    }

    #[cancellable(timeout = self.limit)]
    async fn by_mut_ref(&mut self) -> Result<u32, Cancelled> {
        self.done += 1;
        Ok(self.done)
    }

    #[cancellable(timeout = "1s")]
    async fn by_value(self) -> Result<Worker, Cancelled> {
        Ok(self)
    }

    #[cancellable]
    async fn associated(done: u32) -> Result<Self, Cancelled> {
        Ok(Self {
            done,
            limit: Duration::from_secs(1),
        })
    }

    #[cancellable]
    async fn typed_receiver(self: Box<Self>) -> Result<u32, Cancelled> {
        Ok(self.done)
    }
}

fn main() {
    let mut worker = Worker {
        done: 0,
        limit: Duration::from_secs(1),
    };
    drop(worker.by_ref());
    drop(worker.by_mut_ref());
    drop(
        Box::new(Worker {
            done: 0,
            limit: Duration::from_secs(1),
        })
        .typed_receiver(),
    );
    drop(worker.by_value());
    drop(Worker::associated(1));
}
