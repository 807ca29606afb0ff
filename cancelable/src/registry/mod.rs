//! The operations registry: what is running right now, stop *that one*,
//! and why it did (not) stop.
//!
//! Scopes join a registry when asked — [`CancelScope::register`] (the
//! process-wide [`global`] registry), [`CancelScope::register_in`] (a
//! registry of your own) or `#[cancellable(register = true)]` — and leave
//! it when they end, however they end: finished, cancelled, failed,
//! panicked or dropped mid-flight. Nothing stays `Running` forever. Scopes
//! that do not register pay nothing for the registry.
//!
//! A [`Registry`] offers
//! * [`list`](Registry::list) / [`get`](Registry::get) /
//!   [`get_by_key`](Registry::get_by_key) of live operations, filtered by
//!   status, name pattern, parent or age ([`Filter`]);
//! * [`cancel`](Registry::cancel) by id or [key](Registry::cancel_by_key),
//!   answering what is known ([`CancelAnswer`]: requested while running,
//!   with a future of the final [`Outcome`], or already ended, and how),
//!   [`cancel_subtree`](Registry::cancel_subtree),
//!   [`cancel_all`](Registry::cancel_all);
//! * a bounded [`history`](Registry::history) of finished operations and
//!   [`cleanup`](Registry::cleanup);
//! * [`statistics`](Registry::statistics): counts by status, duration and
//!   **cancellation lag** histograms (from the cancel request to the
//!   scope's exit) per operation name;
//! * [`snapshot`](Registry::snapshot): the tree of live operations with
//!   reason, remaining deadline, progress, an **in grace** flag for
//!   operations cleaning up within their grace period and a **stuck** flag
//!   for operations that have not exited past their grace period (and a
//!   threshold, default 1 s) or, without one, past the threshold —
//!   `serde`-serialisable with the `serde` feature.
//!
//! Stuck operations are also reported once as a `tracing` warning (feature
//! `tracing`) and counted in `metrics` (feature `metrics`, see below).
//!
//! ```
//! use cancelable::registry::{Filter, Registry};
//! use cancelable::{CancelReason, CancelScope};
//!
//! # futures::executor::block_on(async {
//! let registry = Registry::new();
//! let job = CancelScope::new()
//!     .name("export")
//!     .register_in(&registry)
//!     .key("export-42")?
//!     .run(std::future::pending::<()>());
//! futures::pin_mut!(job);
//! assert!(futures::poll!(job.as_mut()).is_pending()); // started: live now
//!
//! let live = registry.list(&Filter::new().name("exp*")?);
//! assert_eq!(live.len(), 1);
//! let answer = registry.cancel_by_key("export-42", CancelReason::Manual, "operator request")?;
//! assert!(answer.is_requested()); // requested: it ends at its next await
//!
//! let cancelled = job.await.unwrap_err();
//! assert_eq!(cancelled.message(), Some("operator request"));
//! assert!(registry.list(&Filter::new()).is_empty());
//! assert_eq!(registry.history(10, &Filter::new())[0].name.as_deref(), Some("export"));
//! # Ok::<(), cancelable::registry::RegistryError>(())
//! # }).unwrap();
//! ```
//!
//! # Cost
//! Live operations sit in 32 shards chosen by id (no global lock); the
//! history is a ring written through one atomic cursor and a lock per
//! slot, each slot a copy of what the history shows of an operation,
//! overwritten in place by a newer one. A finished operation's state is
//! released when it ends (the history keeps none of it), and its record
//! is reused by the next operation its thread registers. A registered
//! scope pays, at its start and exit, a few uncontended locks and, once
//! its thread has registered before, no allocation of the registry's
//! (see BENCHMARKS.md); an unregistered scope, one branch.
//!
//! # Metrics
//! With the `metrics` feature, registered operations feed the `metrics`
//! facade (labels `operation`, and `reason` for cancellations):
//! `cancelable_operations_{started,completed,cancelled,failed,stuck}_total`,
//! the gauge `cancelable_operations_live` and the histograms
//! `cancelable_operation_duration_seconds` and
//! `cancelable_cancellation_lag_seconds`.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[cfg(doc)]
use crate::CancelScope;

mod builder;
mod cancel;
mod filter;
mod history;
mod index;
mod live;
#[cfg(feature = "metrics")]
mod metrics;
mod names;
#[cfg(feature = "redis")]
mod observer;
mod record;
mod register;
mod snapshot;
mod stats;
mod stuck;

pub(crate) use crate::seam::time::Now;

pub use builder::RegistryBuilder;
pub use cancel::{CancelAnswer, Outcome};
pub use filter::{Filter, Pattern, PatternError};
pub use history::FinishedOperation;
pub use names::{COUNTED_NAMES, OTHER_NAMES};
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use observer::JoinObserver;
pub use snapshot::{OperationInfo, OperationNode, Snapshot};
pub use stats::{Histogram, OperationStats, Statistics};

/// How many finished operations a registry remembers unless told otherwise.
pub const DEFAULT_HISTORY_CAPACITY: usize = 1_000;
/// The largest history capacity a registry accepts: 16,777,216 finished
/// operations (each a copy of what the history shows of it: a few hundred
/// bytes, plus its name, metadata and error text, each at most 1 KiB). The
/// history's memory grows as it fills.
pub const MAX_HISTORY_CAPACITY: usize = 1 << 24;
/// How long after its cancel request a running operation counts as stuck,
/// unless told otherwise.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(1);

pub(crate) use crate::sync::lock;

/// What went wrong with a registry request, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// No live operation has this id, and the history does not remember it.
    NotFound {
        /// The id asked for.
        id: u64,
    },
    /// No live operation holds this key.
    KeyNotFound {
        /// The key asked for.
        key: String,
    },
    /// Another live (or about to start) operation holds the key. Its
    /// `Display` is neutral, fit to reach a client (an HTTP answer); the
    /// fields name the holder for the operator, who may wait for it or
    /// cancel it with [`Registry::cancel_by_key`].
    KeyInUse {
        /// The key asked for.
        key: String,
        /// The id of the operation holding it.
        holder: u64,
        /// Its name, if it has one.
        holder_name: Option<String>,
    },
    /// An operation key was empty.
    EmptyKey,
    /// A history capacity of 0 was asked for.
    ZeroCapacity,
    /// A history capacity above [`MAX_HISTORY_CAPACITY`] was asked for.
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
    },
    /// A stuck threshold of 0 was asked for.
    ZeroStuckThreshold,
    /// A name pattern did not parse.
    BadPattern(PatternError),
    /// [`RegistryBuilder::install_global`] came after the global registry
    /// was set up (by an earlier install or a first use).
    GlobalAlreadySet,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::NotFound { id } => write!(
                f,
                "no operation with id {id} is in the registry: it never registered (call \
                 `register()` on its scope), or it finished long enough ago to leave the history"
            ),
            RegistryError::KeyNotFound { key } => {
                write!(f, "no live operation holds the key {key:?}")
            }
            RegistryError::KeyInUse { key, .. } => {
                write!(
                    f,
                    "the key {key:?} is in use by an operation that has not finished"
                )
            }
            RegistryError::EmptyKey => {
                f.write_str("an operation key must not be empty; use a key like \"job-42\"")
            }
            RegistryError::ZeroCapacity => f.write_str(
                "a history capacity of 0 cannot hold any finished operation; give 1 or more \
                 (the default is 1,000)",
            ),
            RegistryError::CapacityTooLarge { capacity } => write!(
                f,
                "a history capacity of {capacity} is above the limit of 16,777,216 finished \
                 operations (`MAX_HISTORY_CAPACITY`); give a smaller one (the default is 1,000)"
            ),
            RegistryError::ZeroStuckThreshold => f.write_str(
                "a stuck threshold of 0 would flag every cancelled operation at once; give a \
                 duration above zero (the default is 1 s)",
            ),
            RegistryError::BadPattern(error) => fmt::Display::fmt(error, f),
            RegistryError::GlobalAlreadySet => f.write_str(
                "the global registry is already set up (installed earlier, or used by a \
                 registered scope or a registry call); install it once, at the start of \
                 `main`, before anything registers",
            ),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegistryError::BadPattern(error) => Some(error),
            _ => None,
        }
    }
}

impl From<PatternError> for RegistryError {
    fn from(error: PatternError) -> Self {
        RegistryError::BadPattern(error)
    }
}

/// A registry of operations: cheap to clone (clones share it), `Send + Sync`.
///
/// Most programs use the process-wide one, [`global`]; tests and libraries
/// that want their own view make one with [`Registry::new`] or
/// [`Registry::builder`] and register scopes in it with
/// [`CancelScope::register_in`].
///
/// ```
/// use cancelable::registry::{Filter, Registry};
/// use cancelable::CancelScope;
///
/// # futures::executor::block_on(async {
/// let registry = Registry::new();
/// CancelScope::new().name("quick").register_in(&registry).run(async {}).await.unwrap();
/// assert_eq!(registry.statistics().total.completed, 1);
/// assert!(registry.list(&Filter::new()).is_empty());
/// # });
/// ```
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shards: Box<[live::Shard]>,
    keys: Box<[live::KeyShard]>,
    history: history::History,
    /// The names counted under their own in statistics and metrics.
    names: names::CountedNames,
    stuck_after: Duration,
    /// How many operations have joined: each record's start order.
    joins: AtomicU64,
    /// Told of each scope that joins or leaves, synchronously (feature
    /// `redis`: the cluster's seam, see `observer.rs`).
    #[cfg(feature = "redis")]
    pub(super) join_observer: std::sync::RwLock<Option<Arc<dyn JoinObserver>>>,
}

static GLOBAL: OnceLock<Registry> = OnceLock::new();

/// The process-wide registry that [`CancelScope::register`] and
/// `#[cancellable(register = true)]` join. Made with the default settings
/// at first use, unless [`RegistryBuilder::install_global`] came first.
///
/// ```
/// use cancelable::registry::{global, Filter};
/// use cancelable::CancelScope;
///
/// # futures::executor::block_on(async {
/// let job = CancelScope::new().name("global-doc").register();
/// let id = job.handle().id();
/// job.run(async move {
///     assert_eq!(global().get(id).unwrap().name.as_deref(), Some("global-doc"));
/// })
/// .await
/// .unwrap();
/// assert!(global().get(id).is_none());
/// # });
/// ```
pub fn global() -> &'static Registry {
    GLOBAL.get_or_init(Registry::new)
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("live", &self.live_count())
            .field("history_capacity", &self.history_capacity())
            .field("stuck_after", &self.inner.stuck_after)
            .finish()
    }
}

/// Two handles are equal when they share one registry.
impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Registry {}

impl Registry {
    /// A registry with the default settings: a history of 1,000, a stuck
    /// threshold of 1 s.
    ///
    /// ```
    /// let registry = cancelable::registry::Registry::new();
    /// assert_eq!(registry.live_count(), 0);
    /// ```
    pub fn new() -> Registry {
        RegistryBuilder::default()
            .build()
            .expect("the default settings are in range")
    }

    /// Settings for a new registry; see [`RegistryBuilder`].
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// How many finished operations the history keeps.
    ///
    /// ```
    /// assert_eq!(cancelable::registry::Registry::new().history_capacity(), 1_000);
    /// ```
    pub fn history_capacity(&self) -> usize {
        self.inner.history.capacity()
    }

    /// How many registered operations are running now.
    ///
    /// ```
    /// use cancelable::{registry::Registry, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// CancelScope::new()
    ///     .register_in(&registry)
    ///     .run(async move { assert_eq!(inside.live_count(), 1) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(registry.live_count(), 0);
    /// # });
    /// ```
    pub fn live_count(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(&shard.state).live.len())
            .sum()
    }

    /// The live operations that pass `filter`, in the order they started
    /// (joined the registry). An operation that is exiting — its final
    /// status set — is no longer listed.
    ///
    /// Reading flags (and reports, once) operations stuck after cancel.
    ///
    /// ```
    /// use cancelable::registry::{Filter, Registry};
    /// use cancelable::{CancelScope, OperationStatus};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// CancelScope::new()
    ///     .name("report-7")
    ///     .register_in(&registry)
    ///     .run(async move {
    ///         let running = Filter::new().status(OperationStatus::Running);
    ///         assert_eq!(inside.list(&running.clone().name("report-*")?).len(), 1);
    ///         assert!(inside.list(&running.name("export-*")?).is_empty());
    ///         Ok::<(), cancelable::registry::RegistryError>(())
    ///     })
    ///     .await
    ///     .unwrap()
    /// # .unwrap();
    /// # });
    /// ```
    pub fn list(&self, filter: &Filter) -> Vec<OperationInfo> {
        let mut now = Now::new();
        let mut records = self.inner.live_records();
        records.sort_unstable_by_key(|record| record.joined);
        records.retain(|record| {
            filter.accepts(
                record.status(),
                record.name().as_deref(),
                || record.made().and_then(|scope| scope.parent_id()),
                Some(
                    now.on(record.clock)
                        .saturating_duration_since(record.started),
                ),
            )
        });
        records
            .iter()
            .map(|record| OperationInfo::of(record, &mut now))
            // One that reached its final status since it was copied out
            // is exiting: not live.
            .filter(|info| !info.status.is_finished())
            .collect()
    }

    /// The live operation with this id, or `None`.
    ///
    /// ```
    /// use cancelable::{registry::Registry, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let scope = CancelScope::new().name("lookup").register_in(&registry);
    /// let id = scope.handle().id();
    /// assert!(registry.get(id).is_none()); // not started yet
    /// let inside = registry.clone();
    /// scope
    ///     .run(async move { assert_eq!(inside.get(id).unwrap().name.as_deref(), Some("lookup")) })
    ///     .await
    ///     .unwrap();
    /// assert!(registry.get(id).is_none()); // finished
    /// # });
    /// ```
    pub fn get(&self, id: u64) -> Option<OperationInfo> {
        let record = self.inner.live_record(id)?;
        Some(OperationInfo::of(&record, &mut Now::new())).filter(|info| !info.status.is_finished())
    }

    /// The live operation holding `key`, or `None`.
    ///
    /// ```
    /// use cancelable::{registry::Registry, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// CancelScope::new()
    ///     .register_in(&registry)
    ///     .key("job-42")?
    ///     .run(async move { assert!(inside.get_by_key("job-42").is_some()) })
    ///     .await
    ///     .unwrap();
    /// assert!(registry.get_by_key("job-42").is_none());
    /// # Ok::<(), cancelable::registry::RegistryError>(())
    /// # }).unwrap();
    /// ```
    pub fn get_by_key(&self, key: &str) -> Option<OperationInfo> {
        self.get(self.key_holder(key)?)
    }

    fn key_holder(&self, key: &str) -> Option<u64> {
        lock(self.inner.key_shard(key))
            .get(key)
            .map(|holder| holder.id)
    }

    /// The newest `limit` finished operations that pass `filter`, newest
    /// first. The history holds at most [`history_capacity`](Self::history_capacity)
    /// operations: the oldest leave as new ones finish.
    ///
    /// ```
    /// use cancelable::registry::{Filter, Registry};
    /// use cancelable::{CancelScope, OperationStatus};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::builder().history_capacity(2).build().unwrap();
    /// for name in ["a", "b", "c"] {
    ///     CancelScope::new().name(name).register_in(&registry).run(async {}).await.unwrap();
    /// }
    /// let names: Vec<_> = registry
    ///     .history(10, &Filter::new().status(OperationStatus::Completed))
    ///     .into_iter()
    ///     .map(|finished| finished.name.unwrap())
    ///     .collect();
    /// assert_eq!(names, ["c", "b"]);
    /// # });
    /// ```
    pub fn history(&self, limit: usize, filter: &Filter) -> Vec<FinishedOperation> {
        self.inner.history.newest(limit, filter, &mut Now::new())
    }

    /// Forgets the finished operations that ended at least `older_than`
    /// ago; returns how many. Statistics keep counting them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::registry::{Filter, Registry};
    /// use cancelable::CancelScope;
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// CancelScope::new().register_in(&registry).run(async {}).await.unwrap();
    /// assert_eq!(registry.cleanup(Duration::from_secs(3600)), 0);
    /// assert_eq!(registry.cleanup(Duration::ZERO), 1);
    /// assert!(registry.history(10, &Filter::new()).is_empty());
    /// assert_eq!(registry.statistics().total.completed, 1);
    /// # });
    /// ```
    pub fn cleanup(&self, older_than: Duration) -> usize {
        self.inner.history.cleanup(older_than, &mut Now::new())
    }

    /// The tree of live operations: each with its reason, remaining
    /// deadline, progress and stuck flag, the registered operations inside
    /// it as children. Serialisable with the `serde` feature.
    ///
    /// ```
    /// use cancelable::registry::Registry;
    /// use cancelable::{report_progress, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// let inside = registry.clone();
    /// CancelScope::new()
    ///     .name("import")
    ///     .register_in(&registry)
    ///     .run(async move {
    ///         report_progress(0.5, "halfway");
    ///         CancelScope::new()
    ///             .name("parse")
    ///             .register_in(&inside)
    ///             .run(async move {
    ///                 let snapshot = inside.snapshot();
    ///                 assert_eq!(snapshot.live, 2);
    ///                 let import = &snapshot.operations[0];
    ///                 assert_eq!(import.operation.progress.as_ref().unwrap().fraction, Some(0.5));
    ///                 assert_eq!(import.children[0].operation.name.as_deref(), Some("parse"));
    ///             })
    ///             .await
    ///     })
    ///     .await
    ///     .unwrap()
    ///     .unwrap();
    /// # });
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::build(self.inner.live_records_with_ids(), &mut Now::new())
    }
}
