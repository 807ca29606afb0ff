use std::sync::atomic::{AtomicBool, Ordering};

use cancelable::{cancel_point, cancellable, CancellationToken, Cancelled};

static STOP: AtomicBool = AtomicBool::new(false);

fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[cancellable(
    timeout = "1m30s",
    on_signal = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"],
    token = token,
    condition = stop_requested,
    check_every = "250ms",
    name = "every-argument",
)]
async fn job(token: CancellationToken, n: u32) -> Result<u32, Cancelled> {
    cancel_point!(token);
    Ok(n)
}

#[cancellable(token = token, condition = || async { STOP.load(Ordering::Relaxed) })]
async fn borrowed_token_async_condition(token: &CancellationToken) -> Result<(), Cancelled> {
    let _ = token;
    Ok(())
}

fn main() {
    drop(job(CancellationToken::new(), 1));
    let token = CancellationToken::new();
    drop(borrowed_token_async_condition(&token));
}
