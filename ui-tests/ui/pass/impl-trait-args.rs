use std::fmt::Display;

use cancelable::{cancellable, Cancelled};

#[cancellable(timeout = "1s")]
async fn join(
    items: impl IntoIterator<Item = impl Display>,
    sep: &str,
) -> Result<String, Cancelled> {
    let items: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    Ok(items.join(sep))
}

#[cancellable(timeout = "1s")]
async fn evens(limit: u32) -> Result<impl Iterator<Item = u32>, Cancelled> {
    Ok((0..limit).filter(|n| n % 2 == 0))
}

fn main() {
    drop(join([1, 2, 3], ", "));
    drop(evens(10));
}
