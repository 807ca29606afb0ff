//! [`ChildBuilder`]: the one way to configure a child before starting it
//! (tokio's `JoinSet::build_task`): its name, its scope, supervision;
//! then [`start_soon`](ChildBuilder::start_soon) (polled by the group's
//! own future) or [`spawn`](ChildBuilder::spawn) (on an executor). Both
//! start paths of the group live here; `Group::start_soon` and
//! `Group::spawn` are this builder with nothing configured.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use super::child::{child_scope, slot_for, ChildTask};
use super::error::{BoxError, SpawnError};
use super::executor::Executor;
use super::state::{lock, GroupShared};
use super::supervise::{supervised, Supervision};
use super::task_handle::TaskHandle;
use crate::CancelScope;

/// Configures one child of a [`Group`](super::Group) before starting it,
/// returned by [`Group::child`](super::Group::child).
///
/// | builder call | what it sets | default |
/// |---|---|---|
/// | [`name`](Self::name) | the child scope's name (errors, context, registry) | unnamed |
/// | [`in_scope`](Self::in_scope) | the child's scope: a timeout of its own, more sources; it becomes a child of the group's | `CancelScope::new()` |
/// | [`supervised`](Self::supervised) | restart the child from a factory while the [`Supervision`] allows | not restarted |
/// | [`start_soon`](Self::start_soon) / [`spawn`](Self::spawn) | start it: polled by the group's own future / on an executor | — |
///
/// ```
/// use std::time::Duration;
/// use cancelable::group::TaskGroup;
/// use cancelable::CancelScope;
///
/// # futures::executor::block_on(async {
/// TaskGroup::new()
///     .run(|group| async move {
///         let slow = group
///             .child()
///             .name("slow")
///             .in_scope(CancelScope::new().timeout(Duration::from_millis(5)))
///             .start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
///         // Its own timeout is a cancellation, not a failure: the group goes on.
///         let cancelled = slow.await.unwrap_err();
///         assert!(cancelled.cancelled().unwrap().is_timeout());
///         Ok::<_, cancelable::Cancelled>(())
///     })
///     .await
///     .unwrap();
/// # });
/// ```
#[must_use = "a child builder does nothing until `start_soon` or `spawn`"]
pub struct ChildBuilder<'g> {
    shared: &'g Arc<GroupShared>,
    scope: CancelScope,
    name: Option<Cow<'static, str>>,
}

impl<'g> ChildBuilder<'g> {
    #[inline]
    pub(super) fn new(shared: &'g Arc<GroupShared>) -> Self {
        ChildBuilder {
            shared,
            scope: CancelScope::new(),
            name: None,
        }
    }

    /// Names the child's scope (its errors, its context, the registry),
    /// whether given before or after [`in_scope`](Self::in_scope).
    #[inline]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs the child in `scope` (a timeout of its own, more sources),
    /// made a child of the group's scope. A child's own timeout is a
    /// cancellation, not a failure.
    #[inline]
    pub fn in_scope(mut self, scope: CancelScope) -> Self {
        self.scope = scope;
        self
    }

    /// Starts the child and waits until it reports that it is ready, as
    /// [`Group::start`](super::Group::start) does, with this builder's
    /// name and scope.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::group::TaskGroup;
    /// use cancelable::CancelScope;
    ///
    /// # futures::executor::block_on(async {
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let name = group
    ///             .child()
    ///             .name("listener")
    ///             .in_scope(CancelScope::new().timeout(Duration::from_secs(5)))
    ///             .start(|ready| async move {
    ///                 let scope = cancelable::current_scope().unwrap();
    ///                 ready.ready(scope.context().name.map(|name| name.to_string()));
    ///                 Ok::<_, cancelable::Cancelled>(())
    ///             })
    ///             .await
    ///             .unwrap();
    ///         assert_eq!(name.as_deref(), Some("listener"));
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn start<C, F, V, T, E>(self, child: C) -> super::Start<V>
    where
        C: FnOnce(super::Ready<V>) -> F,
        F: Future<Output = Result<T, E>> + Send + 'static,
        V: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let (body, starter) = super::start::with_readiness(child);
        starter.started(self.start_soon(body))
    }

    /// Restarts the child while `policy` allows: the start methods of the
    /// returned builder take a factory `make(attempt)` (attempt 1, 2, ...)
    /// instead of a future. [`Group::supervision`](super::Group::supervision) is the group's own
    /// policy (set with [`TaskGroup::supervise`](super::TaskGroup::supervise)).
    ///
    /// Each attempt runs in a fresh child scope of the child's scope
    /// (metadata `attempt` = 1, 2, ...), whose name it takes. A failure
    /// (an `Err` that is not its cancellation, or a panic) is restarted
    /// after the backoff; a cancellation never is. Once the restart budget
    /// is spent, the child fails with
    /// [`RestartsExhausted`](super::RestartsExhausted) and the group's
    /// failure policy applies. The handle resolves to the value of the
    /// first attempt that succeeds; [`TaskHandle::restarts`] counts the
    /// restarts so far.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use cancelable::group::{Supervision, TaskGroup};
    ///
    /// # futures::executor::block_on(async {
    /// let calls = Arc::new(AtomicU32::new(0));
    /// TaskGroup::new()
    ///     .run(|group| async move {
    ///         let mut worker = group
    ///             .child()
    ///             .name("worker")
    ///             .supervised(Supervision::restart().max_restarts(3))
    ///             .start_soon(move |attempt| {
    ///                 let call = calls.fetch_add(1, Ordering::SeqCst);
    ///                 assert_eq!(attempt, call + 1);
    ///                 async move {
    ///                     if call == 0 {
    ///                         panic!("the first call crashes");
    ///                     }
    ///                     Ok::<_, std::io::Error>(call)
    ///                 }
    ///             });
    ///         assert_eq!((&mut worker).await.unwrap(), 1);
    ///         assert_eq!(worker.restarts(), 1);
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    pub fn supervised(self, policy: Supervision) -> SupervisedChild<'g> {
        SupervisedChild {
            child: self,
            policy,
        }
    }

    /// The child's scope, named.
    #[inline]
    fn into_scope(self) -> (&'g Arc<GroupShared>, CancelScope) {
        let ChildBuilder {
            shared,
            mut scope,
            name,
        } = self;
        if let Some(name) = name {
            scope = scope.name(name);
        }
        (shared, scope)
    }

    /// Starts `child` in a new child scope of the group, polled by the
    /// group's own future: concurrently with the body and the other
    /// children, on whatever executor runs the group
    /// (`futures::executor::block_on` included), with no spawning.
    ///
    /// The child may return any `Result` whose error converts into
    /// `Box<dyn Error + Send + Sync>` (a `Cancelled`, `std::io::Error`, a
    /// `&str`, ...). An `Err` that is not the child's own cancellation is
    /// a failure ([`FailurePolicy`](super::FailurePolicy) says what the
    /// group does then).
    ///
    /// On a group that is closed or has ended the child is dropped
    /// unstarted and its handle resolves to
    /// [`TaskError::NotStarted`](super::TaskError::NotStarted).
    pub fn start_soon<F, T, E>(self, child: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let (shared, scope) = self.into_scope();
        start_local(shared, scope, child)
    }

    /// Starts `child` in a new child scope of the group on an executor, so
    /// that it runs in parallel with the group: on the executor given with
    /// [`TaskGroup::on`](super::TaskGroup::on) /
    /// [`TaskGroup::on_spawn`](super::TaskGroup::on_spawn), else on the
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
    pub fn spawn<F, T, E>(self, child: F) -> Result<TaskHandle<T>, SpawnError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let (shared, scope) = self.into_scope();
        start_spawned(shared, scope, child)
    }
}

/// Starts a child polled by the group's own future: the one place a
/// `start_soon` child is counted and queued ([`Group::start_soon`](super::Group::start_soon)
/// calls it directly, so an unconfigured child pays nothing for the builder).
pub(super) fn start_local<F, T, E>(
    shared: &Arc<GroupShared>,
    scope: CancelScope,
    child: F,
) -> TaskHandle<T>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + 'static,
{
    let (task, handle) = ChildTask::new_local(shared, scope, child);
    let rejected = {
        let mut state = lock(&shared.state);
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
        task.disarm();
        drop(task);
        return TaskHandle::not_started();
    }
    shared.waker.wake();
    handle
}

/// Spawns a child on the group's executor: the one place a spawned child
/// is counted and registered for abort.
pub(super) fn start_spawned<F, T, E>(
    shared: &Arc<GroupShared>,
    scope: CancelScope,
    child: F,
) -> Result<TaskHandle<T>, SpawnError>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + 'static,
{
    let executor = Executor::resolve(shared.executor.as_ref())?;
    let scope = child_scope(shared, scope);
    let slot = slot_for(shared, &scope);
    let accepted = {
        let mut state = lock(&shared.state);
        if state.closed || state.ended {
            None
        } else {
            state.started += 1;
            state.active += 1;
            // Built once, in its node, under the key of its abort handle.
            let mut built = None;
            state.spawned.insert_with(|key| {
                let (task, abort, handle) = ChildTask::new_spawned(shared, scope, slot, child, key);
                built = Some((task, handle));
                abort
            });
            built
        }
    };
    let Some((task, handle)) = accepted else {
        // Never counted: the scope and the body are dropped unstarted.
        return Err(SpawnError::Closed);
    };
    // From here its end is reported: if the executor refuses it, its drop
    // reports it cancelled.
    executor.spawn(task)?;
    Ok(handle)
}

impl fmt::Debug for ChildBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A [`ChildBuilder`] for a supervised child, returned by
/// [`ChildBuilder::supervised`]: its start methods take the factory that
/// makes each attempt.
#[must_use = "a child builder does nothing until `start_soon` or `spawn`"]
pub struct SupervisedChild<'g> {
    child: ChildBuilder<'g>,
    policy: Supervision,
}

impl<'g> SupervisedChild<'g> {
    /// The child's builder, the future that runs the attempts made by
    /// `make`, and the restart count its handle reads.
    fn attempts<M, F, T, E>(
        self,
        make: M,
    ) -> (
        ChildBuilder<'g>,
        impl Future<Output = Result<T, BoxError>>,
        Arc<AtomicU32>,
    )
    where
        M: FnMut(u32) -> F,
        F: Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        let restarts = Arc::new(AtomicU32::new(0));
        let child = supervised(self.policy, make, restarts.clone());
        (self.child, child, restarts)
    }

    /// Starts the supervised child polled by the group's own future, as
    /// [`ChildBuilder::start_soon`] does; `make(attempt)` makes each
    /// attempt's future.
    pub fn start_soon<M, F, T, E>(self, make: M) -> TaskHandle<T>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let (builder, child, restarts) = self.attempts(make);
        builder.start_soon(child).with_restarts(restarts)
    }

    /// Spawns the supervised child on an executor, as
    /// [`ChildBuilder::spawn`] does; `make(attempt)` makes each attempt's
    /// future.
    ///
    /// # Errors
    ///
    /// As [`ChildBuilder::spawn`].
    pub fn spawn<M, F, T, E>(self, make: M) -> Result<TaskHandle<T>, SpawnError>
    where
        M: FnMut(u32) -> F + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let (builder, child, restarts) = self.attempts(make);
        Ok(builder.spawn(child)?.with_restarts(restarts))
    }
}

impl fmt::Debug for SupervisedChild<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisedChild")
            .field("child", &self.child)
            .field("policy", &self.policy)
            .finish()
    }
}
