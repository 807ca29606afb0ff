//! Attributes, doc comments and inner attributes survive the expansion.
#![deny(unused_variables, unused_mut)]

use cancelable::{cancellable, Cancelled};

/// A doc comment.
#[cancellable(timeout = "1s")]
#[cfg(any())]
async fn twice() -> Result<(), Cancelled> {
    // Compiled out by `cfg(any())`: if the attribute were lost, this would be a
    // second definition of `twice`.
    Ok(())
}

/// The one definition of `twice`.
#[cancellable(timeout = "1s")]
#[allow(unused_variables)]
async fn twice(unused: u32) -> Result<(), Cancelled> {
    Ok(())
}

#[cancellable]
async fn inner_attribute(x: u32) -> Result<u32, Cancelled> {
    #![allow(unused_mut)]
    let mut y = x;
    Ok(y)
}

#[cancellable]
#[must_use = "kept"]
#[inline]
#[doc(alias = "runner")]
async fn outer_attributes() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {
    drop(twice(1));
    drop(inner_attribute(1));
    drop(outer_attributes());
}
