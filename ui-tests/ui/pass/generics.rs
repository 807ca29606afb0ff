use std::fmt::Debug;

use cancelable::{cancellable, Cancelled};

#[derive(Debug)]
enum Error {
    Cancelled(Cancelled),
}

impl From<Cancelled> for Error {
    fn from(cancelled: Cancelled) -> Self {
        Error::Cancelled(cancelled)
    }
}

#[cancellable(timeout = "1s")]
async fn largest<T: PartialOrd + Copy + Send, const N: usize>(
    items: [T; N],
) -> Result<Option<T>, Error> {
    Ok(items.into_iter().fold(None, |max, x| match max {
        Some(m) if m >= x => Some(m),
        _ => Some(x),
    }))
}

#[cancellable(timeout = "1s")]
async fn describe<T, E>(value: T) -> Result<String, E>
where
    T: Debug + Send,
    E: From<Cancelled>,
{
    Ok(format!("{value:?}"))
}

struct Wrapper<T>(T);

impl<T: Clone + Send + Sync> Wrapper<T> {
    #[cancellable]
    async fn get<U>(&self, extra: U) -> Result<(T, U), Error>
    where
        U: Send,
    {
        Ok((self.0.clone(), extra))
    }
}

fn main() {
    drop(largest([1, 5, 3]));
    drop(describe::<_, Error>(1));
    let wrapper = Wrapper(1u8);
    drop(wrapper.get("x"));
}
