use cancelable::{cancellable, Cancelled};

macro_rules! job {
    ($name:ident, $ret:ty, $timeout:expr, $signal:expr) => {
        #[cancellable(timeout = $timeout, on_signal = $signal)]
        async fn $name() -> $ret {
            Ok(1)
        }
    };
}

job!(generated, Result<u8, Cancelled>, "1s", "SIGINT");

fn main() {
    drop(generated());
}
