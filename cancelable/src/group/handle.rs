//! [`Group`]: the handle a group's body and children use to start
//! children, close the group, wait for its children and read their
//! outcomes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::builder::{start_local, start_spawned, ChildBuilder};
use super::error::{BoxError, SpawnError};
use super::start::{Ready, Start};
use super::state::{lock, GroupShared, Subscriber, TaskOutcome, Wakeups};
use super::supervise::Supervision;
use super::task_handle::TaskHandle;
use crate::{CancelScope, ScopeHandle};

/// The handle to a running [`TaskGroup`](crate::group::TaskGroup), passed to its
/// body: start children, close the group, wait for them, read their
/// outcomes. Clone it into children to let them start siblings.
///
/// Every child runs in a child scope of the group: its checkpoints,
/// [`current_token`](crate::current_token) and
/// [`report_progress`](crate::report_progress) work, its context has the
/// group as parent, and the group's cancellation reaches it (reason
/// [`CancelReason::Parent`](crate::CancelReason::Parent)).
///
/// ```
/// use cancelable::checkpoint;
/// use cancelable::group::TaskGroup;
///
/// # futures::executor::block_on(async {
/// let total = TaskGroup::new()
///     .run(|group| async move {
///         let handles: Vec<_> = (1..=4u64)
///             .map(|n| {
///                 group.start_soon(async move {
///                     checkpoint().await?;
///                     Ok::<_, cancelable::Cancelled>(n * n)
///                 })
///             })
///             .collect();
///         assert_eq!(group.len(), 4);
///         let mut total = 0;
///         for handle in handles {
///             total += handle.await.unwrap();
///         }
///         Ok::<_, cancelable::Cancelled>(total)
///     })
///     .await
///     .unwrap();
/// assert_eq!(total, 30);
/// # });
/// ```
#[derive(Clone)]
pub struct Group {
    pub(crate) shared: Arc<GroupShared>,
}

impl Group {
    /// A builder for one child: its name, its scope, supervision; then
    /// `start_soon` or `spawn` (see [`ChildBuilder`]). The one way to start
    /// a configured child, as tokio's `JoinSet::build_task`.
    ///
    /// ```
    /// use cancelable::group::{Supervision, TaskGroup};
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let named = group.child().name("fetch").start_soon(async {
    ///             Ok::<_, std::io::Error>("done")
    ///         });
    ///         let restarted = group
    ///             .child()
    ///             .supervised(Supervision::restart())
    ///             .start_soon(|_attempt| async { Ok::<_, std::io::Error>(1) });
    ///         assert_eq!(named.await.unwrap(), "done");
    ///         assert_eq!(restarted.await.unwrap(), 1);
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    #[inline]
    pub fn child(&self) -> ChildBuilder<'_> {
        ChildBuilder::new(&self.shared)
    }

    /// The group's supervision policy (set with
    /// [`TaskGroup::supervise`](super::TaskGroup::supervise)), for
    /// [`ChildBuilder::supervised`].
    pub fn supervision(&self) -> Supervision {
        self.shared.supervision.clone()
    }

    /// Starts `child` in a new child scope of the group, polled by the
    /// group's own future: concurrently with the body and the other
    /// children, on whatever executor runs the group
    /// (`futures::executor::block_on` included), with no spawning. The
    /// same as `group.child().start_soon(child)` (see
    /// [`ChildBuilder::start_soon`]; [`child`](Self::child) to name or
    /// configure it).
    ///
    /// The child may return any `Result` whose error converts into
    /// `Box<dyn Error + Send + Sync>` (a `Cancelled`, `std::io::Error`, a
    /// `&str`, ...). An `Err` that is not the child's own cancellation is
    /// a failure ([`FailurePolicy`](super::FailurePolicy) says what the
    /// group does then). On a group that is closed or has ended the child
    /// is dropped unstarted and its handle resolves to
    /// [`TaskError::NotStarted`](super::TaskError::NotStarted).
    ///
    /// ```
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let child = group.start_soon(async { Ok::<_, std::io::Error>("done") });
    ///         assert_eq!(child.await.unwrap(), "done");
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn start_soon<F, T, E>(&self, child: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        start_local(&self.shared, CancelScope::new(), child)
    }

    /// Starts `child` in a new child scope of the group on an executor, so
    /// that it runs in parallel with the group: on the executor given with
    /// [`TaskGroup::on`](super::TaskGroup::on) /
    /// [`TaskGroup::on_spawn`](super::TaskGroup::on_spawn), else on the
    /// tokio runtime running here. The same as
    /// `group.child().spawn(child)` (see [`ChildBuilder::spawn`]).
    ///
    /// # Errors
    ///
    /// [`SpawnError::NoExecutor`] when the group has no executor and no
    /// tokio runtime runs here (never a silent fallback to another
    /// executor), [`SpawnError::Closed`] on a closed or ended group,
    /// [`SpawnError::Executor`] when the executor refuses the task.
    ///
    /// ```
    /// use cancelable::group::{SpawnError, TaskGroup};
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         // `block_on` is no executor a group can spawn on.
    ///         let error = group.spawn(async { Ok::<_, cancelable::Cancelled>(()) }).unwrap_err();
    ///         assert!(matches!(error, SpawnError::NoExecutor));
    ///         assert!(error.to_string().starts_with("no executor: call TaskGroup::on(&executor) or run on tokio"));
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn spawn<F, T, E>(&self, child: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        start_spawned(&self.shared, CancelScope::new(), child)
    }

    /// Deprecated: `group.child().in_scope(scope).start_soon(child)`.
    #[deprecated(note = "use group.child().in_scope(scope).start_soon(child)")]
    pub fn start_soon_in<F, T, E>(&self, scope: CancelScope, child: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child().in_scope(scope).start_soon(child)
    }

    /// Deprecated: `group.child().in_scope(scope).spawn(child)`.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    #[deprecated(note = "use group.child().in_scope(scope).spawn(child)")]
    pub fn spawn_in<F, T, E>(
        &self,
        scope: CancelScope,
        child: F,
    ) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child().in_scope(scope).spawn(child)
    }

    /// Deprecated: `group.child().supervised(group.supervision()).start_soon(make)`.
    #[deprecated(note = "use group.child().supervised(group.supervision()).start_soon(make)")]
    pub fn start_supervised<M, F, T, E>(&self, make: M) -> TaskHandle<T>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child().supervised(self.supervision()).start_soon(make)
    }

    /// Deprecated: `group.child().in_scope(scope).supervised(group.supervision()).start_soon(make)`.
    #[deprecated(
        note = "use group.child().in_scope(scope).supervised(group.supervision()).start_soon(make)"
    )]
    pub fn start_supervised_in<M, F, T, E>(&self, scope: CancelScope, make: M) -> TaskHandle<T>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child()
            .in_scope(scope)
            .supervised(self.supervision())
            .start_soon(make)
    }

    /// Deprecated: `group.child().supervised(group.supervision()).spawn(make)`.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    #[deprecated(note = "use group.child().supervised(group.supervision()).spawn(make)")]
    pub fn spawn_supervised<M, F, T, E>(&self, make: M) -> Result<TaskHandle<T>, SpawnError>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child().supervised(self.supervision()).spawn(make)
    }

    /// Deprecated: `group.child().in_scope(scope).supervised(group.supervision()).spawn(make)`.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    #[deprecated(
        note = "use group.child().in_scope(scope).supervised(group.supervision()).spawn(make)"
    )]
    pub fn spawn_supervised_in<M, F, T, E>(
        &self,
        scope: CancelScope,
        make: M,
    ) -> Result<TaskHandle<T>, SpawnError>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child()
            .in_scope(scope)
            .supervised(self.supervision())
            .spawn(make)
    }

    /// Closes the group: from now on children can no longer be started
    /// (see [`start_soon`](Self::start_soon)); those running go on. With
    /// [`wait`](Self::wait), the body can wait for them and go on inside
    /// the group.
    pub fn close(&self) {
        let mut wakeups = Wakeups::default();
        lock(&self.shared.state).close(&mut wakeups);
        wakeups.wake();
    }

    /// `true` once the group is closed, ran out of its grace period, or
    /// has ended.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed
    }

    /// Waits until no child is running: every child started so far has
    /// ended (the group's body goes on; children may still be started
    /// unless the group is [closed](Self::close)).
    ///
    /// ```
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         for _ in 0..3 {
    ///             group.start_soon(async { Ok::<_, cancelable::Cancelled>(()) });
    ///         }
    ///         group.close();
    ///         group.wait().await;
    ///         assert_eq!((group.len(), group.active()), (3, 0));
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn wait(&self) -> WaitForChildren {
        WaitForChildren {
            shared: self.shared.clone(),
        }
    }

    /// A stream of the children's outcomes, in the order they end, from
    /// now on (start it before the children whose outcomes it must see).
    /// It ends once the group is [closed](Self::close) or has ended, and
    /// no child runs. Values go to the [`TaskHandle`]s; the stream says
    /// which child ended and how.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let mut results = group.results();
    ///         let ok = group.start_soon(async { Ok::<_, std::io::Error>(()) });
    ///         group.close();
    ///         let outcome = results.next().await.unwrap();
    ///         assert_eq!(Some(outcome.id()), ok.id());
    ///         assert!(outcome.is_ok());
    ///         assert!(results.next().await.is_none());
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn results(&self) -> ChildResults {
        let subscriber = Arc::new(Subscriber::default());
        self.shared
            .subscribed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        lock(&self.shared.state)
            .subscribers
            .push(Arc::downgrade(&subscriber));
        ChildResults {
            subscriber,
            shared: self.shared.clone(),
        }
    }

    /// How many children were started in the group so far, ended or not.
    pub fn len(&self) -> usize {
        lock(&self.shared.state).started
    }

    /// `true` if no child was started yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many children have not ended yet.
    pub fn active(&self) -> usize {
        lock(&self.shared.state).active
    }

    /// Cancels the group (reason [`CancelReason::Manual`]): its body and
    /// children see the cancellation, get the grace period, and the group
    /// ends with [`GroupError::cancelled`](crate::group::GroupError::cancelled).
    /// Returns `true` if this call cancelled it.
    ///
    /// [`CancelReason::Manual`]: crate::CancelReason::Manual
    ///
    /// ```
    /// use cancelable::CancelReason;
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// let error = TaskGroup::new()
    ///     .run(|group| async move {
    ///         let child = group.start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
    ///         assert!(group.cancel());
    ///         assert!(group.is_cancelled());
    ///         // The group's id is the parent of its children's scopes.
    ///         assert_eq!(group.scope().context().status, cancelable::OperationStatus::Running);
    ///         drop(child);
    ///         cancelable::checkpoint().await
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(error.cancelled().unwrap().reason(), &CancelReason::Manual);
    /// # });
    /// ```
    pub fn cancel(&self) -> bool {
        self.shared.scope.cancel()
    }

    /// `true` once the group is cancelled (from outside or by a failing
    /// child).
    pub fn is_cancelled(&self) -> bool {
        self.shared.scope.is_cancelled()
    }

    /// The group's own scope: its id, context, token and deadline.
    pub fn scope(&self) -> &ScopeHandle {
        &self.shared.scope
    }
}

impl Group {
    /// Starts a child and waits until it reports that it is ready, as
    /// trio's `nursery.start` and anyio's `TaskGroup.start` do: `child`
    /// gets a [`Ready`], calls [`ready(value)`](Ready::ready) once it is
    /// ready (a server bound its port, a worker connected), and the
    /// returned future resolves to that value while the child keeps
    /// running in the group, like a [`start_soon`](Self::start_soon)
    /// child.
    ///
    /// Before it reports, the child's failure, panic or cancellation goes
    /// to the starter ([`StartError::Task`](super::StartError::Task)), not to the group; a child
    /// that returns `Ok` without reporting is
    /// [`StartError::EndedWithoutReady`](super::StartError::EndedWithoutReady). The starter's cancellation, or
    /// dropping the future, before the child reports cancels the child.
    /// Once it reported, the child's end is any child's (its `Err` is a
    /// failure of the group, see [`FailurePolicy`](crate::group::FailurePolicy)); its
    /// value is dropped.
    ///
    /// ```
    /// use cancelable::group::{StartError, TaskGroup};
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let (sender, receiver) = std::sync::mpsc::channel();
    ///         // A "server": ready once it has its port, then serves.
    ///         let port = group
    ///             .start(|ready| async move {
    ///                 ready.ready(8080u16);
    ///                 sender.send("served").unwrap();
    ///                 Ok::<_, cancelable::Cancelled>(())
    ///             })
    ///             .await
    ///             .unwrap();
    ///         assert_eq!(port, 8080);
    ///
    ///         // A child that fails before it is ready: the starter gets it.
    ///         let error = group
    ///             .start(|_ready: cancelable::group::Ready<u16>| async { Err::<(), _>("no port free") })
    ///             .await
    ///             .unwrap_err();
    ///         assert_eq!(
    ///             error.to_string(),
    ///             "the child ended before it was ready: task failed: no port free"
    ///         );
    ///         group.wait().await;
    ///         assert_eq!(receiver.recv().unwrap(), "served");
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn start<C, F, V, T, E>(&self, child: C) -> Start<V>
    where
        C: FnOnce(Ready<V>) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        V: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child().start(child)
    }

    /// [`start`](Self::start) with the child's scope configured.
    #[deprecated(note = "use group.child().in_scope(scope).start(child)")]
    pub fn start_in<C, F, V, T, E>(&self, scope: CancelScope, child: C) -> Start<V>
    where
        C: FnOnce(Ready<V>) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        V: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.child().in_scope(scope).start(child)
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.shared.state);
        f.debug_struct("Group")
            .field("id", &self.shared.scope.id())
            .field("started", &state.started)
            .field("active", &state.active)
            .field("closed", &state.closed)
            .finish()
    }
}

/// The future returned by [`Group::wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitForChildren {
    shared: Arc<GroupShared>,
}

impl Future for WaitForChildren {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.shared.state);
        if state.active == 0 {
            return Poll::Ready(());
        }
        if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl fmt::Debug for WaitForChildren {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForChildren").finish_non_exhaustive()
    }
}

/// The stream returned by [`Group::results`].
#[must_use = "streams do nothing unless polled"]
pub struct ChildResults {
    subscriber: Arc<Subscriber>,
    shared: Arc<GroupShared>,
}

impl Stream for ChildResults {
    type Item = TaskOutcome;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TaskOutcome>> {
        {
            let mut queue = lock(&self.subscriber.queue);
            if let Some(outcome) = queue.0.pop_front() {
                return Poll::Ready(Some(outcome));
            }
            queue.1 = Some(cx.waker().clone());
        }
        let finished = {
            let state = lock(&self.shared.state);
            state.ended || (state.closed && state.active == 0)
        };
        if finished {
            // An outcome may have arrived since the queue was read.
            return Poll::Ready(lock(&self.subscriber.queue).0.pop_front());
        }
        Poll::Pending
    }
}

impl fmt::Debug for ChildResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildResults").finish_non_exhaustive()
    }
}
