//! The error returned when a scope is cancelled.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::CancelReason;

/// The error a cancelled scope or checkpoint returns.
///
/// It says why ([`reason`](Cancelled::reason)), with an optional message,
/// which operation was cancelled, and how long it had run. Bodies that
/// return their own error type convert it with `From<Cancelled>`:
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
#[derive(Clone, Debug)]
pub struct Cancelled {
    // Boxed so that `Result<(), Cancelled>`, which every checkpoint
    // returns, is one pointer wide.
    inner: Box<Details>,
}

#[derive(Clone, Debug)]
struct Details {
    reason: CancelReason,
    message: Option<Arc<str>>,
    operation: Option<Cow<'static, str>>,
    operation_id: Option<u64>,
    elapsed: Option<Duration>,
}

impl Cancelled {
    /// A cancellation with `reason` and nothing else known.
    pub fn new(reason: CancelReason) -> Self {
        Cancelled {
            inner: Box::new(Details {
                reason,
                message: None,
                operation: None,
                operation_id: None,
                elapsed: None,
            }),
        }
    }

    pub(crate) fn with_message(mut self, message: Option<Arc<str>>) -> Self {
        self.inner.message = message;
        self
    }

    pub(crate) fn with_operation(
        mut self,
        name: Option<Cow<'static, str>>,
        id: u64,
        elapsed: Option<Duration>,
    ) -> Self {
        self.inner.operation = name;
        self.inner.operation_id = Some(id);
        self.inner.elapsed = elapsed;
        self
    }

    /// Why the scope was cancelled.
    pub fn reason(&self) -> &CancelReason {
        &self.inner.reason
    }

    /// The message given with the cancellation, if any
    /// (see [`CancellationToken::cancel_with`](crate::CancellationToken::cancel_with)).
    pub fn message(&self) -> Option<&str> {
        self.inner.message.as_deref()
    }

    /// The name of the cancelled operation, if the scope had one.
    pub fn operation_name(&self) -> Option<&str> {
        self.inner.operation.as_deref()
    }

    /// The id of the cancelled operation, if it came from a scope.
    pub fn operation_id(&self) -> Option<u64> {
        self.inner.operation_id
    }

    /// How long the scope had run when it was cancelled.
    pub fn elapsed(&self) -> Option<Duration> {
        self.inner.elapsed
    }

    /// `true` if the root reason is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner.reason.is_timeout()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.inner.operation, self.inner.operation_id) {
            (Some(name), Some(id)) => write!(f, "operation `{name}` (#{id}) cancelled")?,
            (None, Some(id)) => write!(f, "operation #{id} cancelled")?,
            _ => f.write_str("cancelled")?,
        }
        if let Some(elapsed) = self.inner.elapsed {
            write!(f, " after {elapsed:.3?}")?;
        }
        write!(f, ": {}", self.inner.reason)?;
        if let Some(message) = &self.inner.message {
            write!(f, " ({message})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Cancelled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.inner.reason.root() {
            CancelReason::Error(error) => Some(error),
            _ => None,
        }
    }
}
