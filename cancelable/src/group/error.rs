//! What a task group and its children end with when they do not succeed.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::Cancelled;

/// A boxed error: what the body of a group and its children's errors are
/// converted into.
pub(crate) type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why a child task of a [`TaskGroup`](crate::group::TaskGroup) did not produce
/// its value: what its [`TaskHandle`](crate::group::TaskHandle) resolves to
/// instead, and what [`TaskOutcome::error`](crate::group::TaskOutcome::error)
/// holds.
///
/// Cheap to clone: the child's own error is shared, so the handle and the
/// group's [`GroupError`] hold the same one.
///
/// ```
/// use cancelable::group::{TaskError, TaskGroup};
///
/// # futures::executor::block_on(async {
/// let outcome = TaskGroup::new()
///     .run(|group| async move {
///         let child = group.start_soon(async { Err::<(), _>("disk full") });
///         let error = child.await.unwrap_err();
///         assert!(matches!(error, TaskError::Failed(_)));
///         assert_eq!(error.to_string(), "task failed: disk full");
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await;
/// // The failure is the group's too.
/// assert_eq!(outcome.unwrap_err().failures().len(), 1);
/// # });
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// The task returned this `Err` of its own.
    Failed(Arc<dyn Error + Send + Sync + 'static>),
    /// The task panicked, with this message (the panic itself is re-raised
    /// by the group, see [`FailurePolicy`](crate::group::FailurePolicy)).
    Panicked(Arc<str>),
    /// The task was cancelled: by its own scope's sources, its handle's
    /// [`cancel`](crate::group::TaskHandle::cancel), or its group (reason
    /// [`CancelReason::Parent`](crate::CancelReason::Parent)), or it was
    /// dropped when its group's grace period ran out.
    Cancelled(Cancelled),
    /// The task was never started: its group was closed (see
    /// [`Group::close`](crate::group::Group::close)), had run out of its grace
    /// period, or had already ended.
    NotStarted,
}

impl TaskError {
    /// `true` for [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled(_))
    }

    /// `true` for [`TaskError::Failed`] and [`TaskError::Panicked`]: the
    /// task itself went wrong.
    pub fn is_failure(&self) -> bool {
        matches!(self, TaskError::Failed(_) | TaskError::Panicked(_))
    }

    /// The cancellation, for [`TaskError::Cancelled`].
    pub fn cancelled(&self) -> Option<&Cancelled> {
        match self {
            TaskError::Cancelled(cancelled) => Some(cancelled),
            _ => None,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(error) => write!(f, "task failed: {error}"),
            TaskError::Panicked(message) => write!(f, "task panicked: {message}"),
            TaskError::Cancelled(cancelled) => write!(f, "task {cancelled}"),
            TaskError::NotStarted => f.write_str(
                "task not started: its group was closed or had ended (start children before \
                 `Group::close`, from inside the group)",
            ),
        }
    }
}

impl Error for TaskError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TaskError::Failed(error) => Some(&**error as &(dyn Error + 'static)),
            TaskError::Cancelled(cancelled) => Some(cancelled),
            TaskError::Panicked(_) | TaskError::NotStarted => None,
        }
    }
}

/// One failure recorded by a group: a child that returned an `Err` or
/// panicked, or the group's body that returned an `Err`.
///
/// ```
/// use cancelable::CancelScope;
/// use cancelable::group::TaskGroup;
///
/// # futures::executor::block_on(async {
/// let error = TaskGroup::new()
///     .run(|group| async move {
///         group.child().name("parse").start_soon(async {
///             "x".parse::<u32>()
///         });
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await
///     .unwrap_err();
/// let failure = error.primary().unwrap();
/// assert_eq!((failure.id(), failure.name()), (Some(1), Some("parse")));
/// assert!(!failure.is_body());
/// assert_eq!(failure.to_string(), "task `parse` failed: invalid digit found in string");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct TaskFailure {
    pub(crate) id: Option<u64>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) error: TaskError,
}

impl TaskFailure {
    /// The child's id in its group (as
    /// [`TaskHandle::id`](crate::group::TaskHandle::id)); `None` for the group's
    /// body.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The child's scope name, if it had one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `true` if this is the group's own body, not a child.
    pub fn is_body(&self) -> bool {
        self.id.is_none()
    }

    /// What went wrong: [`TaskError::Failed`] or [`TaskError::Panicked`].
    pub fn error(&self) -> &TaskError {
        &self.error
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.id) {
            (_, None) => f.write_str("the group's body")?,
            (Some(name), Some(_)) => write!(f, "task `{name}`")?,
            (None, Some(id)) => write!(f, "task {id}")?,
        }
        match &self.error {
            TaskError::Failed(error) => write!(f, " failed: {error}"),
            TaskError::Panicked(message) => write!(f, " panicked: {message}"),
            other => write!(f, ": {other}"),
        }
    }
}

/// Why a [`TaskGroup`](crate::group::TaskGroup) did not return its body's value.
///
/// * [`failures`](Self::failures): every child (and the body) that
///   returned an `Err` or panicked, in the order they ended; the first is
///   the primary one, the one that cancelled the others under the default
///   policy.
/// * [`cancelled`](Self::cancelled): the group was cancelled from outside
///   (its own timeout, token or signal, an enclosing scope, its handle),
///   not by a failing child.
///
/// Converts from [`Cancelled`], so a body or `#[cancellable]` function can
/// use `GroupError` as its error type.
///
/// ```
/// use std::time::Duration;
/// use cancelable::group::TaskGroup;
///
/// # futures::executor::block_on(async {
/// let error = TaskGroup::new()
///     .timeout(Duration::from_millis(10))
///     .run(|group| async move {
///         group.start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await
///     .unwrap_err();
/// assert!(error.is_timeout());
/// assert!(error.failures().is_empty());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct GroupError {
    inner: Box<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    cancelled: Option<Cancelled>,
    failures: Vec<TaskFailure>,
}

impl GroupError {
    pub(crate) fn new(cancelled: Option<Cancelled>, failures: Vec<TaskFailure>) -> Self {
        GroupError {
            inner: Box::new(Inner {
                cancelled,
                failures,
            }),
        }
    }

    /// Every failure, in the order the tasks ended; the first is primary.
    pub fn failures(&self) -> &[TaskFailure] {
        &self.inner.failures
    }

    /// The first failure, the one that cancelled the others.
    pub fn primary(&self) -> Option<&TaskFailure> {
        self.inner.failures.first()
    }

    /// The cancellation, if the group was cancelled from outside rather
    /// than by a failing child.
    pub fn cancelled(&self) -> Option<&Cancelled> {
        self.inner.cancelled.as_ref()
    }

    /// `true` if the group was cancelled from outside.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.is_some()
    }

    /// `true` if the group was cancelled from outside by a timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner
            .cancelled
            .as_ref()
            .is_some_and(Cancelled::is_timeout)
    }
}

impl From<Cancelled> for GroupError {
    fn from(cancelled: Cancelled) -> Self {
        GroupError::new(Some(cancelled), Vec::new())
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.inner.cancelled, self.inner.failures.as_slice()) {
            (Some(cancelled), []) => write!(f, "task group {cancelled}"),
            (cancelled, [first, rest @ ..]) => {
                write!(f, "task group failed: {first}")?;
                if !rest.is_empty() {
                    write!(f, " (and {} more failures)", rest.len())?;
                }
                if let Some(cancelled) = cancelled {
                    write!(f, "; {cancelled}")?;
                }
                Ok(())
            }
            (None, []) => f.write_str("task group failed"),
        }
    }
}

impl Error for GroupError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self.primary() {
            Some(failure) => Some(&failure.error),
            None => self
                .inner
                .cancelled
                .as_ref()
                .map(|cancelled| cancelled as &(dyn Error + 'static)),
        }
    }
}

/// Why [`Group::spawn`](crate::group::Group::spawn) could not start a task.
///
/// ```
/// use cancelable::group::{SpawnError, TaskGroup};
///
/// # futures::executor::block_on(async {
/// TaskGroup::new()
///     .run(|group| async move {
///         group.close();
///         let refused = group.spawn(async { Ok::<_, cancelable::Cancelled>(()) });
///         // Off tokio and without an executor, that is said first.
///         assert!(matches!(refused, Err(SpawnError::NoExecutor | SpawnError::Closed)));
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await
///     .unwrap();
/// # });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// No executor is known: the group was given none with
    /// [`TaskGroup::on`](crate::group::TaskGroup::on) /
    /// [`TaskGroup::on_spawn`](crate::group::TaskGroup::on_spawn), and no tokio
    /// runtime is running on this thread.
    NoExecutor,
    /// The group was closed, had run out of its grace period, or had
    /// already ended.
    Closed,
    /// The executor refused the task (it is shutting down).
    Executor(String),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NoExecutor => f.write_str(
                "no executor: call TaskGroup::on(&executor) or run on tokio (or use \
                 Group::start_soon, which needs none)",
            ),
            SpawnError::Closed => f.write_str(
                "task not spawned: its group was closed or had ended (spawn children before \
                 `Group::close`, from inside the group)",
            ),
            SpawnError::Executor(message) => {
                write!(f, "the group's executor refused the task: {message}")
            }
        }
    }
}

impl Error for SpawnError {}

/// The message of a panic payload, as the standard panic hook prints it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a task panicked (with a non-string payload)".to_owned()
    }
}
