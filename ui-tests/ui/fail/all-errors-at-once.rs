use cancelable::cancellable;

#[cancellable(timeout = "0s", on_signal = "SIGTREM", token = tok, check_every = "1s", retries = 3)]
fn job(n: u32) -> Option<u32> {
    Some(n)
}

fn main() {}
