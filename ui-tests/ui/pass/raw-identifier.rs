use cancelable::{cancellable, Cancelled};

#[cancellable]
async fn r#type(r#ref: u8) -> Result<u8, Cancelled> {
    Ok(r#ref)
}

fn main() {
    drop(r#type(1));
}
