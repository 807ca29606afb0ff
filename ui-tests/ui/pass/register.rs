#![deny(warnings)]

use cancelable::{cancellable, current_scope, registry, Cancelled};

#[cancellable(register = true, name = "indexer")]
async fn indexer() -> Result<bool, Cancelled> {
    let id = current_scope().expect("inside its scope").id();
    Ok(registry::global().get(id).is_some())
}

#[cancellable(register = false)]
async fn unregistered() -> Result<bool, Cancelled> {
    let id = current_scope().expect("inside its scope").id();
    Ok(registry::global().get(id).is_some())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert!(runtime.block_on(indexer()).unwrap());
    assert!(!runtime.block_on(unregistered()).unwrap());
}
