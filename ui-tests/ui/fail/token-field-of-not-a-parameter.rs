use cancelable::{cancellable, CancellationToken, Cancelled};

pub struct Job {
    pub token: CancellationToken,
}

#[cancellable(token = jobs.token)]
async fn process(job: Job) -> Result<(), Cancelled> {
    let _ = job;
    Ok(())
}

fn main() {}
