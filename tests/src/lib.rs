//! Test harness: each behaviour test is written once and run on every
//! backend of the matrix — tokio current-thread, tokio multi-thread,
//! async-std, smol and `futures::executor::block_on`.
//!
//! ```ignore
//! cancelable_tests::on_every_backend! {
//!     async fn timeout_fires() {
//!         /* ... */
//!     }
//! }
//! ```
//! expands to a module `timeout_fires` with one `#[test]` per backend, so
//! the test output names the backend of each run.

pub mod http;
pub mod redis;

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

/// Generous bound after which a hung test aborts the whole binary with a
/// message, instead of hanging CI.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// Sleeps on any backend (the executor-neutral `async-io` timer).
pub async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}

/// Runs `run` with a watchdog that aborts the process if it hangs.
pub fn with_watchdog<T>(name: &str, run: impl FnOnce() -> T) -> T {
    let (done, wait) = mpsc::channel::<()>();
    let name = name.to_owned();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(WATCHDOG) {
            eprintln!("test `{name}` hung for {WATCHDOG:?}; aborting");
            std::process::abort();
        }
    });
    let output = run();
    let _ = done.send(());
    let _ = watchdog.join();
    output
}

/// Runs `body` on a tokio current-thread runtime (time enabled).
pub fn tokio_current_thread<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body)
}

/// Runs `body` as a task on a two-worker tokio multi-thread runtime.
pub fn tokio_multi_thread<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let task = runtime.spawn(body);
    match runtime.block_on(task) {
        Ok(output) => output,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Runs `body` as a task on async-std.
pub fn async_std<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    assert_no_tokio();
    async_std::task::block_on(async_std::task::spawn(body))
}

/// Runs `body` as a task on a smol executor driven by this thread.
pub fn smol<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    assert_no_tokio();
    let executor = smol::LocalExecutor::new();
    smol::block_on(executor.run(executor.spawn(body)))
}

/// Runs `body` with `futures::executor::block_on`.
pub fn block_on<F: Future>(body: F) -> F::Output {
    assert_no_tokio();
    futures::executor::block_on(body)
}

/// The non-tokio backends must run without any tokio context, which is
/// what proves no tokio-only primitive is reached there.
fn assert_no_tokio() {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "a tokio runtime is entered on a non-tokio backend test"
    );
}

/// Defines each `async fn` as a module with one test per backend.
#[macro_export]
macro_rules! on_every_backend {
    ($($tests:tt)*) => {
        $crate::on_every_backend_with! { guard = (); $($tests)* }
    };
}

/// [`on_every_backend!`] with `guard` evaluated and held around each run
/// (outside the body, which must be `Send`: a `std` mutex guard serialising
/// the tests of a binary, say).
#[macro_export]
macro_rules! on_every_backend_with {
    (guard = $guard:expr; $( $(#[$meta:meta])* async fn $name:ident() $body:block )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body() $body

                // The backends: each is the name of a runner of this crate
                // and of the test that runs the body with it.
                $crate::__test_per_backend! {
                    $name, $guard;
                    tokio_current_thread,
                    tokio_multi_thread,
                    async_std,
                    smol,
                    block_on,
                }
            }
        )*
    };
}

/// Not public API: one `#[test]` per backend runner named in the list,
/// running the `body()` of the module it expands in.
#[doc(hidden)]
#[macro_export]
macro_rules! __test_per_backend {
    ($name:ident, $guard:expr; $($backend:ident,)*) => {
        $(
            #[test]
            fn $backend() {
                let _guard = $guard;
                $crate::with_watchdog(concat!(stringify!($name), "::", stringify!($backend)), || {
                    $crate::$backend(body())
                })
            }
        )*
    };
}

/// Pends exactly once, waking itself first: the smallest body that makes
/// a scope arm its timers and sources.
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
