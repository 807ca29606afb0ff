//! Cancelling registered operations, and what the registry answers:
//! [`CancelAnswer`] and the [`Outcome`] a caller can await.
//!
//! A cancel *requests* the cancellation: the operation ends cancelled at
//! its next checkpoint or cancellation-aware wait, unless its body
//! finishes first — then it completes, as trio's and tokio's scopes do.
//! The answer says which of the two is known when the call returns, and
//! its [`Outcome`] tells how the operation ended once it has.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::history::{self, FinishedOperation};
use super::record::Record;
use super::{lock, Filter, Now, Registry, RegistryError};
use crate::scope::seam::ScopeView;
use crate::CancelReason;

/// What [`Registry::cancel`] and [`Registry::cancel_by_key`] did, and what
/// is known of the operation when they return.
///
/// A cancel *requests* the cancellation; a body that finishes before it
/// sees it (at a checkpoint or a cancellation-aware wait) completes. So
/// [`Requested`](Self::Requested) is not "cancelled": await its
/// [`Outcome`] to learn how the operation ended. The history and the
/// statistics record such an operation as completed though a cancel was
/// requested ([`FinishedOperation::completed_despite_cancel`],
/// [`OperationStats::completed_despite_cancel`](super::OperationStats::completed_despite_cancel)).
///
/// ```
/// use cancelable::registry::{CancelAnswer, Registry};
/// use cancelable::{CancelReason, CancelScope, OperationStatus};
///
/// # futures::executor::block_on(async {
/// let registry = Registry::new();
/// let scope = CancelScope::new().register_in(&registry);
/// let id = scope.handle().id();
/// let job = scope.run(std::future::pending::<()>());
/// futures::pin_mut!(job);
/// assert!(futures::poll!(job.as_mut()).is_pending());
///
/// let answer = registry.cancel(id, CancelReason::Manual, "stop").unwrap();
/// assert!(answer.is_requested());
/// assert!(matches!(
///     registry.cancel(id, CancelReason::Manual, "again").unwrap(),
///     CancelAnswer::AlreadyRequested(_)
/// ));
/// assert!(job.await.is_err());
/// let finished = answer.outcome().unwrap().await;
/// assert_eq!(finished.status, OperationStatus::Cancelled);
/// assert!(matches!(
///     registry.cancel(id, CancelReason::Manual, "late").unwrap(),
///     CancelAnswer::Ended(finished) if finished.status == OperationStatus::Cancelled
/// ));
/// # });
/// ```
#[derive(Debug)]
#[must_use = "the answer says whether the operation was still running, and how it ends"]
#[non_exhaustive]
pub enum CancelAnswer {
    /// This call requested the cancellation of the running operation. It
    /// ends cancelled at its next checkpoint or cancellation-aware wait,
    /// or completes if its body finishes first: the [`Outcome`] says which.
    Requested(Outcome),
    /// The operation's cancellation had been requested before (another
    /// call, a deadline, a signal, a scope around it); it was still
    /// running. Nothing changed; the [`Outcome`] says how it ends.
    AlreadyRequested(Outcome),
    /// The operation was built (and holds its key) but has not started.
    /// Its cancellation is requested: once it runs, its body runs to its
    /// first await, as any scope cancelled before it starts does (its
    /// first checkpoint or cancellation-aware wait returns the
    /// cancellation), and it ends cancelled. An operation dropped unstarted
    /// never runs.
    NotStarted,
    /// The operation had already ended; nothing changed. How it ended
    /// (boxed: the other answers are a pointer).
    Ended(Box<FinishedOperation>),
}

impl CancelAnswer {
    /// `true` if this call requested the cancellation (of a running
    /// operation, or of one not started yet).
    pub fn is_requested(&self) -> bool {
        matches!(self, CancelAnswer::Requested(_) | CancelAnswer::NotStarted)
    }

    /// The future of how the operation ends, if it was running.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            CancelAnswer::Requested(outcome) | CancelAnswer::AlreadyRequested(outcome) => {
                Some(outcome)
            }
            CancelAnswer::NotStarted | CancelAnswer::Ended(_) => None,
        }
    }

    /// The answer for the live `record`.
    fn of(record: Arc<Record>, reason: CancelReason, message: String) -> CancelAnswer {
        // An exiting operation sets its final status, then `left`: its
        // outcome is decided, whatever this call does.
        if record.left.load(Ordering::Acquire) || record.status().is_finished() {
            return CancelAnswer::Ended(Box::new(history::public(&record, &mut Now::new())));
        }
        match record.token().cancel_with(reason, message) {
            true => CancelAnswer::Requested(Outcome { record }),
            false => CancelAnswer::AlreadyRequested(Outcome { record }),
        }
    }

    /// The answer for a scope that holds a key but has not joined.
    fn not_started(shared: &ScopeView, reason: CancelReason, message: String) -> CancelAnswer {
        shared.token().cancel_with(reason, message);
        CancelAnswer::NotStarted
    }
}

/// How a running operation ends: a future of its [`FinishedOperation`],
/// ready once it has left the live set and is counted in the history and
/// statistics (from a [`CancelAnswer`]). Any executor can await it; it
/// keeps the operation's record (not the registry) alive.
#[must_use = "futures do nothing unless awaited"]
pub struct Outcome {
    record: Arc<Record>,
}

impl Outcome {
    /// The operation's id.
    pub fn id(&self) -> u64 {
        self.record.id
    }
}

impl Future for Outcome {
    type Output = FinishedOperation;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FinishedOperation> {
        let record = &self.get_mut().record;
        {
            let mut outcome = lock(&record.outcome);
            if outcome.exit.is_none() {
                let waiters = &mut outcome.waiters;
                if !waiters.iter().any(|waiting| waiting.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
        Poll::Ready(history::public(record, &mut Now::new()))
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("id", &self.record.id)
            .field("known", &lock(&self.record.outcome).exit.is_some())
            .finish()
    }
}

/// Cancelling (feature `registry`).
impl Registry {
    /// Requests the cancellation of operation `id` with `reason` and
    /// `message`, and says what is known ([`CancelAnswer`]):
    /// `Requested` (with a future of its [`Outcome`]) if this call asked
    /// first and it was running, `AlreadyRequested` if it was running and
    /// cancelled before, `NotStarted` for a scope built with a
    /// [`key`](crate::CancelScope::key) that has not started, `Ended` (how)
    /// if it has finished and the history still remembers it;
    /// `Err(NotFound)` otherwise (an unkeyed scope joins the registry when
    /// it starts).
    ///
    /// A request is not a promise: a body that finishes before it sees the
    /// cancellation completes (see [`CancelAnswer`]).
    ///
    /// ```
    /// use cancelable::registry::{CancelAnswer, Registry, RegistryError};
    /// use cancelable::{CancelReason, CancelScope, OperationStatus};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// let scope = CancelScope::new().register_in(&registry);
    /// let id = scope.handle().id();
    /// // The body asks for its own cancellation, then returns without a
    /// // checkpoint: it completes.
    /// let answer = scope
    ///     .run(async move { inside.cancel(id, CancelReason::Manual, "stop").unwrap() })
    ///     .await
    ///     .unwrap();
    /// assert!(answer.is_requested());
    /// let finished = answer.outcome().unwrap().await;
    /// assert_eq!(finished.status, OperationStatus::Completed);
    /// assert!(finished.completed_despite_cancel);
    /// assert_eq!(
    ///     registry.cancel(u64::MAX, CancelReason::Manual, "").unwrap_err(),
    ///     RegistryError::NotFound { id: u64::MAX }
    /// );
    /// # });
    /// ```
    pub fn cancel(
        &self,
        id: u64,
        reason: CancelReason,
        message: impl Into<String>,
    ) -> Result<CancelAnswer, RegistryError> {
        let message = message.into();
        if let Some(record) = self.inner.live_record(id) {
            return Ok(CancelAnswer::of(record, reason, message));
        }
        // A keyed scope not started yet: found in the key table (a search
        // of every key shard, on this path only).
        if let Some(shared) = self.inner.unstarted_key_holder(id) {
            // It may have joined meanwhile.
            return Ok(match self.inner.live_record(id) {
                Some(record) => CancelAnswer::of(record, reason, message),
                None => CancelAnswer::not_started(&shared, reason, message),
            });
        }
        match self.inner.history.find(id) {
            Some(finished) => Ok(CancelAnswer::Ended(Box::new(finished))),
            None => Err(RegistryError::NotFound { id }),
        }
    }

    /// Requests the cancellation of the operation holding `key` — running,
    /// or built and not started yet — and says what is known, as
    /// [`cancel`](Self::cancel) does; `Err(KeyNotFound)` if no operation
    /// holds it (a key is released when its operation ends).
    ///
    /// A scope cancelled by key before it starts ([`CancelAnswer::NotStarted`])
    /// runs its body to its first await once started, as any scope
    /// cancelled before it starts does, and ends cancelled there.
    ///
    /// ```
    /// use cancelable::registry::{CancelAnswer, Registry, RegistryError};
    /// use cancelable::{CancelReason, CancelScope};
    ///
    /// let registry = Registry::new();
    /// let scope = CancelScope::new().register_in(&registry).key("nightly")?;
    /// assert!(matches!(
    ///     registry.cancel_by_key("nightly", CancelReason::Manual, "")?,
    ///     CancelAnswer::NotStarted
    /// ));
    /// assert!(scope.handle().is_cancelled());
    /// drop(scope);
    /// assert_eq!(
    ///     registry.cancel_by_key("nightly", CancelReason::Manual, "").unwrap_err(),
    ///     RegistryError::KeyNotFound { key: "nightly".into() }
    /// );
    /// # Ok::<(), RegistryError>(())
    /// ```
    pub fn cancel_by_key(
        &self,
        key: &str,
        reason: CancelReason,
        message: impl Into<String>,
    ) -> Result<CancelAnswer, RegistryError> {
        let holder = lock(self.inner.key_shard(key))
            .get(key)
            .map(|holder| (holder.id, holder.shared.clone()));
        let Some((id, shared)) = holder else {
            return Err(RegistryError::KeyNotFound {
                key: key.to_owned(),
            });
        };
        let message = message.into();
        Ok(match self.inner.live_record(id) {
            Some(record) => CancelAnswer::of(record, reason, message),
            None => CancelAnswer::not_started(&shared, reason, message),
        })
    }

    /// Cancels the live operation `id` and every registered operation
    /// running inside it, at any depth — including those inside a
    /// [`shield`](crate::shield), which cancelling `id` alone would not
    /// reach. Returns how many cancellations this call requested (each
    /// operation ends cancelled unless its body finishes before it sees the
    /// cancellation: see [`CancelAnswer`]); `Err(NotFound)`
    /// if `id` is not live and unknown to the history (`Ok(0)` if it has
    /// finished).
    ///
    /// ```
    /// use cancelable::registry::Registry;
    /// use cancelable::{CancelReason, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// let outer = CancelScope::new().name("outer").register_in(&registry);
    /// let outer_id = outer.handle().id();
    /// let outcome = outer
    ///     .run(async move {
    ///         CancelScope::new()
    ///             .name("inner")
    ///             .register_in(&inside)
    ///             .run(async {
    ///                 // Cancels this scope and the one around it.
    ///                 assert_eq!(inside.cancel_subtree(outer_id, CancelReason::Manual, ""), Ok(2));
    ///                 std::future::pending::<()>().await
    ///             })
    ///             .await
    ///     })
    ///     .await;
    /// // The inner scope ended first, with `Parent`: the outer body returned its error.
    /// assert!(outcome.unwrap().is_err());
    /// # });
    /// ```
    pub fn cancel_subtree(
        &self,
        id: u64,
        reason: CancelReason,
        message: impl Into<String>,
    ) -> Result<usize, RegistryError> {
        let Some(root) = self.inner.live_record(id) else {
            return match self.inner.history.find(id).is_some() {
                true => Ok(0),
                false => Err(RegistryError::NotFound { id }),
            };
        };
        let message = message.into();
        let subtree: Vec<_> = self
            .inner
            .live_records()
            .into_iter()
            .filter(|record| {
                // A scope with a scope inside has its state (the one
                // inside asked for its parent).
                record.id != id
                    && record
                        .made()
                        .is_some_and(|scope| scope.ancestor_ids().any(|ancestor| ancestor == id))
            })
            .collect();
        let was_cancelled: Vec<bool> = subtree
            .iter()
            .map(|record| record.token().is_cancelled())
            .collect();
        let mut cancelled = usize::from(root.token().cancel_with(reason.clone(), message.clone()));
        for (record, before) in subtree.iter().zip(was_cancelled) {
            // Unshielded scopes inside were cancelled with the root (reason
            // `Parent`); shielded ones only now.
            record.token().cancel_with(reason.clone(), message.clone());
            cancelled += usize::from(!before && record.token().is_cancelled());
        }
        Ok(cancelled)
    }

    /// Cancels every live operation that passes `filter`; returns how many
    /// cancellations this call requested (see [`CancelAnswer`] for what a
    /// request does not promise).
    ///
    /// ```
    /// use cancelable::registry::{Filter, Registry};
    /// use cancelable::{CancelReason, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// let outcome = CancelScope::new()
    ///     .name("batch-1")
    ///     .register_in(&registry)
    ///     .run(async move {
    ///         let batches = Filter::new().name("batch-*").unwrap();
    ///         assert_eq!(inside.cancel_all(&batches, CancelReason::Manual, "shutdown"), 1);
    ///         std::future::pending::<()>().await
    ///     })
    ///     .await;
    /// assert!(outcome.is_err());
    /// # });
    /// ```
    pub fn cancel_all(
        &self,
        filter: &Filter,
        reason: CancelReason,
        message: impl Into<String>,
    ) -> usize {
        let message = message.into();
        self.list(filter)
            .iter()
            .filter_map(|info| self.inner.live_record(info.id))
            .filter(|record| record.token().cancel_with(reason.clone(), message.clone()))
            .count()
    }
}
