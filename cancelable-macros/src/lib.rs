//! Procedural macros of the [`cancelable`] crate: [`macro@cancellable`].
//!
//! Do not depend on this crate directly: depend on `cancelable` and write
//! `use cancelable::cancellable;`, which re-exports the macro with these docs. The
//! expansion names items of `cancelable` that are not public API, so the two crates
//! are released together, with `cancelable` pinning this crate's exact version.
//!
//! The arguments are checked at compile time, durations and signal names included,
//! and every mistake is reported on the tokens that caused it. If anything is wrong
//! the function is emitted unchanged next to the errors, so that the rest of the
//! crate still type-checks.
//!
//! [`cancelable`]: https://docs.rs/cancelable

#![forbid(unsafe_code)]

mod errors;
mod expand;
mod parse;
mod validate;
mod value;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Runs the body of an `async fn` inside a cancellation scope.
///
/// The function keeps its signature. It must return `Result<T, E>` where
/// `E: From<cancelable::Cancelled>`, written as any path type: `Result<T, E>`,
/// `io::Result<T>` or an alias such as `Fallible<T>` (the compiler checks what
/// it stands for). When the scope is cancelled (by its timeout, a
/// signal, a token or a condition, or because an enclosing scope is), the body stops
/// at the `.await` it is waiting on or at its next [`cancel_point!()`], and the
/// function returns `Err(E::from(cancelled))`.
///
/// ```ignore
/// use cancelable::{cancel_point, cancellable, Cancelled};
///
/// #[cancellable(timeout = "5s", on_signal = "SIGINT")]
/// async fn crunch(items: Vec<u64>) -> Result<u64, Cancelled> {
///     let mut sum = 0;
///     for item in items {
///         cancel_point!();
///         sum += item;
///     }
///     Ok(sum)
/// }
/// ```
///
/// expands to (roughly; the `__private` items are not public API):
///
/// ```ignore
/// async fn crunch(items: Vec<u64>) -> Result<u64, Cancelled> {
///     let scope = ::cancelable::__private::CancelScope::new()
///         .name("crunch")
///         .timeout(::core::time::Duration::new(5, 0))
///         .on_signal(::cancelable::__private::Signal::Interrupt);
///     ::cancelable::__private::run(scope, async move {
///         let mut sum = 0;
///         /* ... the body, unchanged ... */
///         Ok(sum)
///     })
///     .await
/// }
/// ```
///
/// # Arguments
///
/// All are optional: `#[cancellable]` alone gives a named scope that is cancelled
/// only with an enclosing scope. Every argument is checked at compile time, with the
/// error on the argument.
///
/// | argument | meaning |
/// |---|---|
/// | `timeout = "5s"` | cancel after this long: a [humantime] string (`"250ms"`, `"1m30s"`, `"1.5s"`; not zero, no months or years) or any `Duration` expression (`timeout = self.limit`) |
/// | `on_signal = "SIGINT"` | cancel when the process receives this signal; several: `on_signal = ["SIGINT", "SIGTERM"]`. One of `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`, in any case and with `SIG` optional (`"sigint"`, `"INT"`), as `Signal::from_str` reads them |
/// | `token = tok` | cancel when the `CancellationToken` parameter `tok` is cancelled; a field of a parameter works too: `token = self.stop`, `token = job.token` |
/// | `condition = stop_requested` | cancel when this function or closure returns `true` (or a future of `true`); it must be `Send + Sync + 'static` |
/// | `check_every = "100ms"` | how often `condition` is checked (default `"100ms"`); needs `condition` |
/// | `grace = "2s"` | once cancelled, keep polling the body this long so that it can clean up (checkpoints and cancellation-aware waits report the cancellation; the body is dropped when the grace runs out): a [humantime] string or a `Duration` expression; `"0s"` means no grace period. See `CancelScope::grace` |
/// | `name = "job"` | the operation's name in reasons and logs (default: the function's name) |
/// | `crate = "path"` | where the `cancelable` crate is, if you renamed or re-exported it |
///
/// With `#[tokio::main]` or `#[tokio::test]`, put `#[cancellable]` above it, so that
/// it sees the `async fn` before tokio makes it sync.
///
/// # Errors at compile time
///
/// The attribute rejects, on the offending tokens: a function that is not `async`
/// (a sync fn returning `impl Future` is told to become an `async fn`); a return
/// type that is obviously not a `Result` (`()`, tuples, `Option`, primitive types,
/// references, `impl Trait`); an unknown, duplicated or ill-typed argument; an
/// invalid, zero or calendar duration; an unknown signal (with a hint: `"SIGTREM"`
/// → `SIGTERM`, `"Interrupt"` → `SIGINT`); a `token` that is not a parameter or a field path starting at one;
/// `check_every` without `condition`. Any other path type is left to the compiler,
/// which reports on the return type a type that is not a `Result` (such as an
/// alias of `Option`) or whose error type has no `From<Cancelled>` (such as
/// `std::io::Result`).
///
/// [humantime]: https://docs.rs/humantime
/// [`cancel_point!()`]: https://docs.rs/cancelable/latest/cancelable/macro.cancel_point.html
#[proc_macro_attribute]
pub fn cancellable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cancellable(args.into(), item.into()).into()
}
