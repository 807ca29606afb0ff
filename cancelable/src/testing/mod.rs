//! The testing kit (feature `testing`): what you need to test your own
//! cancellation paths, on every backend.
//!
//! * [`on_every_backend!`](crate::on_every_backend) — one async test body,
//!   one `#[test]` per backend: tokio current-thread, tokio multi-thread,
//!   async-std, smol, `futures::executor::block_on` (the runners are here:
//!   [`tokio_current_thread`], [`tokio_multi_thread`], [`async_std`](fn@async_std),
//!   [`smol`](fn@smol), [`block_on`]), with a [`WATCHDOG`] per run.
//! * [`OperationRecorder`] — records the start, progress, cancellation and
//!   completion of scopes and asserts on their order.
//! * [`assert_cancelled_within`] — the `Cancelled` of a future that must
//!   be cancelled (its error a `Cancelled`, a `GroupError`, any
//!   [`AsCancelled`]), or a panic saying what happened instead.
//! * [`CancelAfterCheckpoints`] — a scope cancelled at its `n`-th
//!   cancellation point (checkpoints, `cancel_point!`, cancellation-aware
//!   waits, stream pulls): loop `n = 0..` to hit every one of a body.
//! * [`ManualClock`] — a clock that moves only when advanced and drives
//!   scope deadlines on every backend, with no real waiting.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! cancelable = { version = "0.1", features = ["testing"] }
//! ```
//!
//! The feature costs the rest of the crate one atomic load per clock read,
//! per checkpoint and per cancellation-aware wait or stream pull while no
//! manual clock or checkpoint counter is in use, and nothing when it is
//! off.

mod assert;
mod checkpoints;
mod clock;
mod recorder;
mod runner;

pub use assert::{assert_cancelled_within, AsCancelled};
pub use checkpoints::CancelAfterCheckpoints;
pub use clock::ManualClock;
pub use recorder::{Event, EventKind, OperationRecorder};
pub use runner::{
    async_std, block_on, sleep, smol, tokio_current_thread, tokio_multi_thread, with_watchdog,
    yield_once, WATCHDOG,
};

/// How many tasks the crate keeps on `runtime` for scope deadlines: one
/// small driver task per thread of the runtime on which a scope with a
/// deadline or a grace period pended, alive until the runtime shuts down
/// (see the crate's docs on deadlines). A test that counts a runtime's
/// live tasks (`RuntimeMetrics::num_alive_tasks`) to show that nothing of
/// its own is left subtracts these.
///
/// ```
/// use std::time::Duration;
/// use cancelable::CancelScope;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// runtime.block_on(async {
///     // A scope with a deadline that pends: its thread's driver starts.
///     let _ = CancelScope::new()
///         .timeout(Duration::from_millis(1))
///         .run(std::future::pending::<()>())
///         .await;
/// });
/// let drivers = cancelable::testing::deadline_driver_tasks(runtime.handle());
/// assert_eq!(drivers, 1);
/// assert_eq!(runtime.metrics().num_alive_tasks(), drivers);
/// ```
pub fn deadline_driver_tasks(runtime: &tokio::runtime::Handle) -> usize {
    crate::scope::seam::deadline_drivers(runtime.id())
}
