use cancelable::cancellable;

#[cancellable(timeout = "5s")]
async fn job() {}

fn main() {}
