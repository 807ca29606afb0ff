//! Task groups: structured concurrency on any executor (anyio's task
//! groups, trio's nurseries).
//!
//! * [`TaskGroup`] — the builder: the group's scope (name, timeout,
//!   sources), grace period, failure policy, executor; then
//!   [`run`](TaskGroup::run).
//! * [`Group`] — the handle the body gets: `start_soon`, `spawn`, `close`,
//!   `wait`, `results`, counts; [`start`](Group::start) to start a child
//!   and wait until it reports it is [`Ready`].
//! * [`TaskHandle`] — one child's awaitable result, with `cancel()`.
//! * [`ChildBuilder`] — one child configured before it starts
//!   ([`Group::child`]: name, scope, [`supervised`](ChildBuilder::supervised));
//!   `start_soon` or `spawn`.
//! * [`Supervision`] — restarting failed children started from a factory
//!   ([`ChildBuilder::supervised`]).
//!
//! # When a child fails
//!
//! A child fails when it returns an `Err` that is not its cancellation, or
//! panics. Which `Err` is the cancellation follows the one outcome rule
//! (see [`CancelScope::try_run`]): the child saw it (a checkpoint or
//! cancellation-aware wait returned it) or the error is that
//! [`Cancelled`]. A child that fails on its own while the group is being
//! cancelled — two children failing at the same poll, a body and a child —
//! is a failure, carried by [`GroupError`] and its handle. What happens
//! then:
//!
//! | | the failed child | its siblings | the group's result | a panic |
//! |---|---|---|---|---|
//! | default ([`FailurePolicy::CancelGroup`]) | ends | cancelled (reason `Parent(Manual)`, the failure as message) | `Err(GroupError)` with every failure, the first primary | re-raised once every child ended |
//! | [`on_child_error(Ignore)`](TaskGroup::on_child_error) | ends; only its handle and [`Group::results`] see the error | keep running | the body's own result | caught, seen by the handle |
//! | [`supervise(..)`](TaskGroup::supervise) + `child().supervised(..)` | restarted from its factory in a fresh child scope, after the backoff, while the restart budget lasts (`max_restarts` within a window); then ends with [`RestartsExhausted`] (the restarts and the last error) | keep running while it restarts; once it gives up, as the group's `on_child_error` policy says (by default: cancelled) | as the policy says; by default `Err(GroupError)` whose failure is the `RestartsExhausted` | caught and restarted like an `Err`; never re-raised |
//!
//! A cancellation — of the group, an enclosing scope, or the child's own
//! handle — is never a failure and never restarted: a supervised child
//! cancelled during an attempt or its backoff ends at once. Restarts are
//! one-for-one (only the failed child restarts), and their count is on
//! the child's handle ([`TaskHandle::restarts`]).
//!
//! Layout: `state.rs` (what handles and children share, invariants),
//! `child.rs` (one child: scope, grace, end report, handle), `body.rs`
//! (the group's own future), `handle.rs` (the `Group` handle),
//! `executor.rs` (where `spawn` runs), `error.rs`, `supervise.rs` (the
//! restart policy and loop), `start.rs` (`Group::start` and readiness),
//! `summary.rs` (children's counts by state and the per-child outcome
//! summary), `progress.rs` (children's progress from the handle),
//! `second.rs` (a second signal ending the grace period).

mod aborts;
mod body;
mod builder;
mod child;
mod error;
mod executor;
mod handle;
mod incoming;
mod local;
mod node;
mod progress;
mod second;
mod set;
mod slot;
mod start;
mod state;
mod summary;
mod supervise;
mod task_handle;

pub use builder::{ChildBuilder, SupervisedChild};
pub use error::{GroupError, SpawnError, TaskError, TaskFailure};
pub use executor::GroupExecutor;
pub use handle::{ChildResults, Group, WaitForChildren};
pub use progress::ChildProgress;
pub use start::{Ready, Start, StartError};
pub use state::{FailurePolicy, TaskOutcome};
pub use summary::{ChildState, ChildSummary, GroupCounts, GroupSummary, WithSummary};
pub use supervise::{RestartsExhausted, Supervision};
pub use task_handle::TaskHandle;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use futures_util::task::Spawn;
use pin_project_lite::pin_project;

use self::body::GroupBody;
use self::error::BoxError;
use self::executor::Executor;
use self::state::{lock, GroupShared};
use crate::scope::seam;
use crate::{
    CancelScope, CancellationToken, Cancelled, OperationStatus, ScopeHandle, ScopeRun,
    SecondSignal, Signal, Source,
};

/// A task group: runs a body and the children it starts concurrently, and
/// returns only once every child has ended — anyio's task group, trio's
/// nursery, on any executor.
///
/// * **A scope itself.** The group runs in a [`CancelScope`] built with the
///   methods below (`name`, `timeout`, `token`, `on_signal`, ...); inside
///   the body it is the current scope, and each child runs in a child
///   scope of it, so checkpoints, [`current_token`](crate::current_token)
///   and [`report_progress`](crate::report_progress) work in children and
///   their contexts name the group as parent.
/// * **Children.** [`Group::start_soon`] runs a child inside the group's
///   own future: no spawning, any executor, `futures::executor::block_on`
///   included. [`Group::spawn`] runs it on an executor, in parallel: the
///   tokio runtime running here, or the one given with [`on`](Self::on) /
///   [`on_spawn`](Self::on_spawn); without one it is an error, never a
///   silent fallback.
/// * **Structured.** The group's future returns only after every child
///   has ended — finished, failed, cancelled or panicked. Dropping it
///   drops the children it polls and aborts the spawned ones: nothing it
///   started outlives it. Leaving it is a schedule point (as in trio and
///   anyio): a group that never let the executor run others yields once
///   before it returns, and a cancellation meanwhile is its outcome.
/// * **Failures.** By default the first child that returns `Err` or
///   panics cancels the group — its body and the other children — with
///   reason `Manual` (children see `Parent(Manual)`) and the failure as
///   the message; the group returns [`GroupError`] carrying every failure
///   (the first is primary), and re-raises a panic once the others have
///   ended. See [`FailurePolicy`] for the alternatives, and
///   [`supervise`](Self::supervise) / [`Supervision`] for children that
///   restart.
/// * **Shutdown.** [`Group::close`] + [`Group::wait`] end the group from
///   inside; when the group is cancelled, the children get its
///   [`grace`](Self::grace) period to reach a checkpoint before they are
///   dropped or aborted.
///
/// | | `TaskGroup` | anyio `create_task_group()` | tokio `JoinSet` |
/// |---|---|---|---|
/// | children run | in the group's future (`start_soon`) or on an executor (`spawn`) | in the event loop | tokio tasks |
/// | returns when | every child ended | every child ended | you join them (or drop the set) |
/// | dropped / left early | children dropped, spawned ones aborted | children cancelled | tasks aborted |
/// | a child fails | siblings and body cancelled; all errors returned; a panic re-raised | siblings cancelled; `ExceptionGroup` raised | nothing; `join_next` returns the error |
/// | cancellation | the group's scope: timeout, token, signal, enclosing scope; children see `Parent(reason)` | the enclosing cancel scope | `abort_all` |
/// | cleanup on cancel | `grace` period to reach a checkpoint, then dropped | until the next checkpoint (shielded cleanup possible) | none: aborted at the next await |
///
/// ```
/// use std::time::Duration;
/// use cancelable::checkpoint;
/// use cancelable::group::TaskGroup;
///
/// # futures::executor::block_on(async {
/// let outcome = TaskGroup::new()
///     .name("fan-out")
///     .timeout(Duration::from_secs(5))
///     .run(|group| async move {
///         group.start_soon(async { Ok::<_, cancelable::Cancelled>(()) });
///         // Never ends by itself: cancelled when its sibling fails.
///         group.start_soon(async {
///             let mut polls = 0u64;
///             while polls < u64::MAX {
///                 checkpoint().await?;
///                 async_io::Timer::after(Duration::from_millis(1)).await;
///                 polls += 1;
///             }
///             Ok::<_, cancelable::Cancelled>(polls)
///         });
///         group.start_soon(async { Err::<(), _>("item 3 is missing") });
///         Ok::<_, cancelable::Cancelled>("never returned")
///     })
///     .await;
/// let error = outcome.unwrap_err();
/// assert_eq!(error.failures().len(), 1);
/// assert_eq!(error.to_string(), format!("task group failed: {}", error.failures()[0]));
/// # });
/// ```
#[must_use = "a task group does nothing until `run` is awaited"]
pub struct TaskGroup {
    scope: CancelScope,
    grace: Option<Duration>,
    policy: FailurePolicy,
    supervision: Supervision,
    executor: Option<Executor>,
    /// The signals given to `on_signal`, and what a second one does.
    signals: Vec<Signal>,
    second_signal: SecondSignal,
    /// Keep a record per child (`track_children`).
    track: bool,
}

impl TaskGroup {
    /// A group with no sources of its own: it is cancelled by its handle,
    /// its failing children or an enclosing scope.
    pub fn new() -> Self {
        TaskGroup {
            scope: CancelScope::new(),
            grace: None,
            policy: FailurePolicy::default(),
            supervision: Supervision::default(),
            executor: None,
            signals: Vec::new(),
            second_signal: SecondSignal::Exit,
            track: false,
        }
    }

    /// Names the group's scope (see [`CancelScope::name`]).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.scope = self.scope.name(name);
        self
    }

    /// Attaches metadata to the group's context (see [`CancelScope::metadata`]).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.scope = self.scope.metadata(key, value);
        self
    }

    /// Cancels the group `duration` after it starts (see [`CancelScope::timeout`]).
    pub fn timeout(mut self, duration: Duration) -> Self {
        self.scope = self.scope.timeout(duration);
        self
    }

    /// Cancels the group at `deadline` (see [`CancelScope::deadline`]).
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.scope = self.scope.deadline(deadline);
        self
    }

    /// Cancels the group when the process receives `signal` (see
    /// [`CancelScope::on_signal`]).
    pub fn on_signal(mut self, signal: Signal) -> Self {
        self.scope = self.scope.on_signal(signal);
        self.signals.push(signal);
        self
    }

    /// What a second arrival of a signal given to
    /// [`on_signal`](Self::on_signal) does while the group, cancelled by
    /// its first arrival, drains in its [`grace`](Self::grace) period (see
    /// [`SecondSignal`]): by default ([`SecondSignal::Exit`]) what the
    /// signal does without cancelable — a second Ctrl-C ends the process;
    /// with [`SecondSignal::EndGrace`] it ends the grace period at once
    /// (what is left is dropped, spawned children are aborted) and the
    /// group returns its cancellation, so that the program can go on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::{SecondSignal, Signal};
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// let outcome = TaskGroup::new()
    ///     .on_signal(Signal::SIGINT)
    ///     .grace(Duration::from_secs(5))
    ///     .on_second_signal(SecondSignal::EndGrace)
    ///     .timeout(Duration::from_millis(5))
    ///     .run(|group| async move {
    ///         group.start_soon(std::future::pending::<Result<(), cancelable::Cancelled>>());
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await;
    /// assert!(outcome.unwrap_err().is_timeout());
    /// # });
    /// ```
    pub fn on_second_signal(mut self, action: SecondSignal) -> Self {
        self.scope = self.scope.on_second_signal(action);
        self.second_signal = action;
        self
    }

    /// Cancels the group when `token` is cancelled (see [`CancelScope::token`]).
    pub fn token(mut self, token: &CancellationToken) -> Self {
        self.scope = self.scope.token(token);
        self
    }

    /// Adds a cancellation source to the group's scope (see
    /// [`CancelScope::source`]).
    pub fn source(mut self, source: Source) -> Self {
        self.scope = self.scope.source(source);
        self
    }

    /// How long the children (and the body) keep running once the group
    /// is cancelled, so that they reach a checkpoint, which reports the
    /// cancellation, and clean up; what is still running then is dropped
    /// (spawned children are aborted). Without it (the default) they are
    /// dropped at once, as a cancelled scope drops its body.
    ///
    /// A cancellation of a child's own (its scope's timeout, its handle)
    /// drops it at once either way — unless the child's scope has a
    /// [`grace`](CancelScope::grace) period of its own, which it keeps for
    /// any cancellation (the group's grace is for the children without
    /// one). Scopes around the group wait for its grace period.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cancelable::checkpoint;
    /// use cancelable::group::TaskGroup;
    ///
    /// # futures::executor::block_on(async {
    /// let cleaned = Arc::new(AtomicBool::new(false));
    /// let seen = cleaned.clone();
    /// let outcome = TaskGroup::new()
    ///     .timeout(Duration::from_millis(10))
    ///     .grace(Duration::from_secs(5))
    ///     .run(|group| async move {
    ///         group.start_soon(async move {
    ///             let cancelled = loop {
    ///                 if let Err(cancelled) = checkpoint().await {
    ///                     break cancelled;
    ///                 }
    ///                 async_io::Timer::after(Duration::from_millis(1)).await;
    ///             };
    ///             // Cleanup that needs to await.
    ///             async_io::Timer::after(Duration::from_millis(5)).await;
    ///             seen.store(true, Ordering::SeqCst);
    ///             Err::<(), _>(cancelled)
    ///         });
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await;
    /// assert!(outcome.unwrap_err().is_timeout());
    /// assert!(cleaned.load(Ordering::SeqCst));
    /// # });
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// What the group does when a child fails (default
    /// [`FailurePolicy::CancelGroup`]).
    pub fn on_child_error(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The group's supervision policy, [`Group::supervision`], for the
    /// children started with [`ChildBuilder::supervised`]
    /// (default [`Supervision::restart()`]: 3 restarts within 5 s, no
    /// backoff). Other children are not restarted. A supervised child that
    /// spends its budget fails with [`RestartsExhausted`], and the group's
    /// [`on_child_error`](Self::on_child_error) policy applies to that
    /// failure (by default its siblings are cancelled).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::group::{Supervision, TaskGroup};
    ///
    /// # futures::executor::block_on(async {
    /// let error = TaskGroup::new()
    ///     .supervise(Supervision::restart().max_restarts(2).backoff(Duration::from_millis(1)))
    ///     .run(|group| async move {
    ///         group.child().supervised(group.supervision()).start_soon(|_attempt| async { Err::<(), _>("the database is down") });
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// let gave_up = error.primary().unwrap().error().restarts_exhausted().unwrap();
    /// assert_eq!(gave_up.restarts(), 2);
    /// assert_eq!(
    ///     error.to_string(),
    ///     "task group failed: task 1 failed: gave up after 2 restarts (at most 2 within 5s): \
    ///      the database is down"
    /// );
    /// # });
    /// ```
    pub fn supervise(mut self, supervision: Supervision) -> Self {
        self.supervision = supervision;
        self
    }

    /// The executor [`Group::spawn`] runs children on: a tokio `Runtime`
    /// or `Handle`, or an `Arc<smol::Executor<'static>>` (feature `smol`);
    /// see [`GroupExecutor`]. Without it, `spawn` uses the tokio runtime
    /// running where it is called, if any.
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use cancelable::group::TaskGroup;
    ///
    /// let runtime = tokio::runtime::Runtime::new().unwrap();
    /// // A group polled by `block_on`, its spawned children on tokio.
    /// let sum = futures::executor::block_on(TaskGroup::new().on(&runtime).run(|group| async move {
    ///     let a = group.spawn(async { Ok::<_, cancelable::Cancelled>(1) }).unwrap();
    ///     let b = group.spawn(async { Ok::<_, cancelable::Cancelled>(2) }).unwrap();
    ///     Ok::<_, cancelable::Cancelled>(a.await.unwrap() + b.await.unwrap())
    /// }));
    /// assert_eq!(sum.unwrap(), 3);
    /// # }
    /// ```
    pub fn on<E: GroupExecutor + ?Sized>(mut self, executor: &E) -> Self {
        self.executor = Some(executor::executor_of(executor));
        self
    }

    /// The executor [`Group::spawn`] runs children on: anything
    /// implementing `futures::task::Spawn` (a `futures::executor::ThreadPool`,
    /// say).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::task::{FutureObj, Spawn, SpawnError};
    /// use cancelable::group::TaskGroup;
    ///
    /// /// Runs every task on a thread of its own.
    /// struct ThreadPerTask;
    ///
    /// impl Spawn for ThreadPerTask {
    ///     fn spawn_obj(&self, task: FutureObj<'static, ()>) -> Result<(), SpawnError> {
    ///         std::thread::spawn(move || futures::executor::block_on(task));
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let value = TaskGroup::new()
    ///     .on_spawn(ThreadPerTask)
    ///     .run(|group| async move {
    ///         let child = group.spawn(async { Ok::<_, cancelable::Cancelled>(5) }).unwrap();
    ///         Ok::<_, cancelable::Cancelled>(child.await.unwrap())
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(value, 5);
    /// # });
    /// ```
    pub fn on_spawn<S: Spawn + Send + Sync + 'static>(mut self, spawner: S) -> Self {
        self.executor = Some(Executor::Spawn(Arc::new(spawner)));
        self
    }

    /// A handle to the group's scope: cancel it from anywhere, read its
    /// status and context.
    pub fn handle(&self) -> ScopeHandle {
        self.scope.handle()
    }

    /// Runs `body` with the [`Group`] handle, inside the group's scope,
    /// and returns its value once every child has ended.
    ///
    /// The body returns a `Result` whose error converts into
    /// `Box<dyn Error + Send + Sync>`; an `Err` of its own (not the
    /// group's cancellation seen by a checkpoint) cancels the group and is
    /// recorded as a failure.
    ///
    /// # Errors
    ///
    /// [`GroupError`] when a child or the body failed (under the default
    /// policy and `Collect`), or the group was cancelled from outside
    /// before its body and every child had ended (even if they then ended
    /// within the same poll).
    ///
    /// # Panics
    ///
    /// Re-raises the first panic of the body or of a child (except under
    /// [`FailurePolicy::Ignore`] for children), once every child has ended.
    pub fn run<B, Fut, T, E>(self, body: B) -> GroupRun<Fut, T>
    where
        B: FnOnce(Group) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        // The group's grace is recorded in its scope (the graces of the
        // scopes inside end with it), but applied by the group, which holds
        // its scope open while it drains (`body.rs`).
        let scope = match self.grace {
            Some(grace) => self.scope.held_grace(grace),
            None => self.scope,
        };
        let shared = Arc::new(GroupShared {
            state: Default::default(),
            scope: scope.handle(),
            policy: self.policy,
            supervision: self.supervision,
            grace: self.grace,
            executor: self.executor,
            waker: AtomicWaker::new(),
            ready: Default::default(),
            next_id: AtomicU64::new(1),
            subscribed: AtomicBool::new(false),
            tracked: AtomicBool::new(self.track),
            signals: self.signals,
            second_signal: self.second_signal,
        });
        let body = body(Group {
            shared: shared.clone(),
        });
        GroupRun {
            run: scope.run(GroupBody::new(body, shared.clone())),
            shared,
        }
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("scope", &self.scope)
            .field("grace", &self.grace)
            .field("policy", &self.policy)
            .field("supervision", &self.supervision)
            .field("executor", &self.executor)
            .field("second_signal", &self.second_signal)
            .field("track", &self.track)
            .finish()
    }
}

pin_project! {
    /// The future returned by [`TaskGroup::run`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct GroupRun<Fut, T> {
        #[pin]
        run: ScopeRun<GroupBody<Fut, T>>,
        shared: Arc<GroupShared>,
    }
}

impl<Fut, T, E> Future for GroupRun<Fut, T>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, GroupError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.run.poll(cx));
        let scope = &this.shared.scope;
        let (failures, panic, failure_cancelled) = {
            let mut state = lock(&this.shared.state);
            (
                std::mem::take(&mut state.failures),
                state.panic.take(),
                state.failure_cancelled,
            )
        };
        if let Some(payload) = panic {
            seam::set_final_status(scope, OperationStatus::Failed);
            std::panic::resume_unwind(payload);
        }
        // Cancelled from outside, not by a failing child?
        let external = |cancelled: Cancelled| (!failure_cancelled).then_some(cancelled);
        let (value, cancelled) = match outcome {
            Ok(Some(value)) => (Some(value), None),
            Err(cancelled) => (None, external(cancelled)),
            // The cause is recorded before the flag is published.
            Ok(None) if seam::scope_cancel_recorded(scope) => {
                let cancelled = seam::observe_cancellation(scope);
                // Handed to the code around the group, as a nested scope's.
                seam::pass_cancellation_up(scope, &cancelled);
                (None, external(cancelled))
            }
            Ok(None) => (None, None),
        };
        Poll::Ready(match value {
            Some(value) if failures.is_empty() => Ok(value),
            _ => {
                let status = if failures.is_empty() {
                    OperationStatus::Cancelled
                } else {
                    OperationStatus::Failed
                };
                seam::set_final_status(scope, status);
                Err(GroupError::new(cancelled, failures))
            }
        })
    }
}

impl<Fut, T> fmt::Debug for GroupRun<Fut, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupRun")
            .field("id", &self.shared.scope.id())
            .finish_non_exhaustive()
    }
}
