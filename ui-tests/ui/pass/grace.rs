//! `grace`: a duration string (zero means no grace period) or a `Duration`
//! expression, beside the other arguments.

use std::time::Duration;

use cancelable::{cancellable, Cancelled};

struct Worker {
    grace: Duration,
}

#[cancellable(timeout = "5s", grace = "2s")]
async fn literal() -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable(grace = "0s")]
async fn zero_is_none() -> Result<(), Cancelled> {
    Ok(())
}

impl Worker {
    #[cancellable(on_signal = "SIGINT", grace = self.grace)]
    async fn expression(&self) -> Result<(), Cancelled> {
        Ok(())
    }
}

fn main() {
    drop(literal());
    drop(zero_is_none());
    let worker = Worker {
        grace: Duration::from_millis(250),
    };
    drop(worker.expression());
}
