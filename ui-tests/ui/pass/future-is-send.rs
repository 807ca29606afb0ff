use std::future::Future;

use cancelable::{cancel_point, cancellable, CancellationToken, Cancelled};

fn assert_send<F: Future + Send + 'static>(_: F) {}

#[cancellable(timeout = "1s", on_signal = "SIGINT", token = token, condition = || false)]
async fn job(token: CancellationToken, items: Vec<u32>) -> Result<u32, Cancelled> {
    let mut sum = 0;
    for item in items {
        cancel_point!();
        sum += item;
    }
    Ok(sum)
}

fn main() {
    assert_send(job(CancellationToken::new(), vec![1]));
}
