//! `cancel_point!()` in an async block whose error type is named.

use cancelable::{cancel_point, CancelScope, Cancelled};

async fn crunch(items: Vec<u64>) -> Result<u64, Cancelled> {
    let work = async move {
        let mut sum = 0;
        for item in items {
            cancel_point!();
            sum += item;
        }
        Ok::<_, Cancelled>(sum)
    };
    CancelScope::new().try_run(work).await
}

fn main() {
    drop(crunch(vec![1, 2, 3]));
}
