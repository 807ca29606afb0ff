use cancelable::cancellable;

#[cancellable(timeout = "5s")]
struct Job {
    steps: u32,
}

fn main() {
    let _ = Job { steps: 1 }.steps;
}
