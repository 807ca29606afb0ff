use cancelable::{cancellable, Cancelled};

// The names `cancelable::Signal::from_str` reads: any case, `SIG` optional,
// surrounding whitespace ignored.
#[cancellable(on_signal = ["sigint", "TERM", " SigHup ", "Sigquit", "usr1", "SIGUSR2"])]
async fn job() -> Result<(), Cancelled> {
    Ok(())
}

fn main() {
    drop(job());
}
