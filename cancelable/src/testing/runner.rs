//! The backend runner: one async test body, one `#[test]` per backend.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

/// How long a test run by [`on_every_backend!`](crate::on_every_backend)
/// may take before the watchdog aborts the whole test binary with a
/// message naming it, instead of hanging CI.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// Sleeps for `duration` of real time on any backend (the
/// executor-neutral `async-io` timer), whatever clock scopes follow — the
/// [`ManualClock`](super::ManualClock) does not move it.
pub async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}

/// Pends exactly once, waking itself first: the smallest body that makes
/// a scope arm its timers and sources, and lets other tasks of the
/// executor run.
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

/// Runs `run` under a watchdog that aborts the process, naming `name`, if
/// it takes longer than [`WATCHDOG`].
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

/// Runs `body` on a tokio current-thread runtime (all drivers enabled).
pub fn tokio_current_thread<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio current-thread runtime")
        .block_on(body)
}

/// Runs `body` as a task on a two-worker tokio multi-thread runtime; a
/// panic of the body is resumed on the calling thread.
pub fn tokio_multi_thread<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build a tokio multi-thread runtime");
    let task = runtime.spawn(body);
    match runtime.block_on(task) {
        Ok(output) => output,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Runs `body` as an async-std task.
pub fn async_std<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    assert_no_tokio();
    async_std::task::block_on(async_std::task::spawn(body))
}

/// Runs `body` as a task of a smol (`async-executor`) executor driven by
/// this thread.
pub fn smol<F>(body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    assert_no_tokio();
    let executor = async_executor::LocalExecutor::new();
    async_io::block_on(executor.run(executor.spawn(body)))
}

/// Runs `body` with `futures::executor::block_on`.
pub fn block_on<F: Future>(body: F) -> F::Output {
    assert_no_tokio();
    futures_executor::block_on(body)
}

/// The non-tokio backends must run without any tokio context, which is
/// what proves no tokio-only primitive is reached there.
fn assert_no_tokio() {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "a tokio runtime is entered on a non-tokio backend test"
    );
}

/// Defines each `async fn` as a module with one `#[test]` per backend —
/// tokio current-thread, tokio multi-thread, async-std, smol and
/// `futures::executor::block_on` — so the test output names the backend
/// of each run. Feature `testing`.
///
/// The body must be `Send` (it runs as a task on the multi-threaded
/// backends); each run has a [`WATCHDOG`](crate::testing::WATCHDOG).
/// Attributes (`#[ignore]`, doc comments) apply to the module.
///
/// ```
/// # mod wrapper {
/// use std::time::Duration;
/// use cancelable::{CancelReason, CancelScope};
///
/// cancelable::on_every_backend! {
///     /// A timeout cancels a body that never ends.
///     async fn timeout_fires() {
///         let outcome = CancelScope::new()
///             .timeout(Duration::from_millis(10))
///             .run(std::future::pending::<()>())
///             .await;
///         assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Timeout);
///     }
/// }
/// // Expands to `mod timeout_fires { #[test] fn tokio_current_thread() { .. } .. }`.
/// # }
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
macro_rules! on_every_backend {
    ($($tests:tt)*) => {
        $crate::on_every_backend_with! { guard = (); $($tests)* }
    };
}

/// [`on_every_backend!`] with `guard` evaluated and held around each run,
/// outside the body (which must be `Send`): a `std` mutex guard serialising
/// the tests of a binary, say. Feature `testing`.
///
/// ```
/// # mod wrapper {
/// use std::sync::{Mutex, MutexGuard, PoisonError};
///
/// static SERIAL: Mutex<()> = Mutex::new(());
///
/// fn serial() -> MutexGuard<'static, ()> {
///     SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
/// }
///
/// cancelable::on_every_backend_with! {
///     guard = serial();
///     async fn runs_alone() {}
/// }
/// # }
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
macro_rules! on_every_backend_with {
    (guard = $guard:expr; $( $(#[$meta:meta])* async fn $name:ident() $body:block )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body() $body

                // The backends: each is the name of a runner of
                // `cancelable::testing` and of the test that runs the body with it.
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
                $crate::testing::with_watchdog(
                    ::core::concat!(::core::stringify!($name), "::", ::core::stringify!($backend)),
                    || $crate::testing::$backend(body()),
                )
            }
        )*
    };
}
