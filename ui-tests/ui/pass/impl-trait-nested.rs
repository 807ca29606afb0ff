use std::fmt::{Debug, Display};

use cancelable::{cancellable, Cancelled};

// `impl Trait` nested in the return type: in an associated-type binding of another
// `impl Trait` or of a `dyn` type, in a tuple, in a generic argument.
#[cancellable(timeout = "1s")]
async fn doubled(limit: u32) -> Result<impl Iterator<Item = impl Display>, Cancelled> {
    Ok((0..limit).map(|n| n * 2))
}

#[cancellable(timeout = "1s")]
async fn boxed(limit: u32) -> Result<Box<dyn Iterator<Item = impl Display>>, Cancelled> {
    Ok(Box::new((0..limit).map(|n| n * 2)))
}

#[cancellable(timeout = "1s")]
async fn pair(x: u8) -> Result<(impl Display, Vec<impl Debug>), Cancelled> {
    Ok((x, vec![x]))
}

fn main() {
    drop(doubled(3));
    drop(boxed(3));
    drop(pair(1));
}
