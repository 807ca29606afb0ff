//! Cancellation-aware waits: [`sleep`], [`sleep_until`], [`cancelled`] and
//! [`.or_cancelled()`](OrCancelled::or_cancelled).
//!
//! A wait that is cancellation-aware is a checkpoint that can pend: it
//! returns `Err(Cancelled)` as soon as the current scope is cancelled
//! (trio's `sleep` is a checkpoint in the same way), instead of waiting on
//! while the scope ends around it.
//!
//! # Which scope a wait watches
//!
//! * A wait is bound at its **first poll** to the scope current then, the
//!   innermost scope running the code: the one [`checkpoint`] would ask.
//!   It watches that scope's token, which is also cancelled when a scope
//!   around it is (reason [`Parent`](crate::CancelReason::Parent)) or when
//!   a deadline of the chain passes.
//! * **Inside a [`shield`]** a wait behaves as a checkpoint there: the
//!   cancellation the shield hides does not cut it short (a `sleep` runs to
//!   its end). A scope started inside the shield is watched as usual.
//! * **Outside any scope** nothing can cancel it: `sleep` is a plain sleep
//!   that returns `Ok(())`, [`cancelled`] pends forever, and
//!   `.or_cancelled()` returns the future's output.
//! * `.or_cancelled_by(&token)` watches an explicit token instead, shield
//!   or not (as `cancel_point!(token)` does).
//!
//! The current scope does not follow a future into another task: a wait
//! created in a scope and first polled in a spawned task is outside any
//! scope. Use `.or_cancelled_by(&current_token()?)` there.
//!
//! # Timers
//!
//! The waits run on every executor. A sleep takes no timer of its own when
//! a deadline of its scope chain comes first: the scope's deadline,
//! enforced by the thread's shared deadline timer, cancels the scope and
//! ends the sleep with `Err` (reason [`Timeout`](crate::CancelReason::Timeout)).
//! If that deadline is moved later than the sleep's end, the sleep arms a
//! timer of its own when it is next polled (moving a deadline wakes the
//! scope's task). On tokio, sleeps follow tokio's clock, so
//! `tokio::time::pause()` and `advance()` act on them.
//!
//! # Cleaning up after cancellation
//!
//! When a scope is cancelled while its body is parked (pending, waiting to
//! be woken), the scope polls the body once more before it ends: body
//! first, as `tokio::time::timeout` polls its future first. A body parked
//! on a cancellation-aware wait therefore *notices* the cancellation: the
//! wait returns `Err`, and the body can run its cleanup under a
//! [`shield`], which keeps the scope open until the cleanup is done, on
//! every backend. Here a sibling future cancels the scope's token:
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//! use cancelable::{shield, sleep, CancelScope, CancellationToken, Cancelled};
//!
//! # futures::executor::block_on(async {
//! static CLEANED: AtomicBool = AtomicBool::new(false);
//! let token = CancellationToken::new();
//! let work = CancelScope::new().token(&token).try_run(async {
//!     loop {
//!         if let Err(cancelled) = sleep(Duration::from_millis(5)).await {
//!             shield(async {
//!                 // Async cleanup: flush, close, say goodbye.
//!                 let _ = sleep(Duration::from_millis(5)).await;
//!                 CLEANED.store(true, Ordering::SeqCst);
//!             })
//!             .await;
//!             return Err::<(), Cancelled>(cancelled);
//!         }
//!     }
//! });
//! let stop = async {
//!     let _ = sleep(Duration::from_millis(12)).await; // outside any scope
//!     token.cancel();
//! };
//! let (outcome, ()) = futures::join!(work, stop);
//! assert!(outcome.is_err());
//! assert!(CLEANED.load(Ordering::SeqCst));
//! # });
//! ```
//!
//! A body parked on anything else (an I/O future, a channel, a timer of
//! the runtime) is dropped at that `.await` instead: wrap such awaits in
//! [`.or_cancelled()`](OrCancelled::or_cancelled) to get the same chance.
//!
//! One window remains: a cancellation that lands from another thread (a
//! token cancelled elsewhere, the timer thread enforcing a deadline)
//! *while* the body is being polled, after its wait looked and before the
//! scope does, ends the scope without polling the body again, as with
//! `tokio::time::timeout`: the body never sees it. A grace period
//! ([`CancelScope::grace`](crate::CancelScope::grace)) closes that window:
//! a cancelled scope with one keeps polling its body, and whenever it
//! polls these waits they return `Err` at once — the cleanup then runs on
//! every backend, every time.
//!
//! [`checkpoint`]: crate::checkpoint
//! [`shield`]: crate::shield

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use crate::backend::{Backend, Timer};
use crate::scope::ScopeShared;
use crate::token::{CancellationToken, WaitForCancellationOwned};
use crate::{CancelReason, Cancelled};

/// What a wait, a stream adapter or a blocking run watches for
/// cancellation, and its registration with the token while it pends.
pub(crate) struct Watch {
    target: Target,
    /// Registered with the token at the first pend, not before: a wait
    /// that is ready at once costs no lock.
    wait: Option<WaitForCancellationOwned>,
    /// A stream adapter's pull was counted by the testing kit's
    /// `CancelAfterCheckpoints` (once per item).
    #[cfg(feature = "testing")]
    pulling: bool,
}

enum Target {
    /// Not polled yet: binds to the current scope at the first poll.
    Unbound,
    /// Outside any scope, or inside a shield: nothing cancels it.
    Nothing,
    /// A scope: its cancellation is reported as a checkpoint inside it
    /// reports it (marked as observed by the body).
    Scope(Arc<ScopeShared>),
    /// An explicit token.
    Token(CancellationToken),
}

impl Watch {
    /// Watches the scope current at the first poll.
    pub(crate) fn current_at_first_poll() -> Watch {
        Watch::with(Target::Unbound)
    }

    /// Watches the scope current now (see [`Watch::current_at_first_poll`]);
    /// `None` outside any scope.
    pub(crate) fn current_now() -> Option<Watch> {
        let parent = crate::scope::slot::current_parent()?;
        Some(Watch::with(if parent.shielded {
            Target::Nothing
        } else {
            Target::Scope(parent.scope)
        }))
    }

    /// Watches `token`.
    pub(crate) fn token(token: &CancellationToken) -> Watch {
        Watch::with(Target::Token(token.clone()))
    }

    /// Watches `scope`, shield or not.
    pub(crate) fn scope(scope: Arc<ScopeShared>) -> Watch {
        Watch::with(Target::Scope(scope))
    }

    fn with(target: Target) -> Watch {
        Watch {
            target,
            wait: None,
            #[cfg(feature = "testing")]
            pulling: false,
        }
    }

    /// Binds to the current scope if not bound yet; `true` if it bound now.
    #[inline(always)]
    fn bind(&mut self) -> bool {
        if !matches!(self.target, Target::Unbound) {
            return false;
        }
        self.target = match Watch::current_now() {
            Some(watch) => watch.target,
            None => Target::Nothing,
        };
        // The wait starts: a cancellation point the testing kit counts.
        #[cfg(feature = "testing")]
        if let Target::Scope(scope) = &self.target {
            crate::current::count_wait(scope);
        }
        true
    }

    /// A stream adapter starts pulling an item (a no-op until the item is
    /// handed over, `end_pull`): a cancellation point the testing kit
    /// counts, once per item. Nothing without the `testing` feature.
    #[inline(always)]
    pub(crate) fn begin_pull(&mut self) {
        #[cfg(feature = "testing")]
        if !self.pulling {
            self.pulling = true;
            if let Target::Scope(scope) = &self.target {
                crate::current::count_wait(scope);
            }
        }
    }

    /// The pull started by `begin_pull` is over (an item, the end, or the
    /// cancellation).
    #[inline(always)]
    pub(crate) fn end_pull(&mut self) {
        #[cfg(feature = "testing")]
        {
            self.pulling = false;
        }
    }

    /// The scope watched, if the watch is bound to one.
    pub(crate) fn scope_shared(&self) -> Option<&Arc<ScopeShared>> {
        match &self.target {
            Target::Scope(scope) => Some(scope),
            _ => None,
        }
    }

    /// The token watched, if any.
    pub(crate) fn watched_token(&self) -> Option<&CancellationToken> {
        match &self.target {
            Target::Scope(scope) => Some(&scope.token),
            Target::Token(token) => Some(token),
            Target::Unbound | Target::Nothing => None,
        }
    }

    /// `true` if the watched scope or token is cancelled (`false` while
    /// unbound: see [`Watch::check`]). One atomic load.
    #[inline(always)]
    pub(crate) fn is_cancelled(&self) -> bool {
        match &self.target {
            Target::Scope(scope) => scope.token.is_cancelled(),
            Target::Token(token) => token.is_cancelled(),
            Target::Unbound | Target::Nothing => false,
        }
    }

    /// The error for the cancellation seen.
    #[cold]
    pub(crate) fn error(&self) -> Cancelled {
        match &self.target {
            Target::Scope(scope) => scope.observe_cancellation(),
            Target::Token(token) => token.cancellation(),
            Target::Unbound | Target::Nothing => Cancelled::new(CancelReason::Manual),
        }
    }

    /// `Err` if the watched scope or token is cancelled. One atomic load.
    #[inline(always)]
    pub(crate) fn check(&mut self) -> Result<(), Cancelled> {
        self.bind();
        if self.is_cancelled() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    /// `Ready` once the watched scope or token is cancelled; registers the
    /// waker with its token until then. Pends forever if nothing is watched.
    pub(crate) fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<Cancelled> {
        self.bind();
        let token = match &self.target {
            Target::Scope(scope) => &scope.token,
            Target::Token(token) => token,
            Target::Unbound | Target::Nothing => return Poll::Pending,
        };
        if token.is_cancelled() {
            return Poll::Ready(self.error());
        }
        let wait = self
            .wait
            .get_or_insert_with(|| token.clone().cancelled_owned());
        match Pin::new(wait).poll(cx) {
            Poll::Ready(()) => Poll::Ready(self.error()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watching = match &self.target {
            Target::Unbound => "the current scope (at the first poll)",
            Target::Nothing => "nothing",
            Target::Scope(_) => "a scope",
            Target::Token(_) => "a token",
        };
        f.debug_struct("Watch")
            .field("watching", &watching)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Waits for `duration`, or until the current scope is cancelled.
///
/// * `Ok(())` once `duration` has passed; `Err(Cancelled)` as soon as the
///   current scope is cancelled (at once if it already is), whatever the
///   duration. It checks the cancellation first: a zero sleep in a
///   cancelled scope is an `Err`.
/// * The duration starts when `sleep` is called. A duration too large to
///   represent sleeps until the scope is cancelled.
/// * Inside a [`shield`](crate::shield) the outer cancellation does not cut
///   it short; outside any scope it is a plain sleep that returns `Ok(())`.
///   See the [module docs](self) for the details and the cleanup pattern.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{sleep, CancelScope};
///
/// # futures::executor::block_on(async {
/// let outcome = CancelScope::new()
///     .timeout(Duration::from_millis(10))
///     .try_run(async {
///         // Ends with the scope's timeout, long before the hour is up.
///         sleep(Duration::from_secs(3600)).await?;
///         Ok::<_, cancelable::Cancelled>("slept")
///     })
///     .await;
/// assert!(outcome.unwrap_err().is_timeout());
///
/// // Outside any scope it is a plain sleep.
/// assert!(sleep(Duration::from_millis(1)).await.is_ok());
/// # });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let backend = Backend::detect();
    Sleep::new(backend, backend.now().checked_add(duration))
}

/// Waits until `deadline`, or until the current scope is cancelled; see
/// [`sleep`].
///
/// On tokio the deadline is read on tokio's clock (which tests can pause);
/// elsewhere on the standard clock.
///
/// ```
/// use std::time::{Duration, Instant};
/// use cancelable::sleep_until;
///
/// # futures::executor::block_on(async {
/// let deadline = Instant::now() + Duration::from_millis(2);
/// sleep_until(deadline).await.unwrap();
/// assert!(Instant::now() >= deadline);
/// # });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(Backend::detect(), Some(deadline))
}

/// The future returned by [`sleep`] and [`sleep_until`].
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    backend: Backend,
    /// `None`: never (the duration overflowed).
    deadline: Option<Instant>,
    watch: Watch,
    /// A deadline of the watched scope chain comes first: the scope's timer
    /// ends this sleep, which needs none of its own.
    covered: bool,
    timer: Option<Timer>,
}

impl Sleep {
    fn new(backend: Backend, deadline: Option<Instant>) -> Sleep {
        Sleep {
            backend,
            deadline,
            watch: Watch::current_at_first_poll(),
            covered: false,
            timer: None,
        }
    }

    /// When the sleep ends if the scope is not cancelled first (`None` if
    /// never: the duration was too large to represent).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether a deadline of the watched scope chain comes no later than
    /// this sleep's end; at the first poll, also enforces a passed one.
    fn covered_by_scope(&self, first_poll: bool) -> bool {
        let Some(scope) = self.watch.scope_shared() else {
            return false;
        };
        let Some(scope_deadline) = scope.effective_deadline() else {
            return false;
        };
        if first_poll && self.backend.now() >= scope_deadline {
            // Passed while the body ran without pending: end now, as a
            // checkpoint would, rather than when the shared timer fires.
            scope.enforce_deadlines();
        }
        self.deadline
            .is_none_or(|deadline| scope_deadline <= deadline)
    }
}

impl Future for Sleep {
    type Output = Result<(), Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let first_poll = this.watch.bind();
        if first_poll || this.covered {
            // At the first poll, and again whenever woken while relying on
            // the scope's deadline, which may have moved later.
            this.covered = this.covered_by_scope(first_poll);
        }
        if let Err(cancelled) = this.watch.check() {
            return Poll::Ready(Err(cancelled));
        }
        if let Some(deadline) = this.deadline {
            if this.backend.now() >= deadline {
                return Poll::Ready(Ok(()));
            }
            if !this.covered {
                let backend = this.backend;
                let timer = this.timer.get_or_insert_with(|| backend.timer(deadline));
                if timer.poll_fired(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        this.watch.poll_cancelled(cx).map(Err)
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

/// A future that resolves, with the error a checkpoint would return, once
/// the current scope is cancelled: for `select!`.
///
/// * Ready at once if the scope already is cancelled.
/// * **Pends forever outside any scope**, and inside a
///   [`shield`](crate::shield) (whose scope's cancellation does not show
///   there): nothing can cancel the code then.
/// * Bound to the scope current at its first poll (see the
///   [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use cancelable::{cancelled, CancelScope};
/// use futures::FutureExt;
///
/// # futures::executor::block_on(async {
/// let (sender, receiver) = futures::channel::oneshot::channel::<u32>();
/// let scope = CancelScope::new().timeout(Duration::from_millis(10));
/// let outcome = scope
///     .run(async move {
///         futures::select! {
///             message = receiver.fuse() => format!("got {message:?}"),
///             cancelled = cancelled().fuse() => format!("stopped: {}", cancelled.reason()),
///         }
///     })
///     .await;
/// assert_eq!(outcome.unwrap(), "stopped: timeout");
/// drop(sender);
/// # });
/// ```
pub fn cancelled() -> ScopeCancelled {
    ScopeCancelled {
        watch: Watch::current_at_first_poll(),
    }
}

/// The future returned by [`cancelled`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct ScopeCancelled {
    watch: Watch,
}

impl Future for ScopeCancelled {
    type Output = Cancelled;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cancelled> {
        self.get_mut().watch.poll_cancelled(cx)
    }
}

/// Ends any future early when the current scope (or a token) is cancelled:
/// `Ok(output)` if it finishes first, `Err(Cancelled)` otherwise.
///
/// Implemented for every [`Future`]. The returned future
/// ([`UntilCancelled`]) checks the cancellation *before* each poll of the
/// inner future, so an inner future is never polled once the cancellation
/// shows; it is dropped with the adapter.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, CancellationToken, OrCancelled};
///
/// # futures::executor::block_on(async {
/// // Against the current scope.
/// let outcome = CancelScope::new()
///     .timeout(Duration::from_millis(10))
///     .try_run(async {
///         let value = std::future::pending::<u32>().or_cancelled().await?;
///         Ok::<_, cancelable::Cancelled>(value)
///     })
///     .await;
/// assert!(outcome.unwrap_err().is_timeout());
///
/// // Against an explicit token.
/// let token = CancellationToken::new();
/// assert_eq!(async { 7 }.or_cancelled_by(&token).await.unwrap(), 7);
/// token.cancel();
/// assert!(async { 7 }.or_cancelled_by(&token).await.is_err());
/// # });
/// ```
pub trait OrCancelled: Future + Sized {
    /// Ends the future with `Err(Cancelled)` when the scope current at its
    /// first poll is cancelled. Inside a [`shield`](crate::shield), and
    /// outside any scope, nothing cancels it: it returns `Ok(output)`. See
    /// the [module docs](crate::wait).
    fn or_cancelled(self) -> UntilCancelled<Self> {
        UntilCancelled {
            future: self,
            watch: Watch::current_at_first_poll(),
        }
    }

    /// Ends the future with `Err(Cancelled)` when `token` is cancelled
    /// (with the token's reason and message), shield or not.
    fn or_cancelled_by(self, token: &CancellationToken) -> UntilCancelled<Self> {
        UntilCancelled {
            future: self,
            watch: Watch::token(token),
        }
    }
}

impl<F: Future> OrCancelled for F {}

pin_project! {
    /// The future returned by [`OrCancelled::or_cancelled`] and
    /// [`OrCancelled::or_cancelled_by`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct UntilCancelled<F> {
        #[pin]
        future: F,
        watch: Watch,
    }
}

impl<F> UntilCancelled<F> {
    /// The inner future, to resume it elsewhere (for an `Unpin` future).
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for UntilCancelled<F> {
    type Output = Result<F::Output, Cancelled>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.watch.check()?;
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        this.watch.poll_cancelled(cx).map(Err)
    }
}

impl<F> fmt::Debug for UntilCancelled<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilCancelled")
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}
