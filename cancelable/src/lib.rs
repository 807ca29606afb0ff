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
//! The pieces:
//!
//! * [`macro@cancellable`] — `#[cancellable(timeout = "5s", on_signal = "SIGINT")]`
//!   on an `async fn` runs its body in a scope; misuse is a compile error
//!   on the offending argument.
//! * [`CancellationToken`] — clone it anywhere, cancel from any thread,
//!   with a [`CancelReason`] and a message; parent/child trees.
//! * [`CancelScope`] — runs a future under sources ([`Source`]) and
//!   options, with an [`OperationContext`], callbacks and a [`ScopeHandle`].
//! * [`checkpoint`] / `cancel_point!()` — cheap cancellation checks inside
//!   loops; [`shield`] — cleanup that cancellation cannot interrupt.
//! * [`report_progress`], [`current_token`], [`current_scope`] — reach the
//!   current scope from any code it runs.
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets `#[cancellable]` expansions (which name `::cancelable`) compile
// inside this crate's own tests and doctests.
#[allow(unused_extern_crates)]
extern crate self as cancelable;

mod backend;
mod cancelled;
mod context;
mod current;
mod reason;
#[cfg(feature = "registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
pub mod registry;
mod scope;
mod shield;
mod signal;
mod source;
mod sync;
mod token;

pub use cancelled::Cancelled;
pub use context::{OperationContext, OperationStatus, Progress};
pub use current::{
    checkpoint, checkpoint_token, current_scope, current_token, report_progress,
    report_progress_with, Checkpoint,
};
pub use reason::{CancelReason, SourceError};
pub use scope::{CancelScope, Run, ScopeHandle, TryRun};
pub use shield::{shield, Shielded};
pub use signal::{ParseSignalError, Signal};
pub use source::{AsyncPredicate, BlockingPredicate, Predicate, Source};
pub use token::{CallbackGuard, CancellationToken, WaitForCancellation, WaitForCancellationOwned};

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
///   nameable: end it with `Ok::<_, MyError>(..)`.
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
#[macro_export]
macro_rules! cancel_point {
    () => {
        if let ::core::result::Result::Err(__cancelable_cancelled) =
            $crate::__private::checkpoint().await
        {
            return ::core::result::Result::Err(::core::convert::From::from(
                __cancelable_cancelled,
            ));
        }
    };
    ($token:expr $(,)?) => {
        if let ::core::result::Result::Err(__cancelable_cancelled) =
            $crate::__private::checkpoint_token(&$token).await
        {
            return ::core::result::Result::Err(::core::convert::From::from(
                __cancelable_cancelled,
            ));
        }
    };
}

/// Items the macros expand to. **Not public API**: no semver guarantees.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use crate::{
        checkpoint, checkpoint_token, CancelScope, CancellationToken, Cancelled, Signal,
    };

    /// Not public API. The return type of a `#[cancellable]` function.
    #[diagnostic::on_unimplemented(
        message = "`#[cancellable]` functions must return `Result<T, E>` where `E: From<cancelable::Cancelled>`, but `{Self}` cannot carry a cancellation",
        label = "the error type of this `Result` has no `From<cancelable::Cancelled>` impl",
        note = "add `impl From<cancelable::Cancelled> for YourError`, or return `Result<T, cancelable::Cancelled>`, or an error type that already converts from it such as `Box<dyn std::error::Error + Send + Sync>`"
    )]
    pub trait CancellableResult: Sized {
        /// Not public API.
        fn from_cancelled(cancelled: Cancelled) -> Self;
        /// Not public API.
        fn is_err(&self) -> bool;
    }

    // Without this, an unsatisfied `E: From<Cancelled>` is reported as a
    // plain E0277 listing unrelated `From` impls, and the message above is
    // never shown.
    #[diagnostic::do_not_recommend]
    impl<T, E: From<Cancelled>> CancellableResult for Result<T, E> {
        fn from_cancelled(cancelled: Cancelled) -> Self {
            Err(E::from(cancelled))
        }

        fn is_err(&self) -> bool {
            Result::is_err(self)
        }
    }

    /// Not public API. Runs a `#[cancellable]` body in its scope.
    pub fn run<F>(scope: CancelScope, body: F) -> crate::TryRun<F>
    where
        F: Future,
        F::Output: CancellableResult,
    {
        crate::TryRun::new(scope, body)
    }

    /// Not public API. What `token = param` accepts.
    pub trait LinkToken {
        /// Not public API.
        fn link(&self, scope: CancelScope) -> CancelScope;
    }

    impl LinkToken for CancellationToken {
        fn link(&self, scope: CancelScope) -> CancelScope {
            scope.token(self)
        }
    }

    #[cfg(feature = "tokio-util")]
    impl LinkToken for tokio_util::sync::CancellationToken {
        fn link(&self, scope: CancelScope) -> CancelScope {
            scope.tokio_util_token(self)
        }
    }

    impl<T: LinkToken + ?Sized> LinkToken for &T {
        fn link(&self, scope: CancelScope) -> CancelScope {
            (**self).link(scope)
        }
    }

    /// Not public API. Stands for the `registry` feature in
    /// [`register_scope`]'s bound.
    pub struct RegistryFeature;

    /// Not public API. Implemented for [`RegistryFeature`] only when the
    /// `registry` feature is on, so that `#[cancellable(register = true)]`
    /// without it is an error that says which feature to enable.
    #[diagnostic::on_unimplemented(
        message = "`#[cancellable(register = true)]` needs the `registry` feature of `cancelable`",
        label = "the scope would join the operations registry, which this build leaves out",
        note = "enable the feature: `cancelable = {{ version = \"0.1\", features = [\"registry\"] }}` (it is on by default), or remove `register = true`"
    )]
    pub trait RegistryEnabled {}

    #[cfg(feature = "registry")]
    impl RegistryEnabled for RegistryFeature {}

    /// Not public API. What `register = true` expands to: joins the global
    /// registry.
    ///
    /// Without the `registry` feature the bound is unmet and the build
    /// fails with the message above:
    ///
    #[cfg_attr(feature = "registry", doc = "```")]
    #[cfg_attr(not(feature = "registry"), doc = "```compile_fail")]
    /// #[cancelable::cancellable(register = true)]
    /// async fn job() -> Result<(), cancelable::Cancelled> {
    ///     Ok(())
    /// }
    /// # futures::executor::block_on(job()).unwrap();
    /// ```
    pub fn register_scope<Feature: RegistryEnabled>(scope: CancelScope) -> CancelScope {
        #[cfg(feature = "registry")]
        return scope.register();
        #[cfg(not(feature = "registry"))]
        scope
    }

    /// Not public API. Links `token = param` to the scope.
    pub fn link_token<T: LinkToken + ?Sized>(scope: CancelScope, token: &T) -> CancelScope {
        token.link(scope)
    }
}

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
        let run = size_of::<crate::Run<std::future::Pending<()>>>();
        assert!(run <= run_bound, "Run is {run} bytes");
        assert!(size_of::<crate::scope::ScopeShared>() <= 160);
        assert!(size_of::<crate::token::TokenInner>() <= 112);
        assert_eq!(size_of::<crate::CancellationToken>(), size_of::<usize>());
    }
}
