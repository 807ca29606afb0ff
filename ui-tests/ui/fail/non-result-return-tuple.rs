use cancelable::cancellable;

#[cancellable(timeout = "5s")]
async fn pair() -> (u32, u32) {
    (1, 2)
}

fn main() {}
