//! Why a scope or token was cancelled.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::Signal;

/// Why a token or scope was cancelled.
///
/// The first reason recorded wins: a token cancelled by a timeout and then
/// by a signal reports [`CancelReason::Timeout`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum CancelReason {
    /// The scope's timeout elapsed or its deadline passed.
    Timeout,
    /// An operating-system signal the scope listened for arrived.
    Signal(Signal),
    /// A condition source's predicate returned `true`.
    Condition,
    /// User code called [`CancellationToken::cancel`](crate::CancellationToken::cancel)
    /// (or a handle's `cancel`, an operator through the registry): `Display`
    /// "cancelled manually", the message saying by whom or why.
    Manual,
    /// Something further out was cancelled: an enclosing scope or a parent
    /// token. Carries the reason that fired there (never itself `Parent`),
    /// so that a caller receiving an inner scope's error still learns it was,
    /// say, a timeout.
    Parent(Box<CancelReason>),
    /// A source failed, for example a condition predicate panicked or a
    /// signal handler could not be installed. The scope is cancelled rather
    /// than left running without the protection it asked for.
    Error(SourceError),
    /// The client the operation served went away: the services layer
    /// (`http::RequestScopeLayer`) cancels a request's scope with it when
    /// the connection closes or the HTTP/2 stream is reset — its own cause,
    /// apart from an operator's [`Manual`](Self::Manual) cancel.
    ClientDisconnected,
}

impl CancelReason {
    /// The reason that actually fired: `self`, or the one carried by
    /// [`CancelReason::Parent`].
    pub fn root(&self) -> &CancelReason {
        match self {
            CancelReason::Parent(inner) => inner.root(),
            other => other,
        }
    }

    /// `true` if the root reason is [`CancelReason::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self.root(), CancelReason::Timeout)
    }

    /// The signal behind this cancellation, if the root reason is a signal.
    pub fn signal(&self) -> Option<Signal> {
        match self.root() {
            CancelReason::Signal(signal) => Some(*signal),
            _ => None,
        }
    }

    /// `true` if the cancellation came from an enclosing scope or parent token.
    pub fn is_from_parent(&self) -> bool {
        matches!(self, CancelReason::Parent(_))
    }

    /// `true` if `message` only repeats what this reason's `Display` says.
    pub(crate) fn says(&self, message: &str) -> bool {
        match self {
            CancelReason::ClientDisconnected => message == "client disconnected",
            _ => false,
        }
    }

    /// Wraps `self` as seen from a child: `Parent(root)`.
    pub(crate) fn for_child(&self) -> CancelReason {
        CancelReason::Parent(Box::new(self.root().clone()))
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Timeout => f.write_str("timeout"),
            CancelReason::Signal(signal) => write!(f, "signal {signal}"),
            CancelReason::Condition => f.write_str("condition met"),
            CancelReason::Manual => f.write_str("cancelled manually"),
            CancelReason::ClientDisconnected => f.write_str("client disconnected"),
            CancelReason::Parent(inner) => write!(f, "enclosing scope cancelled ({inner})"),
            CancelReason::Error(error) => write!(f, "cancellation source failed: {error}"),
        }
    }
}

/// The reason and message recorded by the first cancel, and when it was
/// asked for.
#[derive(Clone)]
pub(crate) struct Cause {
    pub(crate) reason: CancelReason,
    pub(crate) message: Option<Arc<str>>,
    /// When the cancel was asked for (the real clock), which the children
    /// it reaches share: the operations registry measures the cancellation
    /// lag from it without a callback of its own on every token.
    pub(crate) at: Instant,
    /// [`for_child`](Self::for_child), made once and shared by every child
    /// that takes it (see [`shared_for_child`](Self::shared_for_child)).
    child: OnceLock<Arc<Cause>>,
}

impl Cause {
    /// A cause without a message, asked for now.
    pub(crate) fn new(reason: CancelReason) -> Self {
        Cause {
            reason,
            message: None,
            at: Instant::now(),
            child: OnceLock::new(),
        }
    }

    /// A cause with a message for logs and errors (an empty message is
    /// recorded as none), asked for now.
    pub(crate) fn with_message(reason: CancelReason, message: String) -> Self {
        Cause {
            reason,
            message: (!message.is_empty()).then(|| Arc::from(message)),
            at: Instant::now(),
            child: OnceLock::new(),
        }
    }

    /// The cause as a child sees it: `Parent(root reason)`, same message,
    /// same moment.
    #[inline]
    pub(crate) fn for_child(&self) -> Self {
        Cause {
            reason: self.reason.for_child(),
            message: self.message.clone(),
            at: self.at,
            child: OnceLock::new(),
        }
    }

    /// [`for_child`](Self::for_child), shared: made by the first child that
    /// asks, then lent to the others — the children of one cancelled node
    /// (token children, or a group's children without shared state) record
    /// one cause between them, not one allocation each.
    #[inline]
    pub(crate) fn shared_for_child(&self) -> Arc<Cause> {
        self.child
            .get_or_init(|| Arc::new(self.for_child()))
            .clone()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cause")
            .field("reason", &self.reason)
            .field("message", &self.message)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// A cancellation source that failed, carried by [`CancelReason::Error`].
#[derive(Clone)]
pub struct SourceError {
    message: Arc<str>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl SourceError {
    /// A source error with a message and no underlying cause.
    pub fn new(message: impl Into<String>) -> Self {
        SourceError {
            message: Arc::from(message.into()),
            cause: None,
        }
    }

    /// A source error caused by `cause` (an OS error, say).
    pub fn with_cause(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SourceError {
            message: Arc::from(message.into()),
            cause: Some(Arc::new(cause)),
        }
    }

    /// What failed, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl PartialEq for SourceError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceError")
            .field("message", &self.message)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl serde::Serialize for SourceError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{CancelReason, Cause};

    #[test]
    fn the_children_of_one_cause_share_one_parent_cause() {
        let cause = Cause::with_message(CancelReason::Timeout, "deadline".to_owned());
        let first = cause.shared_for_child();
        let second = cause.shared_for_child();
        assert!(Arc::ptr_eq(&first, &second), "made once, then lent");
        assert_eq!(
            first.reason,
            CancelReason::Parent(Box::new(CancelReason::Timeout))
        );
        assert_eq!(first.message.as_deref(), Some("deadline"));
        assert_eq!(first.at, cause.at);
        // A grandchild sees the root reason, not Parent(Parent(..)).
        assert_eq!(first.shared_for_child().reason, first.reason);
    }
}
