#![deny(unused_qualifications)]

use std::future::Ready;
use std::option::Option::{self, None, Some};
use std::result::Result;
use std::time::Duration;

use cancelable::__private::{link_token, run, CancelScope, Signal};
use cancelable::{cancellable, CancellationToken, Cancelled};

#[cancellable(timeout = "1s", on_signal = "SIGINT", token = token, condition = || false)]
async fn job(token: CancellationToken) -> Result<Option<u32>, Cancelled> {
    let _ = Duration::from_secs(1);
    Ok(Some(1))
}

fn main() {
    // Every name the expansion qualifies is also in scope unqualified here.
    let _ = (
        run::<Ready<Result<(), Cancelled>>>,
        CancelScope::new,
        link_token::<CancellationToken>,
    );
    let _ = (Signal::Interrupt, None::<u8>);
    drop(job(CancellationToken::new()));
}
