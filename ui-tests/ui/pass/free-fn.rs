use cancelable::{cancel_point, cancellable, Cancelled};

#[cancellable]
async fn no_arguments() -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable(timeout = "5s", on_signal = "SIGINT")]
async fn crunch(items: Vec<u64>) -> Result<u64, Cancelled> {
    let mut sum = 0;
    for item in items {
        cancel_point!();
        sum += item;
    }
    no_arguments().await?;
    Ok(sum)
}

#[cancellable()]
pub async fn early_return(n: u32) -> Result<u32, Cancelled> {
    if n == 0 {
        return Ok(0);
    }
    Ok(n - 1)
}

fn main() {
    drop(crunch(vec![1, 2, 3]));
    drop(early_return(1));
}
