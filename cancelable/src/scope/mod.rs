//! `CancelScope`: run a future under a set of cancellation sources.
//!
//! This module is the builder and its configuration; the rest of the scope
//! lives beside it, each file using only those listed before it:
//!
//! * `state.rs` — the state a running scope shares (`ScopeShared`), its
//!   operation id, and the one walk up the scope chain;
//! * `pool.rs` — the per-thread pool of finished scopes' states;
//! * `lazy.rs` — a running scope without shared state (most scopes): what
//!   it needs to make that state when something asks for it;
//! * `slot.rs` — the thread-local current-scope slot;
//! * `deadlines/` — the per-thread shard of scope deadlines and its timer
//!   (`tokio_driver.rs`: the tokio runtime's driver task);
//! * `hold.rs` (the one hold: shields, draining groups), `grace.rs`
//!   ([`GracePolicy`]), `seam.rs` (what layers call besides the public API);
//! * `config.rs` — the configuration the builder fills (`Config`, and the
//!   boxed `Extras` few scopes have, with their per-thread pool);
//! * `handle.rs` — [`ScopeHandle`];
//! * `armed.rs` — what a running scope holds (links, deadline
//!   registration, sources) and the checks made at every pend;
//! * `driver/` — the poll state machine (`start.rs`: the start at the first
//!   poll, lazy for a scope nothing but its body reaches);
//! * `future.rs` — the futures [`ScopeRun`] and [`ScopeTryRun`].

mod armed;
mod config;
mod deadlines;
mod driver;
mod future;
mod grace;
mod handle;
pub(crate) mod hold;
mod lazy;
#[cfg(feature = "registry")]
mod lazy_registered;
mod pool;
pub(crate) mod seam;
pub(crate) mod slot;
mod state;

pub(crate) use future::Outcome;
pub use future::{ScopeRun, ScopeTryRun};
pub use grace::{GracePolicy, GraceStart, GraceValue};
pub use handle::ScopeHandle;
pub(crate) use state::ScopeShared;

use config::{Callback, Config, Extras};
#[cfg(feature = "registry")]
pub(crate) use config::{HookSlot, StartHook};

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{bounded, OperationContext, Progress};
use crate::signal::SecondSignal;
use crate::source::{Predicate, Source};
#[cfg(doc)]
use crate::{CancelReason, OperationStatus};
use crate::{CancellationToken, Cancelled, Signal};

/// A scope of cancellation: build it from sources and options, then run a
/// future inside it.
///
/// * Sources combine as "any of": the first that fires cancels the scope.
///   Use [`Source::all_of`] for "all of".
/// * The body is polled first, then the sources, exactly like
///   `tokio::time::timeout`: a body that is ready at its first poll returns
///   `Ok` even under a passed deadline.
/// * Scopes nest: inside the body, the scope is the *current scope*.
///   A scope started inside another is cancelled with it (reason
///   [`CancelReason::Parent`]), and [`checkpoint`](crate::checkpoint) and
///   `cancel_point!()` see the cancellation and the earliest deadline of
///   the whole chain — up to the nearest [`shield`](crate::shield): a scope
///   started inside a shield has the scope around it as its parent (for
///   its context) but is not cancelled with it.
/// * The same code runs on tokio, async-std, smol or any executor: the
///   backend is detected when the scope starts. On tokio the runtime needs
///   its time driver (`enable_time()` or `enable_all()`) for timeouts.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, CancelReason};
///
/// # futures::executor::block_on(async {
/// let outcome = CancelScope::new()
///     .name("slow")
///     .timeout(Duration::from_millis(10))
///     .run(std::future::pending::<()>())
///     .await;
/// let cancelled = outcome.unwrap_err();
/// assert_eq!(cancelled.reason(), &CancelReason::Timeout);
/// assert_eq!(cancelled.operation_name(), Some("slow"));
/// # });
/// ```
#[must_use = "a scope does nothing until `run` or `try_run` is awaited"]
pub struct CancelScope {
    /// Made when a handle or the registry asks for it before the run;
    /// otherwise the run makes it if anything reaches the scope (`lazy.rs`).
    shared: OnceCell<Arc<ScopeShared>>,
    config: Config,
}

impl CancelScope {
    /// A scope with no sources: it is cancelled only through its handle,
    /// its token, or an enclosing scope.
    #[inline]
    pub fn new() -> Self {
        CancelScope {
            shared: OnceCell::new(),
            config: Config::default(),
        }
    }

    /// Names the operation, for errors, logs and [`OperationContext`].
    /// A name longer than 1 KiB is cut there (at a character boundary,
    /// ending with `…`), as the registry's history keeps it.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = Some(bounded(name.into()));
        self
    }

    /// Attaches a key/value pair to the operation's context. A key or value
    /// longer than 1 KiB is cut there (at a character boundary, ending with
    /// `…`): the registry's history keeps every operation's metadata, and
    /// values that come from outside (a request's path) must not make it
    /// grow without bound.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        self.config
            .extras()
            .metadata
            .insert(Cow::Owned(key), Cow::Owned(value));
        self
    }

    /// Cancels the scope `duration` after it starts (reason
    /// [`CancelReason::Timeout`]). With several timeouts and deadlines the
    /// earliest wins. A zero duration cancels a body that pends at once.
    #[inline]
    pub fn timeout(mut self, duration: Duration) -> Self {
        self.config.timeout = Some(match self.config.timeout {
            Some(earlier) => earlier.min(duration),
            None => duration,
        });
        self
    }

    /// Cancels the scope at `deadline` (reason [`CancelReason::Timeout`]).
    /// A deadline in the past cancels a body that pends at once. The
    /// deadline can be moved while the scope runs, through
    /// [`ScopeHandle::set_deadline`].
    #[inline]
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.config.deadline = Some(match self.config.deadline {
            Some(earlier) => earlier.min(deadline),
            None => deadline,
        });
        self
    }

    /// Gives the body a grace period to clean up once the scope is
    /// cancelled, instead of dropping it at the `.await` it is pending on.
    ///
    /// Without a grace period (the default, and what a zero `grace` means)
    /// a cancelled scope drops its body at once, as `tokio::time::timeout`
    /// does: code after that `.await` never runs, and whether cleanup
    /// started in time depends on where the cancellation found the body.
    ///
    /// With one, once the scope is cancelled:
    ///
    /// * checkpoints (`cancel_point!()`, [`checkpoint`](crate::checkpoint))
    ///   and the cancellation-aware waits ([`sleep`](crate::sleep),
    ///   [`sleep_until`](crate::sleep_until), [`cancelled`](crate::cancelled),
    ///   [`.or_cancelled()`](crate::OrCancelled::or_cancelled)) inside it
    ///   return `Err(Cancelled)` at once, with
    ///   [`GraceOutcome::InGrace`](crate::GraceOutcome::InGrace);
    /// * the scope goes on polling the body for up to `grace`, so that it
    ///   can run its cleanup (typically under a [`shield`](crate::shield),
    ///   so that the cleanup's own awaits are not cut short) and return;
    /// * if the body returns an `Err` within the grace period (with
    ///   [`try_run`](Self::try_run) or `#[cancellable]`), the scope ends
    ///   with its cancellation, `E::from(cancelled)`, whose
    ///   [`grace_outcome`](Cancelled::grace_outcome) is
    ///   [`FinishedWithinGrace`](crate::GraceOutcome::FinishedWithinGrace)
    ///   (the body's own error is dropped: the cancellation is what
    ///   happened);
    /// * if the body returns `Ok(value)` within the grace period (or any
    ///   value, with [`run`](Self::run)), the scope returns it: the body
    ///   finished its work after all (as a trio scope whose body finished
    ///   returns its value), and the operation counts as completed;
    /// * when the grace period runs out, the body is dropped — shields
    ///   inside it included: the grace period bounds them — and the scope
    ///   ends with its cancellation, outcome
    ///   [`DroppedAfterGrace`](crate::GraceOutcome::DroppedAfterGrace).
    ///
    /// The grace period starts when the scope first sees its cancellation
    /// (when it is next polled). Its timer is the scope deadline timer, so
    /// it works on every executor.
    ///
    /// **Nesting.** A grace period never outlives the scopes around it:
    /// it ends at the latest when an enclosing scope's grace period ends
    /// (once that scope is cancelled), or when an enclosing scope's
    /// deadline passes — plus that scope's own grace period, if it has one:
    /// a grace longer than what remains of an enclosing scope is clipped to
    /// it. An enclosing scope without a grace period that is cancelled
    /// drops its body, and with it every scope inside, grace or not (unless
    /// a [`shield`](crate::shield) holds it open; then the inner grace
    /// period still bounds the inner body).
    ///
    /// **Signals.** If the scope was cancelled by [`on_signal`](Self::on_signal)
    /// and the same signal arrives again during the grace period, the grace
    /// period ends at once (the body is dropped, outcome `DroppedAfterGrace`);
    /// by default the second signal also does what it does without
    /// cancelable (the application's handler, or the default action, which
    /// ends the process: the usual "press Ctrl-C again to quit"); with
    /// [`on_second_signal(SecondSignal::EndGrace)`](Self::on_second_signal)
    /// it only ends the grace period, and the program goes on.
    ///
    /// Setting it again replaces the earlier value. [`grace_policy`](Self::grace_policy)
    /// chooses which cancellations start it, and whether a value is kept.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    /// use cancelable::{cancel_point, shield, sleep, CancelScope, Cancelled, GraceOutcome};
    ///
    /// static CLEANED: AtomicBool = AtomicBool::new(false);
    ///
    /// async fn work() -> Result<(), Cancelled> {
    ///     loop {
    ///         cancel_point!();
    ///         sleep(Duration::from_millis(1)).await?;
    ///     }
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let outcome = CancelScope::new()
    ///     .timeout(Duration::from_millis(10))
    ///     .grace(Duration::from_secs(2))
    ///     .try_run(async {
    ///         let outcome = work().await;
    ///         if outcome.is_err() {
    ///             shield(async {
    ///                 // Async cleanup with awaits of its own.
    ///                 let _ = sleep(Duration::from_millis(5)).await;
    ///                 CLEANED.store(true, Ordering::SeqCst);
    ///             })
    ///             .await;
    ///         }
    ///         outcome
    ///     })
    ///     .await;
    /// let cancelled = outcome.unwrap_err();
    /// assert!(cancelled.is_timeout());
    /// assert_eq!(cancelled.grace_outcome(), GraceOutcome::FinishedWithinGrace);
    /// assert!(CLEANED.load(Ordering::SeqCst));
    /// # });
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.extras().grace = (!grace.is_zero()).then_some(grace);
        self
    }

    /// Cancels the scope when the process receives `signal` (reason
    /// [`CancelReason::Signal`]). Listening scopes share one OS
    /// registration; once no scope listens, the signal behaves as before.
    /// If the handler cannot be installed, the scope ends with
    /// [`CancelReason::Error`] carrying the OS error.
    pub fn on_signal(self, signal: Signal) -> Self {
        self.source(Source::signal(signal))
    }

    /// Cancels the scope when `token` is cancelled, with the token's reason
    /// (a shortcut for `.source(Source::token(token))`).
    ///
    /// `token` is a *source*, someone else's token watched by the scope;
    /// the scope's own token is [`ScopeHandle::cancel_token`].
    ///
    /// ```
    /// use cancelable::{CancelScope, CancellationToken, CancelReason};
    ///
    /// # futures::executor::block_on(async {
    /// let shutdown = CancellationToken::new();
    /// shutdown.cancel_with(CancelReason::Manual, "stopping");
    /// let outcome = CancelScope::new()
    ///     .token(&shutdown)
    ///     .run(std::future::pending::<()>())
    ///     .await;
    /// assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
    /// # });
    /// ```
    #[inline]
    pub fn token(self, token: &CancellationToken) -> Self {
        self.source(Source::token(token))
    }

    /// Cancels the scope when a `tokio_util` token is cancelled.
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn tokio_util_token(self, token: &tokio_util::sync::CancellationToken) -> Self {
        self.source(Source::tokio_util_token(token))
    }

    /// Cancels the scope when `predicate` returns `true` (reason
    /// [`CancelReason::Condition`]); see [`Source::condition`].
    pub fn condition<P, M>(self, predicate: P, check_every: Duration) -> Self
    where
        P: Predicate<M>,
    {
        self.source(Source::condition(predicate, check_every))
    }

    /// Adds a source; the first source to fire cancels the scope (sources
    /// combine as "any of": nest [`Source::any_of`] inside
    /// [`Source::all_of`] for other combinations).
    #[inline]
    pub fn source(mut self, mut source: Source) -> Self {
        if self.config.sources.is_empty() && self.config.first_token.is_none() {
            match source.into_token() {
                Ok(token) => {
                    self.config.first_token = Some(token);
                    return self;
                }
                Err(other) => source = other,
            }
        }
        if let Some(action) = self.config.extras.as_ref().and_then(|e| e.second_signal) {
            source.set_second_signal(action);
        }
        self.config.sources.push(source);
        self
    }

    /// What a second arrival of a signal the scope listens for does while
    /// the scope, cancelled by its first arrival, still cleans up (see
    /// [`SecondSignal`]): by default ([`SecondSignal::Exit`]) it ends the
    /// [`grace`](Self::grace) period and does what the signal does without
    /// cancelable — a second Ctrl-C ends the process;
    /// [`SecondSignal::EndGrace`] only ends the grace period, and the
    /// program goes on. Applies to every signal source of the scope,
    /// whether added before or after.
    pub fn on_second_signal(mut self, action: SecondSignal) -> Self {
        self.config.extras().second_signal = Some(action);
        for source in &mut self.config.sources {
            source.set_second_signal(action);
        }
        self
    }

    /// Adds a source that fires once all of `sources` have fired.
    pub fn all_of(self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.source(Source::all_of(sources))
    }

    /// Runs `callback` when the scope ends cancelled. A panicking callback
    /// is contained: the scope's result is still returned.
    pub fn on_cancel(mut self, callback: impl FnOnce(&Cancelled) + Send + 'static) -> Self {
        self.config.extras().on_cancel.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the body completes without being cancelled
    /// (with a value, or an `Ok` for [`try_run`](Self::try_run)).
    pub fn on_complete(
        mut self,
        callback: impl FnOnce(&OperationContext) + Send + 'static,
    ) -> Self {
        self.config.extras().on_complete.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the body of [`try_run`](Self::try_run) returns
    /// an `Err` of its own (status [`OperationStatus::Failed`]).
    pub fn on_error(mut self, callback: impl FnOnce(&OperationContext) + Send + 'static) -> Self {
        self.config.extras().on_error.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the scope starts (its first poll), with the
    /// operation's context (status [`OperationStatus::Running`]). A
    /// panicking callback is contained.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cancelable::{CancelScope, OperationStatus};
    ///
    /// # futures::executor::block_on(async {
    /// let seen = Arc::new(Mutex::new(None));
    /// let record = seen.clone();
    /// CancelScope::new()
    ///     .name("load")
    ///     .on_start(move |context| *record.lock().unwrap() = Some(context.status))
    ///     .run(async {})
    ///     .await
    ///     .unwrap();
    /// assert_eq!(*seen.lock().unwrap(), Some(OperationStatus::Running));
    /// # });
    /// ```
    pub fn on_start(mut self, callback: impl FnOnce(&OperationContext) + Send + 'static) -> Self {
        self.config.extras().on_start.push(Box::new(callback));
        self
    }

    /// Registry hook: the scope's state, its name and the start hook that
    /// `register()` and `key(..)` fill in (see `registry/mod.rs`).
    #[cfg(feature = "registry")]
    pub(crate) fn registration(
        &mut self,
    ) -> (&Arc<ScopeShared>, Option<&Cow<'static, str>>, &mut HookSlot) {
        let extras = self.config.extras.get_or_insert_with(config::take_extras);
        (
            self.shared.get_or_init(pool::take),
            self.config.name.as_ref(),
            &mut extras.registration,
        )
    }

    /// Runs `callback` on every [`report_progress`](crate::report_progress)
    /// made inside the scope, on the reporting thread.
    pub fn on_progress(mut self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.config.extras().on_progress.push(Arc::new(callback));
        self
    }

    /// `true` if the scope was given a [`grace`](Self::grace) period.
    pub(crate) fn has_grace(&self) -> bool {
        self.config
            .extras
            .as_ref()
            .is_some_and(|extras| extras.grace.is_some())
    }

    /// A handle to the scope: cancel it, move its deadline, read its status,
    /// from anywhere, before, during or after the run.
    pub fn handle(&self) -> ScopeHandle {
        ScopeHandle {
            shared: self.shared.get_or_init(pool::take).clone(),
        }
    }

    /// Runs `body` in the scope: `Ok(output)` if it finishes, `Err(Cancelled)`
    /// if a source fires first. On cancellation the body is dropped — at
    /// once, or when its [`grace`](Self::grace) period runs out (a body
    /// that finishes within it returns its output).
    pub fn run<F: Future>(self, body: F) -> ScopeRun<F> {
        ScopeRun::new(self, body)
    }

    /// Runs a fallible `body` in the scope: its own result, or
    /// `Err(E::from(cancelled))` if a source fires first.
    ///
    /// # Outcome: cancelled or failed
    ///
    /// One rule decides, here and wherever cancelable classifies an `Err`
    /// (task groups and their handles, supervision, the operation's status
    /// in the registry): an `Err` is the cancellation only when the code
    /// *saw* it — a [`checkpoint`](crate::checkpoint), a cancellation-aware
    /// wait ([`sleep`](crate::sleep), [`cancelled`](crate::cancelled),
    /// ...) or a scope nested in it returned `Err(Cancelled)` for this
    /// scope's cancellation — or the error is that
    /// [`Cancelled`] (where its type can tell: a task group's child).
    /// Any other `Err` is the code's own failure and is reported as such,
    /// even when the scope was cancelled at the same time.
    ///
    /// ```
    /// use cancelable::{CancelScope, OperationStatus};
    ///
    /// # futures::executor::block_on(async {
    /// // Cancelled before its start, the body fails on its own: a failure.
    /// let scope = CancelScope::new();
    /// let handle = scope.handle();
    /// handle.cancel();
    /// let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> =
    ///     scope.try_run(async { Err("disk full".into()) }).await;
    /// assert_eq!(outcome.unwrap_err().to_string(), "disk full");
    /// assert_eq!(handle.status(), OperationStatus::Failed);
    ///
    /// // The body saw the cancellation, then returned an error: cancelled.
    /// let scope = CancelScope::new();
    /// let handle = scope.handle();
    /// handle.cancel();
    /// let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> = scope
    ///     .try_run(async {
    ///         cancelable::checkpoint().await.map_err(|_| "stopped")?;
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert_eq!(outcome.unwrap_err().to_string(), "stopped");
    /// assert_eq!(handle.status(), OperationStatus::Cancelled);
    /// # });
    /// ```
    pub fn try_run<F, T, E>(self, body: F) -> ScopeTryRun<F>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Cancelled>,
    {
        ScopeTryRun::new(self, body)
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelScope")
            .field("id", &self.shared.get_or_init(pool::take).id())
            .field("timeout", &self.config.timeout)
            .field("token_source", &self.config.first_token)
            .field("sources", &self.config.sources)
            .finish_non_exhaustive()
    }
}
