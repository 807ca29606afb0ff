//! Blocking work with a token: [`run_blocking`].
//!
//! [`run_blocking`] runs a synchronous closure on a blocking thread and
//! hands it a [`BlockingContext`] tied to the current scope: the closure
//! can check for cancellation ([`is_cancelled`](BlockingContext::is_cancelled),
//! [`checkpoint`](BlockingContext::checkpoint)), read the deadline and
//! report progress to the scope.
//!
//! # When the scope is cancelled
//!
//! The awaiting side returns `Err(Cancelled)` at once, *whether or not the
//! closure checks*: a thread cannot be stopped from outside, so the closure
//! runs on, **detached**, until it returns, and its result is dropped.
//! Such threads are counted by [`abandoned_threads`] until they return. A
//! closure that checks its context now and then stops soon after; one that
//! never does keeps its thread busy for as long as it runs.
//!
//! The threads come from the `blocking` crate's pool on every backend, tokio
//! included: its threads are detached, so a closure that never returns
//! holds up neither a tokio runtime's shutdown (tokio waits for its own
//! blocking pool) nor the process's exit.
//!
//! ```
//! use std::time::Duration;
//! use cancelable::CancelScope;
//! use cancelable::blocking::run_blocking;
//!
//! # futures::executor::block_on(async {
//! let outcome = CancelScope::new()
//!     .timeout(Duration::from_millis(20))
//!     .try_run(async {
//!         let sum = run_blocking(|ctx| {
//!             let mut sum = 0u64;
//!             for n in 0.. {
//!                 // Stops soon after the timeout.
//!                 ctx.checkpoint()?;
//!                 sum = sum.wrapping_add(n);
//!                 std::thread::sleep(Duration::from_micros(100));
//!             }
//!             Ok::<u64, cancelable::Cancelled>(sum)
//!         })
//!         .await??;
//!         Ok::<u64, cancelable::Cancelled>(sum)
//!     })
//!     .await;
//! assert!(outcome.unwrap_err().is_timeout());
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::backend::{Backend, Blocking};
use crate::context::Progress;
use crate::current;
use crate::scope::{ScopeHandle, ScopeShared};
use crate::token::CancellationToken;
use crate::wait::Watch;
use crate::{CancelReason, Cancelled};

/// Closures still running whose awaiting side has gone.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// How many [`run_blocking`] closures are still running although their
/// awaiting side has gone: it returned `Err(Cancelled)` because the scope
/// was cancelled, or the future was dropped.
///
/// Each such closure is counted from the moment its awaiting side gives up
/// until it returns; a closure that had not started yet never runs and is
/// not counted. A number that keeps growing points at closures that ignore
/// their [`BlockingContext`].
///
/// ```
/// assert_eq!(cancelable::blocking::abandoned_threads(), 0);
/// ```
pub fn abandoned_threads() -> usize {
    ABANDONED.load(Ordering::Acquire)
}

/// Where one run is; its transitions are atomic so that the closure's
/// thread and the awaiting side agree on who counts what.
struct RunState(AtomicU8);

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// The awaiting side left before the closure started: it never starts.
const LEFT_QUEUED: u8 = 3;
/// The awaiting side left while the closure ran: counted in `ABANDONED`.
const LEFT_RUNNING: u8 = 4;

impl RunState {
    /// The closure's thread is about to run it; `false` if nobody waits
    /// for it any more.
    fn start(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The closure returned (or panicked).
    fn finish(&self) {
        if self.0.swap(DONE, Ordering::AcqRel) == LEFT_RUNNING {
            ABANDONED.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The awaiting side gives up on the result.
    fn leave(&self) {
        // Counted before the state says so, so that `finish` never
        // decrements below zero.
        ABANDONED.fetch_add(1, Ordering::AcqRel);
        let mut state = self.0.load(Ordering::Acquire);
        loop {
            let next = match state {
                QUEUED => LEFT_QUEUED,
                RUNNING => LEFT_RUNNING,
                _ => break,
            };
            match self
                .0
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next == LEFT_RUNNING => return,
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        ABANDONED.fetch_sub(1, Ordering::AcqRel);
    }

    fn is_left(&self) -> bool {
        matches!(self.0.load(Ordering::Acquire), LEFT_QUEUED | LEFT_RUNNING)
    }
}

/// What a [`run_blocking`] closure knows of its scope: cancellation,
/// deadline, progress, the operation.
///
/// It is handed to the closure by reference; clone what the closure needs
/// to keep (such as [`token`](Self::token)).
pub struct BlockingContext {
    run: Arc<RunState>,
    /// The scope current where `run_blocking` was first polled, for its
    /// operation and progress, shield or not.
    scope: Option<Arc<ScopeShared>>,
    /// What cancels the closure: the scope's token, unless a shield hides
    /// the scope's cancellation.
    token: Option<CancellationToken>,
    /// `token` is the scope's: report its cancellation as a checkpoint
    /// inside the scope would.
    token_is_scope: bool,
}

impl BlockingContext {
    /// `true` once the scope is cancelled, or once nobody awaits the result
    /// any more (the [`RunBlocking`] future was dropped). One atomic load
    /// or two.
    pub fn is_cancelled(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
            || self.run.is_left()
    }

    /// `Err(Cancelled)` once [`is_cancelled`](Self::is_cancelled): with the
    /// scope's reason, or with reason [`Manual`](CancelReason::Manual) and a
    /// message if the awaiting side was dropped.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let outcome = cancelable::blocking::run_blocking(|ctx| ctx.checkpoint()).await;
    /// assert!(outcome.unwrap().is_ok());
    /// # });
    /// ```
    pub fn checkpoint(&self) -> Result<(), Cancelled> {
        if let Some(token) = self.token.as_ref().filter(|token| token.is_cancelled()) {
            return Err(match (&self.scope, self.token_is_scope) {
                (Some(scope), true) => scope.observe_cancellation(),
                _ => token.cancellation(),
            });
        }
        if self.run.is_left() {
            return Err(Cancelled::new(CancelReason::Manual).with_message(Some(
                "the future awaiting this `run_blocking` closure was dropped".into(),
            )));
        }
        Ok(())
    }

    /// The earliest deadline of the scope and the scopes around it, if any
    /// (`None` also inside a shield, whose outer deadlines do not apply).
    /// Read now: a deadline moved through a handle shows.
    ///
    /// On tokio the instant is on tokio's clock, which tests can pause.
    pub fn deadline(&self) -> Option<Instant> {
        match (&self.scope, self.token_is_scope) {
            (Some(scope), true) => scope.effective_deadline(),
            _ => None,
        }
    }

    /// Reports progress to the scope, as [`report_progress`](crate::report_progress)
    /// does inside it: recorded in its context and passed to its
    /// `on_progress` callbacks, on this thread. Returns `false` (and does
    /// nothing) outside any scope.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cancelable::CancelScope;
    /// use cancelable::blocking::run_blocking;
    ///
    /// # futures::executor::block_on(async {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// CancelScope::new()
    ///     .on_progress(move |progress| sink.lock().unwrap().push(progress.fraction))
    ///     .run(run_blocking(|ctx| {
    ///         ctx.report_progress(0.5, "half way");
    ///         ctx.report_progress(1.0, "done");
    ///     }))
    ///     .await
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!(*seen.lock().unwrap(), [Some(0.5), Some(1.0)]);
    /// # });
    /// ```
    pub fn report_progress(
        &self,
        fraction: impl Into<Option<f64>>,
        message: impl Into<String>,
    ) -> bool {
        let Some(scope) = &self.scope else {
            return false;
        };
        scope.report_progress(Progress::new(fraction.into(), message.into()));
        true
    }

    /// The scope the closure runs for (its operation id, name, context),
    /// if any.
    pub fn scope(&self) -> Option<ScopeHandle> {
        self.scope.clone().map(|shared| ScopeHandle { shared })
    }

    /// The token that cancels the closure, if any: hand it to work the
    /// closure starts.
    pub fn token(&self) -> Option<&CancellationToken> {
        self.token.as_ref()
    }
}

impl fmt::Debug for BlockingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingContext")
            .field("cancelled", &self.is_cancelled())
            .field("scope", &self.scope.as_ref().map(|scope| scope.id()))
            .finish_non_exhaustive()
    }
}

type Work<T> = Box<dyn FnOnce(&BlockingContext) -> T + Send>;

/// Runs `work` on a blocking thread with a [`BlockingContext`] tied to the
/// current scope: `Ok(output)`, or `Err(Cancelled)` as soon as the scope is
/// cancelled — whether the closure checks or not, in which case it runs on,
/// detached (see the [module docs](self)).
///
/// * The closure starts at the first poll, which binds it to the scope
///   current then. If the scope is cancelled by then, it does not start.
/// * Inside a [`shield`](crate::shield) the hidden cancellation neither
///   ends the wait nor shows in the context; progress still reaches the
///   scope.
/// * Outside any scope nothing cancels it; dropping the future tells the
///   closure through [`BlockingContext::is_cancelled`].
/// * A panic in the closure is resumed on the awaiting side.
///
/// ```
/// # futures::executor::block_on(async {
/// let answer = cancelable::blocking::run_blocking(|_ctx| 6 * 7).await.unwrap();
/// assert_eq!(answer, 42);
/// # });
/// ```
pub fn run_blocking<T, F>(work: F) -> RunBlocking<T>
where
    F: FnOnce(&BlockingContext) -> T + Send + 'static,
    T: Send + 'static,
{
    RunBlocking {
        work: Some(Box::new(work)),
        watch: Watch::current_at_first_poll(),
        running: None,
    }
}

/// The future returned by [`run_blocking`].
#[must_use = "futures do nothing unless awaited: the closure starts at the first poll"]
pub struct RunBlocking<T> {
    work: Option<Work<T>>,
    watch: Watch,
    running: Option<(Blocking<std::thread::Result<T>>, Arc<RunState>)>,
}

impl<T: Send + 'static> RunBlocking<T> {
    /// Starts the closure on a blocking thread.
    fn start(&mut self, work: Work<T>) {
        let run = Arc::new(RunState(AtomicU8::new(QUEUED)));
        let scope = match self.watch.scope_shared() {
            Some(scope) => Some(scope.clone()),
            // Inside a shield: the scope still gets the progress.
            None => current::current_shared(),
        };
        let context = BlockingContext {
            run: run.clone(),
            scope,
            token: self.watch.watched_token().cloned(),
            token_is_scope: self.watch.scope_shared().is_some(),
        };
        let task = Backend::detect().run_blocking(move || {
            if !context.run.start() {
                // Nobody waits any more: not worth starting.
                return Err(Box::new(()) as Box<dyn std::any::Any + Send>);
            }
            let output = catch_unwind(AssertUnwindSafe(|| work(&context)));
            context.run.finish();
            output
        });
        self.running = Some((task, run));
    }

    /// The scope was cancelled: the closure, if it runs, runs on detached;
    /// if it has not started, it never will.
    fn give_up(&mut self, cancelled: Cancelled) -> Cancelled {
        self.work = None;
        if let Some((_, run)) = self.running.take() {
            run.leave();
        }
        cancelled
    }
}

impl<T: Send + 'static> Future for RunBlocking<T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Err(cancelled) = this.watch.check() {
            return Poll::Ready(Err(this.give_up(cancelled)));
        }
        if let Some(work) = this.work.take() {
            this.start(work);
        }
        let Some((task, _)) = &mut this.running else {
            // Polled after it completed: what a fused future would do.
            return Poll::Pending;
        };
        if let Poll::Ready(output) = task.poll_done(cx) {
            this.running = None;
            return match output {
                Ok(output) => Poll::Ready(Ok(output)),
                Err(panic) => resume_unwind(panic),
            };
        }
        match this.watch.poll_cancelled(cx) {
            Poll::Ready(cancelled) => Poll::Ready(Err(this.give_up(cancelled))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for RunBlocking<T> {
    fn drop(&mut self) {
        // Dropping the task handle detaches a running closure (and keeps a
        // queued one from starting): it is abandoned.
        if let Some((_, run)) = self.running.take() {
            run.leave();
        }
    }
}

impl<T> fmt::Debug for RunBlocking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunBlocking")
            .field("started", &self.work.is_none())
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}
