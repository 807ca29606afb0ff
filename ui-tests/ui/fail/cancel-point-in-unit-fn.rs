use cancelable::cancel_point;

async fn tick(items: &[u64]) {
    for _ in items {
        cancel_point!();
    }
}

fn main() {
    drop(tick(&[1, 2, 3]));
}
