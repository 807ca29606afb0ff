use std::time::Duration;

use cancelable::{cancellable, Cancelled};

const LIMIT: Duration = Duration::from_millis(1500);

struct Config {
    limit: Duration,
}

#[cancellable(timeout = LIMIT)]
async fn constant() -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable(timeout = Duration::from_secs(u64::from(secs)))]
async fn from_argument(secs: u32) -> Result<(), Cancelled> {
    Ok(())
}

impl Config {
    #[cancellable(timeout = self.limit, check_every = self.limit / 10, condition = || false)]
    async fn from_field(&self) -> Result<(), Cancelled> {
        Ok(())
    }
}

fn main() {
    drop(constant());
    drop(from_argument(1));
    drop(Config { limit: LIMIT }.from_field());
}
