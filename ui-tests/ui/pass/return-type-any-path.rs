//! Any path type is accepted as the return type: the compiler checks that it is
//! a `Result` whose error type converts from `Cancelled`, whatever its name.

use cancelable::{cancel_point, cancellable, Cancelled};

#[derive(Debug)]
pub enum AppError {
    Cancelled(Cancelled),
    Empty,
}

impl From<Cancelled> for AppError {
    fn from(cancelled: Cancelled) -> Self {
        AppError::Cancelled(cancelled)
    }
}

type Fallible<T> = Result<T, AppError>;
type Count = Result<usize, AppError>;

mod errors {
    pub type Outcome<T> = Result<T, super::AppError>;
}

#[cancellable(timeout = "5s")]
async fn generic_alias(items: Vec<u32>) -> Fallible<u32> {
    let mut sum = 0;
    for item in items {
        cancel_point!();
        sum += item;
    }
    if sum == 0 {
        return Err(AppError::Empty);
    }
    Ok(sum)
}

#[cancellable]
async fn plain_alias(items: Vec<u32>) -> Count {
    cancel_point!();
    Ok(items.len())
}

#[cancellable]
async fn alias_through_a_module(n: u32) -> errors::Outcome<u32> {
    cancel_point!();
    Ok(n)
}

fn main() {
    drop(generic_alias(vec![1, 2]));
    drop(plain_alias(vec![1, 2]));
    drop(alias_through_a_module(1));
}
