use cancelable::cancellable;

#[cancellable(timeout = "5s")]
async fn find(n: u32) -> Option<u32> {
    Some(n)
}

fn main() {}
