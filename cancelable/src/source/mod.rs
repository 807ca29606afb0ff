//! Cancellation sources: what can cancel a scope, and how several combine.
//!
//! This module is the public [`Source`] and the condition predicates;
//! `sink.rs` is how a firing source reaches its scope (directly, or through
//! any-of / all-of nodes); `armed.rs` is the sources of a running scope:
//! registered, polled, and released when the scope ends.

mod armed;
pub(crate) mod dispatcher;
#[cfg(feature = "resource")]
mod resource;
mod sink;

pub(crate) use armed::ArmedSources;
/// The graceful shutdown's signal watch (see [`dispatcher::Arrivals`]).
#[cfg(feature = "axum")]
pub(crate) use dispatcher::{watch as watch_signal, Arrivals as SignalArrivals, SignalGuard};
#[cfg(feature = "resource")]
pub use resource::{ResourceError, ResourceLimits};
pub(crate) use sink::Sink;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::signal::SecondSignal;
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
    Signal(Signal, SecondSignal),
    Token(CancellationToken),
    Future(BoxReasonFuture),
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
            kind: SourceKind::Signal(signal, SecondSignal::Exit),
        }
    }

    /// Fires when `token` is cancelled; the scope reports the token's reason.
    #[inline]
    pub fn token(token: &CancellationToken) -> Source {
        Source {
            kind: SourceKind::Token(token.clone()),
        }
    }

    /// Fires when a `tokio_util` token is cancelled (reason [`CancelReason::Manual`]).
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    pub fn tokio_util_token(token: &tokio_util::sync::CancellationToken) -> Source {
        Source::future(token.clone().cancelled_owned())
    }

    /// Fires when `future` completes (reason [`CancelReason::Manual`]):
    /// a shutdown future, a channel's `recv`, a foreign token's
    /// `cancelled()` become sources without code of their own.
    ///
    /// The scope polls `future` while its body pends, on the body's task;
    /// it is dropped when the scope ends. A `future` that panics cancels
    /// the scope with [`CancelReason::Error`] carrying the panic message.
    ///
    /// ```
    /// use cancelable::{CancelReason, CancelScope, Source};
    ///
    /// # futures::executor::block_on(async {
    /// let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    /// stop.send(()).unwrap();
    /// let outcome = CancelScope::new()
    ///     .source(Source::future(async move {
    ///         let _ = stopped.await;
    ///     }))
    ///     .run(std::future::pending::<()>())
    ///     .await;
    /// assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Manual);
    /// # });
    /// ```
    pub fn future<F>(future: F) -> Source
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Source::future_with_reason(async move {
            future.await;
            CancelReason::Manual
        })
    }

    /// Like [`future`](Self::future), with the reason the future completes
    /// with.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::{CancelReason, CancelScope, Source};
    ///
    /// # futures::executor::block_on(async {
    /// let outcome = CancelScope::new()
    ///     .source(Source::future_with_reason(async { CancelReason::Timeout }))
    ///     .run(std::future::pending::<()>())
    ///     .await;
    /// assert_eq!(outcome.unwrap_err().reason(), &CancelReason::Timeout);
    /// # });
    /// ```
    pub fn future_with_reason<F>(future: F) -> Source
    where
        F: Future<Output = CancelReason> + Send + 'static,
    {
        Source {
            kind: SourceKind::Future(Box::pin(future)),
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
    #[inline]
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

    /// Sets what a second arrival of the signals in this source does (see
    /// [`SecondSignal`]), composites included.
    pub(crate) fn set_second_signal(&mut self, action: SecondSignal) {
        match &mut self.kind {
            SourceKind::Signal(_, second) => *second = action,
            SourceKind::AnyOf(sources) | SourceKind::AllOf(sources) => {
                for source in sources {
                    source.set_second_signal(action);
                }
            }
            _ => {}
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
            SourceKind::Signal(signal, second) => {
                f.debug_tuple("Signal").field(signal).field(second).finish()
            }
            SourceKind::Token(token) => f.debug_tuple("Token").field(token).finish(),
            SourceKind::Future(_) => f.debug_tuple("Future").finish_non_exhaustive(),
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
type BoxReasonFuture = Pin<Box<dyn Future<Output = CancelReason> + Send>>;

/// A type-erased condition predicate (not public API).
#[doc(hidden)]
pub enum Condition {
    Blocking(Arc<dyn Fn() -> bool + Send + Sync>),
    Async(Arc<dyn Fn() -> BoxBoolFuture + Send + Sync>),
    /// Run on a blocking thread: `Some(message)` once the condition holds,
    /// the message saying what was met (the resource source's readings).
    Described(Arc<dyn Fn() -> Option<String> + Send + Sync>),
}
