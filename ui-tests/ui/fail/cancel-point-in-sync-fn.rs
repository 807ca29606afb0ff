use cancelable::{cancel_point, Cancelled};

fn crunch(items: &[u64]) -> Result<u64, Cancelled> {
    let mut sum = 0;
    for item in items {
        cancel_point!();
        sum += item;
    }
    Ok(sum)
}

fn main() {
    let _ = crunch(&[1, 2, 3]);
}
