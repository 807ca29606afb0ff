//! Cancellation sources: what can cancel a scope, and how several combine.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Blocking, Timer};
use crate::reason::SourceError;
use crate::signal::{listen, SignalGuard};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use crate::token::{CallbackGuard, Cause, ChildLink, Link};
use crate::{CancelReason, CancellationToken, Signal};

/// Something that can cancel a scope: a timeout, a signal, a token, a
/// condition, or a combination of those.
///
/// The shortcuts on [`CancelScope`](crate::CancelScope) cover the usual
/// cases; build a `Source` to combine sources with [`Source::any_of`] and
/// [`Source::all_of`]:
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, Signal, Source};
///
/// // Cancel after 10 s, or on SIGTERM once at least 1 s has passed.
/// let scope = CancelScope::new().source(Source::any_of([
///     Source::timeout(Duration::from_secs(10)),
///     Source::all_of([
///         Source::timeout(Duration::from_secs(1)),
///         Source::signal(Signal::Terminate),
///     ]),
/// ]));
/// # drop(scope);
/// ```
pub struct Source {
    kind: SourceKind,
}

enum SourceKind {
    Timeout(Duration),
    Deadline(Instant),
    Signal(Signal),
    Token(CancellationToken),
    #[cfg(feature = "tokio-util")]
    TokioUtil(tokio_util::sync::CancellationToken),
    Condition(Condition, Duration),
    AnyOf(Vec<Source>),
    AllOf(Vec<Source>),
}

impl Source {
    /// Fires once `duration` has passed since the scope started.
    /// A zero duration fires as soon as the body pends.
    pub fn timeout(duration: Duration) -> Source {
        Source {
            kind: SourceKind::Timeout(duration),
        }
    }

    /// Fires at `deadline` (at once if it has passed and the body pends).
    pub fn deadline(deadline: Instant) -> Source {
        Source {
            kind: SourceKind::Deadline(deadline),
        }
    }

    /// Fires when the process receives `signal`.
    pub fn signal(signal: Signal) -> Source {
        Source {
            kind: SourceKind::Signal(signal),
        }
    }

    /// Fires when `token` is cancelled; the scope reports the token's reason.
    pub fn token(token: &CancellationToken) -> Source {
        Source {
            kind: SourceKind::Token(token.clone()),
        }
    }

    /// Fires when a `tokio_util` token is cancelled (reason [`CancelReason::Manual`]).
    #[cfg(feature = "tokio-util")]
    pub fn tokio_util_token(token: &tokio_util::sync::CancellationToken) -> Source {
        Source {
            kind: SourceKind::TokioUtil(token.clone()),
        }
    }

    /// Fires when `predicate` returns `true`. It is checked when the body
    /// first pends and then every `check_every`.
    ///
    /// The predicate is a closure returning `bool` — run on a blocking
    /// thread, so it may do blocking I/O — or returning a future of `bool`,
    /// polled by the scope. A predicate that panics cancels the scope with
    /// [`CancelReason::Error`] carrying the panic message. A zero
    /// `check_every` is refused the same way, since it would spin.
    pub fn condition<P, M>(predicate: P, check_every: Duration) -> Source
    where
        P: Predicate<M>,
    {
        Source {
            kind: SourceKind::Condition(predicate.into_condition(), check_every),
        }
    }

    /// The token of a plain token source, or the source itself.
    pub(crate) fn into_token(self) -> Result<CancellationToken, Source> {
        match self.kind {
            SourceKind::Token(token) => Ok(token),
            kind => Err(Source { kind }),
        }
    }

    /// Fires when the first of `sources` fires.
    pub fn any_of(sources: impl IntoIterator<Item = Source>) -> Source {
        Source {
            kind: SourceKind::AnyOf(sources.into_iter().collect()),
        }
    }

    /// Fires once every one of `sources` has fired, with the reason of the
    /// last one. An empty `all_of` never fires.
    pub fn all_of(sources: impl IntoIterator<Item = Source>) -> Source {
        Source {
            kind: SourceKind::AllOf(sources.into_iter().collect()),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Timeout(duration) => f.debug_tuple("Timeout").field(duration).finish(),
            SourceKind::Deadline(deadline) => f.debug_tuple("Deadline").field(deadline).finish(),
            SourceKind::Signal(signal) => f.debug_tuple("Signal").field(signal).finish(),
            SourceKind::Token(token) => f.debug_tuple("Token").field(token).finish(),
            #[cfg(feature = "tokio-util")]
            SourceKind::TokioUtil(token) => f.debug_tuple("TokioUtilToken").field(token).finish(),
            SourceKind::Condition(_, every) => f.debug_tuple("Condition").field(every).finish(),
            SourceKind::AnyOf(sources) => f.debug_tuple("AnyOf").field(sources).finish(),
            SourceKind::AllOf(sources) => f.debug_tuple("AllOf").field(sources).finish(),
        }
    }
}

/// A condition predicate: `Fn() -> bool` (run on a blocking thread) or
/// `Fn() -> impl Future<Output = bool>` (polled by the scope).
///
/// The `Marker` parameter only tells the two apart; it is inferred.
pub trait Predicate<Marker>: Send + Sync + 'static {
    #[doc(hidden)]
    fn into_condition(self) -> Condition;
}

/// Marker of [`Predicate`] for blocking `Fn() -> bool` predicates.
#[derive(Debug)]
pub enum BlockingPredicate {}

/// Marker of [`Predicate`] for `Fn() -> impl Future<Output = bool>` predicates.
#[derive(Debug)]
pub enum AsyncPredicate {}

impl<F> Predicate<BlockingPredicate> for F
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    fn into_condition(self) -> Condition {
        Condition::Blocking(Arc::new(self))
    }
}

impl<F, Fut> Predicate<AsyncPredicate> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    fn into_condition(self) -> Condition {
        Condition::Async(Arc::new(move || Box::pin(self()) as BoxBoolFuture))
    }
}

type BoxBoolFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A type-erased condition predicate (not public API).
#[doc(hidden)]
pub enum Condition {
    Blocking(Arc<dyn Fn() -> bool + Send + Sync>),
    Async(Arc<dyn Fn() -> BoxBoolFuture + Send + Sync>),
}

/// Where a source delivers its firing: the scope's token, or a node of a
/// composite source.
#[derive(Clone)]
pub(crate) enum Sink {
    Token(CancellationToken),
    AnyOf(Arc<AnyOfNode>),
    AllOf(Arc<AllOfNode>, usize),
}

pub(crate) struct AnyOfNode {
    fired: AtomicBool,
    parent: Sink,
}

pub(crate) struct AllOfNode {
    fired: Vec<AtomicBool>,
    remaining: AtomicUsize,
    parent: Sink,
}

impl Sink {
    pub(crate) fn fire(&self, reason: CancelReason) {
        self.fire_cause(Cause {
            reason,
            message: None,
        });
    }

    pub(crate) fn fire_cause(&self, cause: Cause) {
        match self {
            Sink::Token(token) => {
                token.cancel_cause(cause);
            }
            Sink::AnyOf(node) => {
                if !node.fired.swap(true, Ordering::AcqRel) {
                    node.parent.fire_cause(cause);
                }
            }
            Sink::AllOf(node, index) => {
                if !node.fired[*index].swap(true, Ordering::AcqRel)
                    && node.remaining.fetch_sub(1, Ordering::AcqRel) == 1
                {
                    node.parent.fire_cause(cause);
                }
            }
        }
    }
}

/// The live state of a scope's sources while it runs. Dropping it
/// unregisters every signal listener and token callback.
#[derive(Default)]
pub(crate) struct ArmedSources {
    signals: Vec<SignalGuard>,
    callbacks: Vec<CallbackGuard>,
    links: Vec<ChildLink>,
    polled: Vec<Polled>,
}

impl ArmedSources {
    /// Starts `source`, delivering into `sink`. Timers and conditions are
    /// only started when [`poll`](Self::poll) runs, i.e. once the body pends.
    pub(crate) fn arm(
        &mut self,
        source: Source,
        sink: Sink,
        started: Instant,
    ) -> Result<(), SourceError> {
        match source.kind {
            SourceKind::Timeout(duration) => {
                let at = started.checked_add(duration);
                self.polled.push(Polled::Deadline {
                    at,
                    timer: None,
                    sink,
                });
            }
            SourceKind::Deadline(at) => self.polled.push(Polled::Deadline {
                at: Some(at),
                timer: None,
                sink,
            }),
            SourceKind::Signal(signal) => self.signals.push(listen(signal, sink)?),
            // A token feeding the scope directly: link the scope's token
            // under it, as a child that reports the token's own reason.
            SourceKind::Token(token) if matches!(sink, Sink::Token(_)) => {
                let Sink::Token(scope_token) = &sink else {
                    unreachable!("matched above")
                };
                if let Some(link) = token.attach(scope_token, Link::Transparent) {
                    self.links.push(link);
                }
            }
            SourceKind::Token(token) => {
                let guard = token.on_cancel_cause(Box::new(move |cause: &Cause| {
                    sink.fire_cause(cause.clone());
                }));
                self.callbacks.push(guard);
            }
            #[cfg(feature = "tokio-util")]
            SourceKind::TokioUtil(token) => self.polled.push(Polled::TokioUtil {
                cancelled: Box::pin(token.cancelled_owned()),
                sink,
            }),
            SourceKind::Condition(condition, check_every) => {
                if check_every.is_zero() {
                    return Err(SourceError::new(
                        "a condition's check interval must be greater than zero (try 100ms)",
                    ));
                }
                self.polled.push(Polled::Condition(ConditionState {
                    condition,
                    check_every,
                    timer: None,
                    check: None,
                    sink,
                }));
            }
            SourceKind::AnyOf(sources) => {
                let node = Arc::new(AnyOfNode {
                    fired: AtomicBool::new(false),
                    parent: sink,
                });
                for source in sources {
                    self.arm(source, Sink::AnyOf(node.clone()), started)?;
                }
            }
            SourceKind::AllOf(sources) => {
                let node = Arc::new(AllOfNode {
                    fired: sources.iter().map(|_| AtomicBool::new(false)).collect(),
                    remaining: AtomicUsize::new(sources.len()),
                    parent: sink,
                });
                for (index, source) in sources.into_iter().enumerate() {
                    self.arm(source, Sink::AllOf(node.clone(), index), started)?;
                }
            }
        }
        Ok(())
    }

    /// Polls the sources that need polling: timers, conditions, foreign tokens.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, backend: Backend) {
        self.polled
            .retain_mut(|polled| polled.poll(cx, backend).is_pending());
    }
}

enum Polled {
    Deadline {
        /// `None` if the deadline is too far to represent: never fires.
        at: Option<Instant>,
        timer: Option<Timer>,
        sink: Sink,
    },
    Condition(ConditionState),
    #[cfg(feature = "tokio-util")]
    TokioUtil {
        cancelled: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
        sink: Sink,
    },
}

impl Polled {
    /// `Ready` once the source has fired (or can never fire) and can be dropped.
    fn poll(&mut self, cx: &mut Context<'_>, backend: Backend) -> Poll<()> {
        match self {
            Polled::Deadline { at, timer, sink } => {
                let Some(at) = *at else {
                    return Poll::Ready(());
                };
                let timer = match timer {
                    Some(timer) => timer,
                    None if backend.now() >= at => {
                        sink.fire(CancelReason::Timeout);
                        return Poll::Ready(());
                    }
                    None => timer.insert(backend.timer(at)),
                };
                if timer.poll_fired(cx).is_ready() {
                    sink.fire(CancelReason::Timeout);
                    return Poll::Ready(());
                }
                Poll::Pending
            }
            Polled::Condition(state) => state.poll(cx, backend),
            #[cfg(feature = "tokio-util")]
            Polled::TokioUtil { cancelled, sink } => {
                if cancelled.as_mut().poll(cx).is_ready() {
                    sink.fire(CancelReason::Manual);
                    return Poll::Ready(());
                }
                Poll::Pending
            }
        }
    }
}

struct ConditionState {
    condition: Condition,
    check_every: Duration,
    timer: Option<Timer>,
    check: Option<Check>,
    sink: Sink,
}

enum Check {
    Blocking(Blocking<Result<bool, String>>),
    Async(BoxBoolFuture),
    /// Making the predicate's future panicked.
    Failed(String),
}

impl ConditionState {
    fn poll(&mut self, cx: &mut Context<'_>, backend: Backend) -> Poll<()> {
        loop {
            if let Some(check) = &mut self.check {
                let outcome = match check {
                    Check::Blocking(task) => match task.poll_done(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(outcome) => outcome,
                    },
                    Check::Async(future) => {
                        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                            Ok(Poll::Pending) => return Poll::Pending,
                            Ok(Poll::Ready(met)) => Ok(met),
                            Err(panic) => Err(panic_message(panic)),
                        }
                    }
                    Check::Failed(message) => Err(std::mem::take(message)),
                };
                self.check = None;
                match outcome {
                    Ok(true) => {
                        self.sink.fire(CancelReason::Condition);
                        return Poll::Ready(());
                    }
                    Ok(false) => {
                        // An interval too long to represent means: never
                        // check again.
                        let Some(next) = backend.now().checked_add(self.check_every) else {
                            return Poll::Ready(());
                        };
                        match &mut self.timer {
                            Some(timer) => timer.reset(next),
                            None => self.timer = Some(backend.timer(next)),
                        }
                    }
                    Err(message) => {
                        self.sink.fire(CancelReason::Error(SourceError::new(format!(
                            "the condition predicate panicked: {message}"
                        ))));
                        return Poll::Ready(());
                    }
                }
            }
            // The first check runs as soon as the body pends; later ones
            // when the interval timer fires.
            if let Some(timer) = &mut self.timer {
                if timer.poll_fired(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.check = Some(self.start_check(backend));
        }
    }

    fn start_check(&self, backend: Backend) -> Check {
        match &self.condition {
            Condition::Blocking(predicate) => {
                let predicate = predicate.clone();
                Check::Blocking(backend.run_blocking(move || {
                    catch_unwind(AssertUnwindSafe(|| predicate())).map_err(panic_message)
                }))
            }
            Condition::Async(make) => match catch_unwind(AssertUnwindSafe(|| make())) {
                Ok(future) => Check::Async(future),
                Err(panic) => Check::Failed(panic_message(panic)),
            },
        }
    }
}

/// The text of a panic payload, as the default panic hook would print it.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
