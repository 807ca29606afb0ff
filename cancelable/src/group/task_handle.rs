//! [`TaskHandle`]: the handle to a child of a group, which reaches the
//! child's [`Slot`] (`slot.rs`) in its node (`node.rs`), and only that.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering as StdOrdering};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::error::TaskError;
use super::node::{without_child, Node};
use super::slot::Slot;
use crate::ScopeHandle;

/// An awaitable handle to a child of a [`TaskGroup`](crate::group::TaskGroup),
/// returned by [`Group::start_soon`](crate::group::Group::start_soon) and
/// [`Group::spawn`](crate::group::Group::spawn).
///
/// It resolves to the child's value, or to a [`TaskError`] saying why
/// there is none. Dropping it leaves the child running (the group still
/// waits for it).
///
/// ```
/// use cancelable::group::TaskGroup;
///
/// # futures::executor::block_on(async {
/// TaskGroup::new()
///     .run(|group| async move {
///         let forever = group.start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
///         assert!(!forever.is_finished());
///         forever.cancel();
///         assert!(forever.await.unwrap_err().is_cancelled());
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await
///     .unwrap();
/// # });
/// ```
pub struct TaskHandle<T> {
    /// The child's node (`node.rs`), of which the handle reaches the slot
    /// only.
    node: Arc<Node<T, dyn Send>>,
    /// A supervised child's restart count.
    restarts: Option<Arc<AtomicU32>>,
}

impl<T> TaskHandle<T> {
    /// The handle of the child in `node`.
    #[inline]
    pub(crate) fn of(node: Arc<Node<T, dyn Send>>) -> Self {
        TaskHandle {
            node,
            restarts: None,
        }
    }

    /// A handle to a child that was never started.
    pub(crate) fn not_started() -> Self
    where
        T: Send + 'static,
    {
        TaskHandle {
            node: without_child(Slot::not_started()),
            restarts: None,
        }
    }

    /// The handle of a supervised child, whose restarts `restarts` counts.
    pub(crate) fn with_restarts(mut self, restarts: Arc<AtomicU32>) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// How many times the child was restarted so far: always 0 but for a
    /// supervised child (see [`ChildBuilder::supervised`](crate::group::ChildBuilder::supervised)).
    pub fn restarts(&self) -> u32 {
        self.restarts
            .as_ref()
            .map_or(0, |restarts| restarts.load(StdOrdering::Relaxed))
    }

    /// Cancels the child's scope (reason [`CancelReason::Manual`](crate::CancelReason::Manual)): it
    /// ends with [`TaskError::Cancelled`], which is not a failure, so the
    /// group goes on. Returns `true` if this call cancelled it: `false`
    /// if it was cancelled already, has ended, or never started.
    pub fn cancel(&self) -> bool {
        self.node.slot.scope().is_some_and(|scope| scope.cancel())
    }

    /// `true` once the child has ended (or was never started).
    pub fn is_finished(&self) -> bool {
        self.node.slot.is_finished()
    }

    /// The child's id in its group (1 for the first child started, and so
    /// on), as [`TaskOutcome::id`](crate::group::TaskOutcome::id) and
    /// [`TaskFailure::id`](crate::group::TaskFailure::id) report it; `None` if it
    /// was never started.
    pub fn id(&self) -> Option<u64> {
        self.node.slot.id()
    }

    /// A handle to the child's scope (its operation id, status, context,
    /// deadline) while the child runs; `None` once it has ended or if it
    /// never started.
    pub fn scope(&self) -> Option<ScopeHandle> {
        self.node.slot.scope()
    }
}

impl<T> Drop for TaskHandle<T> {
    fn drop(&mut self) {
        self.node.slot.handle_dropped();
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.node.slot.poll_result(cx)
    }
}

impl<T> Unpin for TaskHandle<T> {}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .field("restarts", &self.restarts())
            .finish()
    }
}
