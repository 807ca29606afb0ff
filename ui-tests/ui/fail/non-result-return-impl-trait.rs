use cancelable::cancellable;

#[cancellable(timeout = "5s")]
async fn numbers() -> impl Iterator<Item = u32> {
    0..10
}

fn main() {}
