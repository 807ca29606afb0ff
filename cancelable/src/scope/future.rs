//! The scope futures: [`ScopeRun`] for any body, [`ScopeTryRun`] for a fallible
//! body whose error type can carry the cancellation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::driver::Driver;
use super::CancelScope;
use crate::Cancelled;

/// The output of a [`ScopeTryRun`] body: it can carry a cancellation, and it
/// tells a failure apart from a success.
///
/// `Result<T, E>` with `E: From<Cancelled>` is one, through the macro
/// support's result trait (see the crate root), whose diagnostic explains
/// a wrong return type of `#[cancellable]`.
pub(crate) trait Outcome {
    /// The output of a body cut short by `cancelled`.
    fn from_cancelled(cancelled: Cancelled) -> Self;
    /// `true` if the body failed on its own (an `Err`).
    fn is_failure(&self) -> bool;
}

pin_project! {
    /// The future returned by [`CancelScope::run`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct ScopeRun<F> {
        #[pin]
        body: F,
        driver: Driver,
    }
}

impl<F: Future> ScopeRun<F> {
    pub(super) fn new(scope: CancelScope, body: F) -> Self {
        ScopeRun {
            body,
            driver: Driver::new(scope),
        }
    }
}

impl<F: Future> Future for ScopeRun<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.driver.poll(this.body, cx, |_| false, None)
    }
}

impl<F> fmt::Debug for ScopeRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeRun").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future returned by [`CancelScope::try_run`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct ScopeTryRun<F>
    where
        F: Future,
    {
        #[pin]
        body: F,
        driver: Driver,
        // How to turn a cancellation into the body's output, and whether an
        // output is a failure: stored so that the `Future` impl needs no
        // bound of its own (a bound there would report a wrong return type
        // of `#[cancellable]` twice).
        from_cancelled: fn(Cancelled) -> F::Output,
        is_err: fn(&F::Output) -> bool,
        // The text of an error, when `keep_error_text` asked for it.
        describe: Option<fn(&F::Output) -> String>,
    }
}

impl<F: Future> ScopeTryRun<F> {
    pub(crate) fn new(scope: CancelScope, body: F) -> Self
    where
        F::Output: Outcome,
    {
        ScopeTryRun {
            body,
            driver: Driver::new(scope),
            from_cancelled: F::Output::from_cancelled,
            is_err: F::Output::is_failure,
            describe: None,
        }
    }
}

impl<F: Future> ScopeTryRun<F> {
    /// The scope's output does not flow into the code of the scope it
    /// runs in (a group's child): its cancellation is not passed up to
    /// that scope as seen by its code.
    pub(crate) fn detached(mut self) -> Self {
        self.driver.detach();
        self
    }

    /// Runs the scope in `scope`'s state, made before the start by whoever
    /// needed it first (a group child's handle): `false` if the scope
    /// already has a state of its own or has started.
    pub(crate) fn adopt(self: Pin<&mut Self>, scope: &super::ScopeHandle) -> bool {
        self.project().driver.adopt(&scope.shared)
    }

    /// The scope's state as a handle, if it has one: made before the run,
    /// at a start with a parent or other reachers, or when the code
    /// inside asked (a scope without one is lazy, `lazy.rs`).
    pub(crate) fn state(&self) -> Option<super::ScopeHandle> {
        self.driver.state().map(|shared| super::ScopeHandle {
            shared: shared.clone(),
        })
    }
}

impl<F, T, E> ScopeTryRun<F>
where
    F: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    /// Keeps the text (`Display`) of the body's own error in the
    /// operation's context when the body fails: `on_error` callbacks read
    /// it in [`OperationContext::error`](crate::OperationContext::error),
    /// the registry's history in `FinishedOperation::error` (feature
    /// `registry`).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cancelable::{CancelScope, Cancelled};
    ///
    /// # futures::executor::block_on(async {
    /// let seen = Arc::new(Mutex::new(None));
    /// let record = seen.clone();
    /// let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> = CancelScope::new()
    ///     .on_error(move |context| *record.lock().unwrap() = context.error.clone())
    ///     .try_run(async { Err("disk full".into()) })
    ///     .keep_error_text()
    ///     .await;
    /// assert!(outcome.is_err());
    /// assert_eq!(seen.lock().unwrap().as_deref(), Some("disk full"));
    /// # });
    /// ```
    pub fn keep_error_text(mut self) -> Self {
        self.describe = Some(|output| match output {
            Err(error) => error.to_string(),
            Ok(_) => String::new(),
        });
        self
    }
}

impl<F: Future> Future for ScopeTryRun<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this
            .driver
            .poll(this.body, cx, *this.is_err, *this.describe)
        {
            Poll::Ready(Ok(output)) => Poll::Ready(output),
            Poll::Ready(Err(cancelled)) => Poll::Ready((this.from_cancelled)(cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: Future> fmt::Debug for ScopeTryRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeTryRun").finish_non_exhaustive()
    }
}
