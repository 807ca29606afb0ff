//! Scale (being written).
fn main() {}
