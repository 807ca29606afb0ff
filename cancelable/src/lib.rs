//! Structured, runtime-neutral cancellation for async Rust.
//!
//! `cancelable` runs async work inside *cancel scopes*: a timeout, a
//! deadline, an OS signal, a [`CancellationToken`] cancelled from any thread,
//! a polled condition, or any combination of them ends the work with a
//! [`Cancelled`] error that says why. The same code runs on tokio
//! (current-thread and multi-thread), async-std, smol and
//! `futures::executor::block_on`: the backend is detected at run time.
//!
//! ```
//! use cancelable::{cancel_point, cancellable, CancelReason, Cancelled};
//!
//! /// Counts until its scope is cancelled: after 20 ms here.
//! #[cancellable(timeout = "20ms")]
//! async fn crunch() -> Result<u64, Cancelled> {
//!     let mut n = 0u64;
//!     loop {
//!         // Leaves with `Err(Cancelled)` once the scope is cancelled;
//!         // notices a passed deadline even in a loop that awaits nothing else.
//!         cancel_point!();
//!         n = n.wrapping_add(1);
//!     }
//! }
//!
//! # futures::executor::block_on(async {
//! let cancelled = crunch().await.unwrap_err();
//! assert_eq!(cancelled.reason(), &CancelReason::Timeout);
//! # });
//! ```
//!
//! The pieces:
//!
//! * [`macro@cancellable`] — `#[cancellable(timeout = "5s", on_signal = "SIGINT")]`
//!   on an `async fn` runs its body in a scope; misuse is a compile error
//!   on the offending argument.
//! * [`cancel_point!()`](macro@cancel_point) / [`checkpoint`] — cheap cancellation checks inside
//!   loops; [`shield`] — cleanup that cancellation cannot interrupt.
//! * [`CancellationToken`] — clone it anywhere, cancel from any thread,
//!   with a [`CancelReason`] and a message; parent/child trees, tokens
//!   [linked](CancellationToken::linked) to several parents, and
//!   tokio-util's API (drop guards, `run_until_cancelled`).
//! * [`CancelScope`] — runs a future under sources ([`Source`]) and
//!   options, with an [`OperationContext`], callbacks and a [`ScopeHandle`].
//! * [`report_progress`], [`current_token`], [`current_scope`] — reach the
//!   current scope from any code it runs; [`sleep`], [`cancelled`],
//!   [`OrCancelled`] — cancellation-aware waits.
//!
//! The root is that core. Each layer is a module, and its items are
//! reached only through it: [`group`] (task groups), [`stream`],
//! [`blocking`], and behind features `registry`, `http`, `remote`,
//! `testing`.
//!
//! Without the macro, a scope is built and run explicitly; here a token
//! cancelled from another thread ends it:
//!
//! ```
//! use std::time::Duration;
//! use cancelable::{checkpoint, CancelScope, CancellationToken, CancelReason};
//!
//! # futures::executor::block_on(async {
//! let token = CancellationToken::new();
//! let remote = token.clone();
//! std::thread::spawn(move || remote.cancel());
//!
//! let outcome = CancelScope::new()
//!     .name("crunch")
//!     .timeout(Duration::from_secs(5))
//!     .token(&token)
//!     .try_run(async {
//!         let mut n = 0u64;
//!         loop {
//!             // Leaves the loop as soon as the scope is cancelled.
//!             checkpoint().await?;
//!             n = n.wrapping_add(1);
//!         }
//!         #[allow(unreachable_code)]
//!         Ok::<u64, cancelable::Cancelled>(n)
//!     })
//!     .await;
//! let cancelled = outcome.unwrap_err();
//! assert_eq!(cancelled.reason(), &CancelReason::Manual);
//! # });
//! ```
//!
//! The current scope lives in a thread-local that the scope sets around
//! each poll of its body, so it does not follow work spawned onto other
//! tasks (`tokio::spawn`, `smol::spawn`): give such tasks
//! [`current_token`] or a child of it.
//!
//! On tokio, timeouts use tokio's timer, so `tokio::time::pause()` and
//! `advance()` act on scopes as on `tokio::time::timeout`; the runtime
//! needs its time driver enabled (`enable_time()` / `enable_all()`),
//! which tokio gives no way to check.
// `unsafe` is denied everywhere but in the signal dispatcher
// (`source::dispatcher`), which needs `sigaction` to install, read and
// restore signal dispositions, and in the current-scope slot
// (`scope::slot`), which points to a lazy scope's state in its future
// while its body is polled (see the invariants there).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets `#[cancellable]` expansions (which name `::cancelable`) compile
// inside this crate's own tests and doctests.
#[allow(unused_extern_crates)]
extern crate self as cancelable;

// The modules by layer: a module uses modules of the layers above it and
// of its own layer, without cycles (checked by `tests/module_graph.rs`).
//
// Leaf values, sync shims, panic containment, executor primitives:
mod backend;
mod cancelled;
mod context;
mod hooks;
mod panic;
mod reason;
mod signal;
mod spare;
mod sync;
// The seams the layers use beyond the public API (not public API).
#[doc(hidden)]
pub mod seam;
// The token: public API, engine, tokio-util interop.
mod token;
// What can cancel a scope, and how a firing reaches it.
mod source;
// The scope: state, current-scope slot, deadlines, driver, builder, futures.
mod scope;
// Reaching the current scope: checkpoints, accessors; then shields.
mod current;
mod shield;
// Structured concurrency on the scope machinery.
pub mod group;
// Work in flight: cancellation-aware waits (at the root), streams,
// blocking work.
pub mod blocking;
pub mod stream;
// The waits' only documented path is the root; `cancelable::wait::` stays
// reachable, hidden, for one release (a module cannot be deprecated).
#[doc(hidden)]
pub mod wait;
// Services: request scopes for tower, axum and tonic (tokio only).
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod http;
// The testing kit, on everything above.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
// The process-wide operations registry, on the scope machinery.
#[cfg(feature = "registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
pub mod registry;
// Cancellation across processes, over Redis, on the registry.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod remote;

// The root is the core; every item of a layer lives only in its module
// (`group::`, `stream::`, `blocking::`, `registry::`, `http::`, ...).
pub use cancelled::{Cancelled, GraceOutcome};
pub use context::{OperationContext, OperationStatus, Progress};
pub use current::{
    checkpoint, checkpoint_token, current_scope, current_token, report_progress,
    report_progress_with, Checkpoint,
};
pub use reason::{CancelReason, SourceError};
pub use scope::{
    CancelScope, GracePolicy, GraceStart, GraceValue, ScopeHandle, ScopeRun, ScopeTryRun,
};
pub use shield::{shield, Shielded};
pub use signal::{ParseSignalError, SecondSignal, Signal};
pub use source::{AsyncPredicate, BlockingPredicate, Predicate, Source};
#[cfg(feature = "resource")]
#[cfg_attr(docsrs, doc(cfg(feature = "resource")))]
pub use source::{ResourceError, ResourceLimits};
pub use token::{
    CallbackGuard, CancellationToken, DropGuard, DropGuardRef, RunUntilCancelled,
    RunUntilCancelledOwned, WaitForCancellation, WaitForCancellationOwned,
};
pub use wait::{cancelled, sleep, sleep_until, OrCancelled, ScopeCancelled, Sleep};

// The paths of the previous release, kept for one release (CHANGELOG.md).
mod moved;
#[doc(hidden)]
#[allow(deprecated)]
pub use moved::*;

#[doc(inline)]
pub use cancelable_macros::cancellable;

/// A cancellation checkpoint inside an `async fn` or async block: if the
/// current scope is cancelled, returns `Err(From::from(cancelled))` from the
/// enclosing function or block; otherwise goes on.
///
/// `cancel_point!(token)` checks an explicit [`CancellationToken`] instead.
///
/// * The enclosing function must return `Result<T, E>` with
///   `E: From<Cancelled>`. In an async block the block's error type must be
///   nameable: end it with `Ok::<_, MyError>(..)`. Otherwise the compile
///   error, on the `cancel_point!()`, says which of the two is missing.
/// * It contains an `.await`: used in a sync fn the compiler reports E0728,
///   and a `!Send` value held across it makes the future `!Send`.
/// * See [`checkpoint`] for what it costs and how it notices deadlines in
///   loops that never await anything else.
///
/// ```
/// use cancelable::{cancel_point, CancelScope, Cancelled};
///
/// async fn sum(limit: u64) -> Result<u64, Cancelled> {
///     let mut total = 0;
///     for n in 0..limit {
///         cancel_point!();
///         total += n;
///     }
///     Ok(total)
/// }
/// # futures::executor::block_on(async {
/// assert_eq!(CancelScope::new().try_run(sum(10)).await.unwrap(), 45);
/// # });
/// ```
// The `|| panic!()` is never called: it only names the error type for the
// compiler's diagnostics (see `__private::cancel_point_return`).
#[macro_export]
macro_rules! cancel_point {
    () => {
        if let ::core::result::Result::Err(__cancelable_cancelled) =
            $crate::__private::checkpoint().await
        {
            return $crate::__private::cancel_point_return(
                __cancelable_cancelled,
                || ::core::panic!(),
            );
        }
    };
    ($token:expr $(,)?) => {
        if let ::core::result::Result::Err(__cancelable_cancelled) =
            $crate::__private::checkpoint_token(&$token).await
        {
            return $crate::__private::cancel_point_return(
                __cancelable_cancelled,
                || ::core::panic!(),
            );
        }
    };
}

/// Items the macros expand to. **Not public API**: no semver guarantees.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// `Box<dyn Error + Send + Sync>` already converts from `Cancelled` through
/// the standard `From<E: Error>` impl; this checks it stays so.
#[cfg(test)]
fn _boxed_errors_convert(cancelled: Cancelled) -> Box<dyn std::error::Error + Send + Sync> {
    cancelled.into()
}

#[cfg(test)]
mod sizes {
    use std::mem::size_of;

    /// Every checkpoint returns `Result<(), Cancelled>`: it must stay one
    /// pointer wide (a fat error made checkpoints twice as slow).
    #[test]
    fn a_checkpoint_result_is_one_pointer_wide() {
        assert_eq!(
            size_of::<Result<(), crate::Cancelled>>(),
            size_of::<usize>()
        );
    }

    /// A pending scope's own state stays small: a million of them are
    /// expected to fit in memory next to their bodies.
    #[test]
    fn scope_state_stays_small() {
        // The `tracing` feature adds the scope's span.
        let run_bound = if cfg!(feature = "tracing") { 200 } else { 160 };
        let run = size_of::<crate::ScopeRun<std::future::Pending<()>>>();
        assert!(run <= run_bound, "ScopeRun is {run} bytes");
        assert!(size_of::<crate::scope::ScopeShared>() <= 160);
        // With its `Arc` counts, a node within glibc's fast bins (chunks
        // up to 128 bytes).
        assert!(size_of::<crate::token::TokenInner>() <= 96);
        assert_eq!(size_of::<crate::CancellationToken>(), size_of::<usize>());
    }
}
