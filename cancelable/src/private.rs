//! What the macros expand to (`cancelable::__private`). **Not public
//! API**: no semver guarantees. Only re-exports and the traits that carry
//! the macros' diagnostics live here; the scope does not depend on it.

use std::future::Future;

pub use crate::{checkpoint, checkpoint_token, CancelScope, CancellationToken, Cancelled, Signal};

/// Not public API. The return type of a `#[cancellable]` function: a
/// `Result` whose error type is a [`CancellableError`].
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` functions must return `Result<T, E>` where `E: From<cancelable::Cancelled>`, but `{Self}` is not a `Result`",
    label = "this is `{Self}`, which cannot carry a cancellation",
    note = "return `Result<T, cancelable::Cancelled>`, or `Result<T, E>` with an error type `E` that implements `From<cancelable::Cancelled>`"
)]
pub trait CancellableResult: Sized {
    /// Not public API.
    fn from_cancelled(cancelled: Cancelled) -> Self;
    /// Not public API.
    fn is_err(&self) -> bool;
}

// The bound is a trait of ours, not `From<Cancelled>` itself, so that an
// error type without the conversion (e.g. `io::Result`) is reported with
// the message of `CancellableError`, not as a plain E0277 listing
// unrelated `From` impls.
impl<T, E: CancellableError> CancellableResult for Result<T, E> {
    fn from_cancelled(cancelled: Cancelled) -> Self {
        Err(E::from_cancelled(cancelled))
    }

    fn is_err(&self) -> bool {
        Result::is_err(self)
    }
}

/// Not public API. The error type of a `#[cancellable]` function.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` functions must return `Result<T, E>` where `E: From<cancelable::Cancelled>`, but the error type `{Self}` has no `From<cancelable::Cancelled>` impl",
    label = "the error type `{Self}` cannot carry a cancellation",
    note = "use an error type that converts from `cancelable::Cancelled`: `cancelable::Cancelled` itself, `Box<dyn std::error::Error + Send + Sync>`, or your own type with `impl From<cancelable::Cancelled>`"
)]
pub trait CancellableError {
    /// Not public API.
    fn from_cancelled(cancelled: Cancelled) -> Self;
}

// Without this, an unsatisfied `E: From<Cancelled>` is reported as a
// plain E0277 listing unrelated `From` impls, and the message above is
// never shown.
#[diagnostic::do_not_recommend]
impl<E: From<Cancelled>> CancellableError for E {
    fn from_cancelled(cancelled: Cancelled) -> Self {
        E::from(cancelled)
    }
}

/// Not public API. What the function or async block around
/// `cancel_point!()` returns: a `Result`, whatever its error type.
#[diagnostic::on_unimplemented(
    message = "`cancel_point!()` returns `Err(..)` from the enclosing `async fn` or async block, which must return `Result<T, E>` where `E: From<cancelable::Cancelled>`, but it returns `{Self}`",
    label = "this returns `Err(..)` where `{Self}` is expected",
    note = "make the enclosing `async fn` return `Result<T, cancelable::Cancelled>`, or `Result<T, E>` with an error type `E` that implements `From<cancelable::Cancelled>`",
    note = "in an async block, end the block with `Ok::<_, MyError>(..)` so that its type is known"
)]
pub trait CancelPointReturn {
    /// Not public API.
    type Error;
    /// Not public API.
    fn from_error(error: Self::Error) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T, E> CancelPointReturn for Result<T, E> {
    type Error = E;

    fn from_error(error: E) -> Self {
        Err(error)
    }
}

/// Not public API. The error type of the function or async block around
/// `cancel_point!()`.
#[diagnostic::on_unimplemented(
    message = "`cancel_point!()` returns `Err(..)` with an error type that converts from `cancelable::Cancelled`, but the error type here is `{Self}`",
    label = "the error type `{Self}` has no `From<cancelable::Cancelled>` impl",
    note = "in an async block whose error type is not named anywhere, the compiler falls back to `()` or `!`: name it by ending the block with `Ok::<_, MyError>(..)`",
    note = "otherwise use an error type that converts from `cancelable::Cancelled`: `cancelable::Cancelled` itself, `Box<dyn std::error::Error + Send + Sync>`, or your own type with `impl From<cancelable::Cancelled>`"
)]
pub trait CancelPointError {
    /// Not public API.
    fn from_cancelled(cancelled: Cancelled) -> Self;
}

#[diagnostic::do_not_recommend]
impl<E: From<Cancelled>> CancelPointError for E {
    fn from_cancelled(cancelled: Cancelled) -> Self {
        E::from(cancelled)
    }
}

/// Not public API. What `cancel_point!()` returns once cancelled:
/// `Err(E::from(cancelled))` for the enclosing `Result<T, E>`.
///
/// `error_type` is never called: `cancel_point!()` passes
/// `|| panic!()`, whose `!` makes an error type that nothing else names
/// fall back to `()` (or `!`), so that an async block without a named
/// error type gets the message of [`CancelPointError`] instead of a bare
/// "type annotations needed".
#[inline]
pub fn cancel_point_return<R, N>(cancelled: Cancelled, _error_type: N) -> R
where
    R: CancelPointReturn,
    R::Error: CancelPointError,
    N: FnOnce() -> R::Error,
{
    R::from_error(R::Error::from_cancelled(cancelled))
}

/// Not public API. Runs a `#[cancellable]` body in its scope.
pub fn run<F>(scope: CancelScope, body: F) -> crate::ScopeTryRun<F>
where
    F: Future,
    F::Output: CancellableResult,
{
    crate::ScopeTryRun::new(scope, body)
}

/// Not public API. What `token = param` accepts.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable(token = ...)]` expects a `cancelable::CancellationToken`, but this is a `{Self}`",
    label = "expected a `CancellationToken` (or a reference to one), found `{Self}`",
    note = "pass a `cancelable::CancellationToken` (or, with the `tokio-util` feature, a `tokio_util::sync::CancellationToken`): a parameter, or a field of `self` or of a parameter"
)]
pub trait LinkToken {
    /// Not public API.
    fn link(&self, scope: CancelScope) -> CancelScope;
}

// Not listed in a diagnostic: the message above says what is expected.
#[diagnostic::do_not_recommend]
impl LinkToken for CancellationToken {
    fn link(&self, scope: CancelScope) -> CancelScope {
        scope.token(self)
    }
}

#[cfg(feature = "tokio-util")]
#[diagnostic::do_not_recommend]
impl LinkToken for tokio_util::sync::CancellationToken {
    fn link(&self, scope: CancelScope) -> CancelScope {
        scope.tokio_util_token(self)
    }
}

// Not listed in a diagnostic: the message above says what is expected.
#[diagnostic::do_not_recommend]
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

// `ScopeTryRun` accepts every body output the macro support accepts: the
// scope's `Outcome` comes from `CancellableResult`, whose
// diagnostic explains a wrong return type of `#[cancellable]`. The scope
// itself does not depend on the macro support.
impl<R: CancellableResult> crate::scope::Outcome for R {
    fn from_cancelled(cancelled: Cancelled) -> Self {
        <R as CancellableResult>::from_cancelled(cancelled)
    }

    fn is_failure(&self) -> bool {
        <R as CancellableResult>::is_err(self)
    }
}
