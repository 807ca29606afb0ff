//! `token = ...` names a `CancellationToken` parameter, or a field of one
//! (`self` included).

use cancelable::{cancel_point, cancellable, CancellationToken, Cancelled};

struct Worker {
    stop: CancellationToken,
    inner: Inner,
}

struct Inner {
    stop: CancellationToken,
}

struct Pair(u32, CancellationToken);

pub struct Job {
    pub token: CancellationToken,
    pub n: u32,
}

impl Worker {
    #[cancellable(token = self.stop, timeout = "5s")]
    async fn run(&self, n: u32) -> Result<u32, Cancelled> {
        cancel_point!();
        Ok(n)
    }

    #[cancellable(token = self.inner.stop)]
    async fn nested(&mut self) -> Result<(), Cancelled> {
        cancel_point!();
        Ok(())
    }
}

impl Pair {
    #[cancellable(token = self.1)]
    async fn tuple_field(self) -> Result<u32, Cancelled> {
        Ok(self.0)
    }
}

#[cancellable(token = job.token)]
async fn process(job: Job) -> Result<u32, Cancelled> {
    cancel_point!();
    Ok(job.n)
}

#[cancellable(token = job.token)]
async fn process_by_ref(job: &Job) -> Result<u32, Cancelled> {
    Ok(job.n)
}

fn main() {
    let mut worker = Worker {
        stop: CancellationToken::new(),
        inner: Inner {
            stop: CancellationToken::new(),
        },
    };
    drop(worker.run(1));
    drop(worker.nested());
    drop(Pair(1, CancellationToken::new()).tuple_field());
    let job = Job {
        token: CancellationToken::new(),
        n: 1,
    };
    drop(process_by_ref(&job));
    drop(process(job));
}
