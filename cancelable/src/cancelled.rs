//! The error returned when a scope is cancelled.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::reason::Cause;
use crate::CancelReason;

/// The error a cancelled scope or checkpoint returns.
///
/// It says why ([`reason`](Cancelled::reason)), with an optional message,
/// which operation was cancelled, and two times: how long it had run when
/// the cancellation was asked for ([`cancelled_after`](Cancelled::cancelled_after))
/// and when it ended ([`elapsed`](Cancelled::elapsed)) — apart when a
/// grace period let it clean up. Its `Display` shows both:
/// ``operation `export` (#7) cancelled at 1.0s, ended after 2.5s: signal SIGINT``.
/// Bodies that return their own error type convert it with `From<Cancelled>`:
///
/// ```
/// # use cancelable::Cancelled;
/// #[derive(Debug)]
/// enum JobError {
///     Cancelled(Cancelled),
///     Io(std::io::Error),
/// }
///
/// impl From<Cancelled> for JobError {
///     fn from(cancelled: Cancelled) -> Self {
///         JobError::Cancelled(cancelled)
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Cancelled {
    // Boxed so that `Result<(), Cancelled>`, which every checkpoint
    // returns, is one pointer wide.
    inner: Box<Details>,
}

/// What the error knows, kept as the scope had it: the cause shared with
/// the token that recorded it, the times as instants. The durations and
/// the text are worked out only when read (a cancelled scope's error is
/// often dropped unread).
#[derive(Clone)]
struct Details {
    why: Why,
    operation: Option<Cow<'static, str>>,
    operation_id: Option<u64>,
    times: Option<Times>,
    grace: GraceOutcome,
}

/// The reason and message.
#[derive(Clone)]
enum Why {
    /// Its own: an error made from a reason (and a message).
    Own(CancelReason, Option<Arc<str>>),
    /// The cause a token recorded, shared with it rather than copied.
    Shared(Arc<Cause>),
}

/// A scope's times, as instants: `started` and `ended` on the scope's
/// clock, `asked` (when the cancel was asked for) on the real clock.
#[derive(Clone, Copy)]
pub(crate) struct Times {
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    pub(crate) asked: Instant,
}

impl Times {
    /// How long the scope had run when the error was made.
    fn elapsed(&self) -> Duration {
        self.ended.saturating_duration_since(self.started)
    }

    /// When the cancel came: the time since it, taken off the elapsed time
    /// (clamped to it). `asked` is on the real clock, which the scope's
    /// clock reads unless a test paused it.
    fn cancelled_after(&self) -> Duration {
        let since = self.ended.saturating_duration_since(self.asked);
        self.elapsed().saturating_sub(since)
    }
}

/// What became of a scope's body after the scope was cancelled, as
/// [`Cancelled::grace_outcome`] reports it: whether a grace period let it
/// finish (see [`CancelScope::grace`](crate::CancelScope::grace)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GraceOutcome {
    /// The scope had no grace period (none was set, or a zero one): its
    /// body was dropped at the `.await` it was pending on. Also the
    /// outcome of an error that did not come from a scope, such as a
    /// cancelled token's.
    NoGrace,
    /// Returned inside a scope that has a grace period, by a checkpoint or
    /// a cancellation-aware wait: the scope goes on polling the body for
    /// the grace period, so the body can clean up and return.
    InGrace,
    /// The scope was cancelled and its body returned within the grace
    /// period: its cleanup ran to its end.
    FinishedWithinGrace,
    /// The grace period ran out before the body returned (or was ended
    /// early, by a second signal or by the end of an enclosing scope's
    /// grace): the body was dropped at the `.await` it was pending on.
    DroppedAfterGrace,
}

impl fmt::Display for GraceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GraceOutcome::NoGrace => "no grace period: the body was dropped at its await",
            GraceOutcome::InGrace => "the grace period runs: clean up and return",
            GraceOutcome::FinishedWithinGrace => "the body finished within its grace period",
            GraceOutcome::DroppedAfterGrace => "the body was dropped when its grace period ran out",
        })
    }
}

impl Cancelled {
    /// A cancellation with `reason` and nothing else known.
    pub fn new(reason: CancelReason) -> Self {
        Cancelled::with_why(Why::Own(reason, None))
    }

    fn with_why(why: Why) -> Self {
        Cancelled {
            inner: Box::new(Details {
                why,
                operation: None,
                operation_id: None,
                times: None,
                grace: GraceOutcome::NoGrace,
            }),
        }
    }

    /// The error a checkpoint reports for a token's recorded `cause`,
    /// shared with the token rather than copied.
    pub(crate) fn of_cause(cause: Arc<Cause>) -> Self {
        Cancelled::with_why(Why::Shared(cause))
    }

    /// The error of a scope cancelled with `cause` (shared with the token
    /// that recorded it): its operation, its times when known, and whether
    /// a grace period applies.
    pub(crate) fn of_scope(
        cause: Arc<Cause>,
        name: Option<Cow<'static, str>>,
        id: u64,
        times: Option<Times>,
        grace: GraceOutcome,
    ) -> Self {
        Cancelled {
            inner: Box::new(Details {
                why: Why::Shared(cause),
                operation: name,
                operation_id: Some(id),
                times,
                grace,
            }),
        }
    }

    pub(crate) fn with_message(mut self, message: Option<Arc<str>>) -> Self {
        let reason = match self.inner.why {
            Why::Own(reason, _) => reason,
            Why::Shared(cause) => cause.reason.clone(),
        };
        self.inner.why = Why::Own(reason, message);
        self
    }

    pub(crate) fn with_grace_outcome(mut self, grace: GraceOutcome) -> Self {
        self.inner.grace = grace;
        self
    }

    /// What became of the scope's body: dropped at once (no grace period),
    /// finished within its grace period, or dropped when the grace period
    /// ran out (see [`CancelScope::grace`](crate::CancelScope::grace)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::{CancelScope, GraceOutcome};
    ///
    /// # futures::executor::block_on(async {
    /// let cancelled = CancelScope::new()
    ///     .timeout(Duration::from_millis(5))
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(cancelled.grace_outcome(), GraceOutcome::NoGrace);
    /// # });
    /// ```
    pub fn grace_outcome(&self) -> GraceOutcome {
        self.inner.grace
    }

    /// Why the scope was cancelled.
    pub fn reason(&self) -> &CancelReason {
        match &self.inner.why {
            Why::Own(reason, _) => reason,
            Why::Shared(cause) => &cause.reason,
        }
    }

    /// The message given with the cancellation, if any
    /// (see [`CancellationToken::cancel_with`](crate::CancellationToken::cancel_with)).
    pub fn message(&self) -> Option<&str> {
        match &self.inner.why {
            Why::Own(_, message) => message.as_deref(),
            Why::Shared(cause) => cause.message.as_deref(),
        }
    }

    /// The name of the cancelled operation, if the scope had one.
    pub fn operation_name(&self) -> Option<&str> {
        self.inner.operation.as_deref()
    }

    /// The id of the cancelled operation, if it came from a scope.
    pub fn operation_id(&self) -> Option<u64> {
        self.inner.operation_id
    }

    /// How long the scope had run when it ended (or, for the error a
    /// checkpoint inside it returns, when the checkpoint saw the
    /// cancellation): its cleanup within a grace period included. `None`
    /// for a cancellation that did not come from a scope.
    pub fn elapsed(&self) -> Option<Duration> {
        self.inner.times.as_ref().map(Times::elapsed)
    }

    /// How long the scope had run when its cancellation was asked for (the
    /// token cancelled, the signal delivered, the deadline reached): `Ctrl-C
    /// at 1.0s`, where [`elapsed`](Self::elapsed) is the end of the flush
    /// that followed. Zero for a scope that started already cancelled;
    /// `None` for a cancellation that did not come from a scope.
    ///
    /// The cancel is timed on the real clock: under a paused or manual
    /// test clock this is only an estimate, between zero and `elapsed`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::{shield, CancelScope, Cancelled};
    ///
    /// # futures::executor::block_on(async {
    /// let outcome: Result<(), Cancelled> = CancelScope::new()
    ///     .timeout(Duration::from_millis(10))
    ///     .grace(Duration::from_secs(5))
    ///     .try_run(async {
    ///         let cancelled = cancelable::sleep(Duration::from_secs(5)).await.unwrap_err();
    ///         // Flush for 20 ms more.
    ///         shield(async_io::Timer::after(Duration::from_millis(20))).await;
    ///         Err(cancelled)
    ///     })
    ///     .await;
    /// let cancelled = outcome.unwrap_err();
    /// let (at, ended) = (cancelled.cancelled_after().unwrap(), cancelled.elapsed().unwrap());
    /// assert!(at >= Duration::from_millis(10) && ended >= at + Duration::from_millis(20));
    /// assert!(cancelled.to_string().contains(&format!("cancelled at {at:.1?}, ended after {ended:.1?}")));
    /// # });
    /// ```
    pub fn cancelled_after(&self) -> Option<Duration> {
        self.inner.times.as_ref().map(Times::cancelled_after)
    }

    /// `true` if the root reason is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.reason().is_timeout()
    }
}

// The same text as a derived `Debug` of the fields the error had when it
// kept each value made (`Cancelled { inner: Details { reason, .. } }`).
impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Fields<'a>(&'a Cancelled);
        impl fmt::Debug for Fields<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let cancelled = self.0;
                f.debug_struct("Details")
                    .field("reason", cancelled.reason())
                    .field("message", &cancelled.message())
                    .field("operation", &cancelled.operation_name())
                    .field("operation_id", &cancelled.operation_id())
                    .field("elapsed", &cancelled.elapsed())
                    .field("cancelled_after", &cancelled.cancelled_after())
                    .field("grace", &cancelled.inner.grace)
                    .finish()
            }
        }
        f.debug_struct("Cancelled")
            .field("inner", &Fields(self))
            .finish()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.inner.operation, self.inner.operation_id) {
            (Some(name), Some(id)) => write!(f, "operation `{name}` (#{id}) cancelled")?,
            (None, Some(id)) => write!(f, "operation #{id} cancelled")?,
            _ => f.write_str("cancelled")?,
        }
        match (self.cancelled_after(), self.elapsed()) {
            (Some(at), Some(ended)) => write!(f, " at {at:.1?}, ended after {ended:.1?}")?,
            (None, Some(ended)) => write!(f, " after {ended:.1?}")?,
            _ => {}
        }
        let reason = self.reason();
        write!(f, ": {reason}")?;
        // A message that says what the reason says is not said twice.
        if let Some(message) = self
            .message()
            .filter(|message| !reason.root().says(message))
        {
            write!(f, " ({message})")?;
        }
        match self.inner.grace {
            // The default: nothing to add.
            GraceOutcome::NoGrace => {}
            grace => write!(f, "; {grace}")?,
        }
        Ok(())
    }
}

impl std::error::Error for Cancelled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.reason().root() {
            CancelReason::Error(error) => Some(error),
            _ => None,
        }
    }
}
