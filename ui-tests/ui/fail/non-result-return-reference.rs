use cancelable::cancellable;

#[cancellable(timeout = "5s")]
async fn first(items: &[u32]) -> &u32 {
    &items[0]
}

fn main() {}
