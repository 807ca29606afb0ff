//! Cancellation latency (being written).
fn main() {}
