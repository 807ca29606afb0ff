use cancelable::cancellable;

mod types {
    pub type Maybe<T> = Option<T>;
}

#[cancellable(timeout = "5s")]
async fn find(n: u32) -> types::Maybe<u32> {
    Some(n)
}

fn main() {}
