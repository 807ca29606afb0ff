//! How a group's children fared, as a whole: [`ChildState`], the counts
//! by state ([`GroupCounts`], from [`Group::counts`](crate::group::Group::counts)
//! at any time), and the per-child outcome summary a group returns with
//! its result ([`GroupRun::with_summary`]).
//!
//! The counts cost a counter per child and are always kept. Per-child
//! records (each running child's scope, each ended child's name and
//! outcome) are kept only for a group that asks: built with
//! [`TaskGroup::track_children`](crate::group::TaskGroup::track_children), or run
//! [`with_summary`](GroupRun::with_summary).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::error::{BoxError, GroupError, TaskError};
use super::GroupRun;
use crate::scope::seam::WeakScope;
use crate::CancelReason;

/// Where a child of a group is: still running, or how it ended.
///
/// A child's own timeout (its scope's `timeout` or `deadline`) is a
/// cancellation, never a failure: the group goes on, and its result stays
/// `Ok` if nothing failed. [`TimedOut`](Self::TimedOut) tells those
/// children apart from the ones cancelled some other way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChildState {
    /// Started and not ended yet.
    Running,
    /// Returned `Ok`.
    Ok,
    /// Returned an `Err` of its own, or panicked: a failure
    /// ([`TaskError::is_failure`]).
    Failed,
    /// Cancelled by its own scope's deadline (reason
    /// [`CancelReason::Timeout`], not an enclosing scope's).
    TimedOut,
    /// Cancelled otherwise: by its handle, its group or an enclosing scope
    /// (a group's timeout included: its children see `Parent(Timeout)`),
    /// or dropped when the group's grace period ran out.
    Cancelled,
}

impl ChildState {
    /// The state of a child that ended with `result`.
    pub(crate) fn of<T>(result: &Result<T, TaskError>) -> ChildState {
        match result {
            Ok(_) => ChildState::Ok,
            Err(error) if error.is_failure() => ChildState::Failed,
            Err(TaskError::Cancelled(cancelled))
                if matches!(cancelled.reason(), CancelReason::Timeout) =>
            {
                ChildState::TimedOut
            }
            Err(_) => ChildState::Cancelled,
        }
    }
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChildState::Running => "running",
            ChildState::Ok => "ok",
            ChildState::Failed => "failed",
            ChildState::TimedOut => "timed out",
            ChildState::Cancelled => "cancelled",
        })
    }
}

/// How many children a group started, and where they are: from
/// [`Group::counts`](crate::group::Group::counts) while it runs, and
/// [`GroupSummary::counts`] once it ended. `started` is the sum of the
/// others. Its `Display` is a progress line:
/// `"20 children: 12 ok, 1 failed, 2 timed out, 0 cancelled, 5 running"`
/// (`running` only while some are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct GroupCounts {
    /// Children started (accepted by the group), ended or not.
    pub started: usize,
    /// Children not ended yet.
    pub running: usize,
    /// Children that returned `Ok`.
    pub ok: usize,
    /// Children that failed (an `Err` of their own, or a panic).
    pub failed: usize,
    /// Children cancelled by their own timeout.
    pub timed_out: usize,
    /// Children cancelled otherwise.
    pub cancelled: usize,
}

impl GroupCounts {
    /// How many children are in `state`.
    pub fn of(&self, state: ChildState) -> usize {
        match state {
            ChildState::Running => self.running,
            ChildState::Ok => self.ok,
            ChildState::Failed => self.failed,
            ChildState::TimedOut => self.timed_out,
            ChildState::Cancelled => self.cancelled,
        }
    }
}

impl fmt::Display for GroupCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} children: {} ok, {} failed, {} timed out, {} cancelled",
            self.started, self.ok, self.failed, self.timed_out, self.cancelled
        )?;
        if self.running > 0 {
            write!(f, ", {} running", self.running)?;
        }
        Ok(())
    }
}

/// One ended child, as [`GroupSummary::children`] lists it.
#[derive(Clone, Debug)]
pub struct ChildSummary {
    id: u64,
    name: Option<Arc<str>>,
    state: ChildState,
    error: Option<TaskError>,
}

impl ChildSummary {
    /// The child's id in its group (as [`TaskHandle::id`](crate::group::TaskHandle::id)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The child's scope name, if it had one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How it ended.
    pub fn state(&self) -> ChildState {
        self.state
    }

    /// Why it did not return `Ok`, if it did not: its failure, or its
    /// cancellation (with the reason and times).
    pub fn error(&self) -> Option<&TaskError> {
        self.error.as_ref()
    }
}

/// How every child of a group ended, returned beside the group's result by
/// [`GroupRun::with_summary`]: the counts by state, and each child with its
/// id, name, state and error, in the order they ended.
///
/// Its `Display` is the counts, then the names of the children that did
/// not return `Ok`, by state:
/// `"5 children: 1 ok, 1 failed, 3 timed out, 0 cancelled; failed: `parse`; timed out: `job-2`, `job-4`, `job-5`"`
/// (a child without a name is shown by its id, `#3`).
#[derive(Clone, Debug, Default)]
pub struct GroupSummary {
    counts: GroupCounts,
    children: Vec<ChildSummary>,
}

impl GroupSummary {
    /// The counts by state (nothing is running any more).
    pub fn counts(&self) -> GroupCounts {
        self.counts
    }

    /// Every child, in the order they ended.
    pub fn children(&self) -> &[ChildSummary] {
        &self.children
    }

    /// The children that ended in `state`.
    pub fn in_state(&self, state: ChildState) -> impl Iterator<Item = &ChildSummary> + '_ {
        self.children
            .iter()
            .filter(move |child| child.state == state)
    }
}

impl fmt::Display for GroupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.counts)?;
        for state in [
            ChildState::Failed,
            ChildState::TimedOut,
            ChildState::Cancelled,
        ] {
            let mut children = self.in_state(state).peekable();
            if children.peek().is_none() {
                continue;
            }
            write!(f, "; {state}: ")?;
            for (n, child) in children.enumerate() {
                if n > 0 {
                    f.write_str(", ")?;
                }
                match &child.name {
                    Some(name) => write!(f, "`{name}`")?,
                    None => write!(f, "#{}", child.id)?,
                }
            }
        }
        Ok(())
    }
}

/// What a group keeps of its children beyond the running count (in its
/// state, under its lock): the counts of ended children by state, and,
/// when the group tracks its children, each running child's scope and each
/// ended child's record.
#[derive(Default)]
pub(crate) struct Tracker {
    ok: usize,
    failed: usize,
    timed_out: usize,
    cancelled: usize,
    /// Running children's scopes, by id (tracked groups only).
    pub(crate) live: BTreeMap<u64, WeakScope>,
    /// Ended children (tracked groups only).
    ended: Vec<ChildSummary>,
}

impl Tracker {
    /// Records the end of child `id`.
    pub(crate) fn ended(
        &mut self,
        id: u64,
        name: Option<&Arc<str>>,
        state: ChildState,
        error: Option<&TaskError>,
        tracked: bool,
    ) {
        match state {
            ChildState::Ok => self.ok += 1,
            ChildState::Failed => self.failed += 1,
            ChildState::TimedOut => self.timed_out += 1,
            ChildState::Cancelled | ChildState::Running => self.cancelled += 1,
        }
        if tracked {
            self.live.remove(&id);
            self.ended.push(ChildSummary {
                id,
                name: name.cloned(),
                state,
                error: error.cloned(),
            });
        }
    }

    /// The summary of the ended children, taken out of the tracker.
    pub(crate) fn take_summary(&mut self, started: usize, running: usize) -> GroupSummary {
        GroupSummary {
            counts: self.counts(started, running),
            children: std::mem::take(&mut self.ended),
        }
    }

    /// The counts, given how many children started and still run.
    pub(crate) fn counts(&self, started: usize, running: usize) -> GroupCounts {
        GroupCounts {
            started,
            running,
            ok: self.ok,
            failed: self.failed,
            timed_out: self.timed_out,
            cancelled: self.cancelled,
        }
    }
}

impl<Fut, T> GroupRun<Fut, T> {
    /// Returns, beside the group's result, how each child ended: a
    /// [`GroupSummary`] with the counts by state and every child's id,
    /// name, state and error — whether the group succeeded or not. So a
    /// group whose children hit their own timeouts, which is `Ok`, can
    /// still say "3 jobs timed out", and which.
    ///
    /// It makes the group keep a record per child (as
    /// [`TaskGroup::track_children`](crate::group::TaskGroup::track_children)):
    /// call it on the future [`run`](crate::group::TaskGroup::run) returns, before
    /// awaiting it. (A child that the body's closure spawns on an executor
    /// before returning its future, and that ends before this call, is
    /// counted but not listed.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::CancelScope;
    /// use cancelable::group::{ChildState, TaskGroup};
    ///
    /// # futures::executor::block_on(async {
    /// let (result, summary) = TaskGroup::new()
    ///     .run(|group| async move {
    ///         for job in 1..=3u64 {
    ///             group
    ///                 .child()
    ///                 .name(format!("job-{job}"))
    ///                 .in_scope(CancelScope::new().timeout(Duration::from_millis(20)))
    ///                 .start_soon(async move {
    ///                     cancelable::sleep(Duration::from_millis(if job == 2 { 1 } else { 5_000 })).await?;
    ///                     Ok::<_, cancelable::Cancelled>(job)
    ///                 });
    ///         }
    ///         Ok::<_, cancelable::Cancelled>(())
    ///     })
    ///     .with_summary()
    ///     .await;
    /// // Timeouts are cancellations, not failures: the group is `Ok`...
    /// assert!(result.is_ok());
    /// // ...and the summary says what happened to each job.
    /// assert_eq!((summary.counts().ok, summary.counts().timed_out), (1, 2));
    /// let late: Vec<_> = summary.in_state(ChildState::TimedOut).filter_map(|job| job.name()).collect();
    /// assert_eq!(late.len(), 2);
    /// assert!(summary.to_string().starts_with("3 children: 1 ok, 0 failed, 2 timed out, 0 cancelled; timed out: `job-"));
    /// # });
    /// ```
    pub fn with_summary(self) -> WithSummary<Fut, T> {
        self.shared.tracked.store(true, Ordering::Relaxed);
        WithSummary { run: self }
    }
}

pin_project! {
    /// The future returned by [`GroupRun::with_summary`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct WithSummary<Fut, T> {
        #[pin]
        run: GroupRun<Fut, T>,
    }
}

impl<Fut, T, E> Future for WithSummary<Fut, T>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = (Result<T, GroupError>, GroupSummary);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = std::task::ready!(this.run.as_mut().poll(cx));
        let summary = this.run.shared.summary();
        Poll::Ready((result, summary))
    }
}

impl<Fut, T> fmt::Debug for WithSummary<Fut, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithSummary")
            .field("run", &self.run)
            .finish()
    }
}
