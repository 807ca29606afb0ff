//! Test harness: each behaviour test is written once and run on every
//! backend of the matrix — tokio current-thread, tokio multi-thread,
//! async-std, smol and `futures::executor::block_on` — by the testing
//! kit's runner (`cancelable::testing`, feature `testing`).
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

pub mod child_output;
pub mod executor;
pub mod http;
pub mod live;
pub mod redis;

pub use live::{drop_flag, DropFlag, Live, LiveGuard};

// The harness is the public testing kit's backend runner
// (`cancelable::testing`); re-exported so the tests name it as before.
pub use cancelable::testing::{
    async_std, block_on, sleep, smol, tokio_current_thread, tokio_multi_thread, with_watchdog,
    yield_once, WATCHDOG,
};
pub use cancelable::{on_every_backend, on_every_backend_with};

/// Waits (really, blocking the calling thread: call it from a thread of
/// its own) until `ready` holds; fails the test after a generous 30 s.
pub fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Polls `future` once with a waker nobody listens to: nothing the poll
/// registers (a timer, a waiter) will wake anyone.
pub fn poll_once_by_hand<F: std::future::Future>(
    future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    future.poll(&mut cx)
}
