//! [`Group`]: the handle a group's body and children use to start
//! children, close the group, wait for its children and read their
//! outcomes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::future::{AbortHandle, Abortable};

use super::child::{ChildTask, Spawned, TaskHandle};
use super::error::{BoxError, SpawnError};
use super::executor::Executor;
use super::state::{lock, GroupShared, Subscriber, TaskOutcome, Wakeups};
use super::supervise::supervised;
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
    /// Starts `child` in a new child scope of the group, polled by the
    /// group's own future: concurrently with the body and the other
    /// children, on whatever executor runs the group
    /// (`futures::executor::block_on` included), with no spawning.
    ///
    /// The child may return any `Result` whose error converts into
    /// `Box<dyn Error + Send + Sync>` (a `Cancelled`, `std::io::Error`, a
    /// `&str`, ...). An `Err` that is not the child's own cancellation is
    /// a failure ([`FailurePolicy`](crate::group::FailurePolicy) says what the group
    /// does then).
    ///
    /// On a group that is closed or has ended the child is dropped
    /// unstarted and its handle resolves to
    /// [`TaskError::NotStarted`](crate::group::TaskError::NotStarted).
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
        self.start_soon_in(CancelScope::new(), child)
    }

    /// [`start_soon`](Self::start_soon) with the child's scope configured:
    /// a name (for errors and its context), a timeout of its own, more
    /// sources. The scope becomes a child of the group.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::CancelScope;
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let slow = group.start_soon_in(
    ///             CancelScope::new().name("slow").timeout(Duration::from_millis(5)),
    ///             std::future::pending::<Result<(), cancelable::Cancelled>>(),
    ///         );
    ///         // Its own timeout is a cancellation, not a failure: the group goes on.
    ///         assert!(slow.await.unwrap_err().cancelled().unwrap().is_timeout());
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn start_soon_in<F, T, E>(&self, scope: CancelScope, child: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let (task, handle) = ChildTask::new_local(&self.shared, scope, child);
        let rejected = {
            let mut state = lock(&self.shared.state);
            if state.closed || state.ended {
                Some(task)
            } else {
                state.started += 1;
                state.active += 1;
                state.incoming.push(task);
                None
            }
        };
        if let Some(mut task) = rejected {
            // Never counted: drop it without reporting an end.
            task.as_mut().disarm();
            drop(task);
            return TaskHandle::not_started();
        }
        self.shared.waker.wake();
        handle
    }

    /// Starts `child` in a new child scope of the group on an executor, so
    /// that it runs in parallel with the group: on the executor given with
    /// [`TaskGroup::on`](crate::group::TaskGroup::on) /
    /// [`TaskGroup::on_spawn`](crate::group::TaskGroup::on_spawn), else on the
    /// tokio runtime running here.
    ///
    /// The group still waits for the child, gives it its grace period when
    /// cancelled, then aborts it; dropping the group aborts it too.
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
        self.spawn_in(CancelScope::new(), child)
    }

    /// [`spawn`](Self::spawn) with the child's scope configured (see
    /// [`start_soon_in`](Self::start_soon_in)).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    ///
    /// ```
    /// # #[cfg(feature = "tokio")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use cancelable::CancelScope;
    /// use cancelable::group::TaskGroup;
    ///
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let child = group
    ///             .spawn_in(CancelScope::new().name("parallel"), async { Ok::<_, cancelable::Cancelled>(7) })
    ///             .expect("a tokio runtime runs here");
    ///         assert_eq!(child.await.unwrap(), 7);
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
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
        let executor = Executor::resolve(self.shared.executor.as_ref())?;
        let (mut task, handle) = ChildTask::new(&self.shared, scope, child);
        let (abort, registration) = AbortHandle::new_pair();
        let accepted = {
            let mut state = lock(&self.shared.state);
            if state.closed || state.ended {
                None
            } else {
                state.started += 1;
                state.active += 1;
                Some(state.spawned.insert(abort))
            }
        };
        let Some(key) = accepted else {
            return Err(SpawnError::Closed);
        };
        task.arm(&self.shared);
        task.set_spawned(key);
        let task = Abortable::new(Spawned::new(task, &self.shared), registration);
        executor.spawn(Box::pin(async move {
            let _ = task.await;
        }))?;
        Ok(handle)
    }

    /// Starts a supervised child, polled by the group's own future as
    /// [`start_soon`](Self::start_soon) children are: `make(attempt)` makes
    /// the child's future (attempt 1, 2, ...; see [`Supervision`](crate::group::Supervision)
    /// for retrying one item), and makes a fresh one whenever the last one failed
    /// (returned an `Err` that is not its cancellation, or panicked), as
    /// the group's [`Supervision`](crate::group::Supervision) allows (see
    /// [`TaskGroup::supervise`](crate::group::TaskGroup::supervise)). Each attempt
    /// runs in a fresh child scope of the child's scope (metadata
    /// `attempt` = 1, 2, ...). Once the restart budget is spent, the child
    /// fails with [`RestartsExhausted`](crate::group::RestartsExhausted), and the
    /// group's failure policy applies.
    ///
    /// A cancellation is never restarted. The handle resolves to the value
    /// of the first attempt that succeeds; [`TaskHandle::restarts`] counts
    /// the restarts so far.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// let calls = Arc::new(AtomicU32::new(0));
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let mut worker = group.start_supervised(move |attempt| {
    ///             let call = calls.fetch_add(1, Ordering::SeqCst);
    ///             assert_eq!(attempt, call + 1);
    ///             async move {
    ///                 if call == 0 {
    ///                     panic!("the first call crashes");
    ///                 }
    ///                 Ok::<_, std::io::Error>(call)
    ///             }
    ///         });
    ///         assert_eq!((&mut worker).await.unwrap(), 1);
    ///         assert_eq!(worker.restarts(), 1);
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn start_supervised<M, F, T, E>(&self, make: M) -> TaskHandle<T>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.start_supervised_in(CancelScope::new(), make)
    }

    /// [`start_supervised`](Self::start_supervised) with the child's scope
    /// configured (a name, a timeout for the whole child, restarts
    /// included); each attempt's scope takes its name.
    pub fn start_supervised_in<M, F, T, E>(&self, scope: CancelScope, make: M) -> TaskHandle<T>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let restarts = Arc::new(AtomicU32::new(0));
        let child = supervised(self.shared.supervision.clone(), make, restarts.clone());
        self.start_soon_in(scope, child).with_restarts(restarts)
    }

    /// Spawns a supervised child on an executor, as [`spawn`](Self::spawn)
    /// does; restarted as [`start_supervised`](Self::start_supervised)
    /// says.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    pub fn spawn_supervised<M, F, T, E>(&self, make: M) -> Result<TaskHandle<T>, SpawnError>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.spawn_supervised_in(CancelScope::new(), make)
    }

    /// [`spawn_supervised`](Self::spawn_supervised) with the child's scope
    /// configured.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
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
        let restarts = Arc::new(AtomicU32::new(0));
        let child = supervised(self.shared.supervision.clone(), make, restarts.clone());
        Ok(self.spawn_in(scope, child)?.with_restarts(restarts))
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
