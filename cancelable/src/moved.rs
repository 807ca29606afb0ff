//! The root paths of the previous release, kept as deprecated aliases for
//! one release: the root now holds only the core, and every item of a
//! layer lives in its module (`cancelable::group::TaskGroup`). Each alias
//! says where its item moved. Traits cannot be deprecated through a
//! re-export (rustc ignores `#[deprecated]` on `use`): the two moved traits
//! stay re-exported here, hidden, without a warning. Delete this file in
//! the next release.
#![allow(missing_docs)]

#[deprecated(note = "moved: use cancelable::group::FailurePolicy")]
pub type ChildErrors = crate::group::FailurePolicy;
#[deprecated(note = "moved: use cancelable::group::ChildProgress")]
pub type ChildProgress = crate::group::ChildProgress;
#[deprecated(note = "moved: use cancelable::group::ChildState")]
pub type ChildState = crate::group::ChildState;
#[deprecated(note = "moved: use cancelable::group::ChildSummary")]
pub type ChildSummary = crate::group::ChildSummary;
#[deprecated(note = "moved: use cancelable::group::Group")]
pub type Group = crate::group::Group;
#[deprecated(note = "moved: use cancelable::group::GroupCounts")]
pub type GroupCounts = crate::group::GroupCounts;
#[deprecated(note = "moved: use cancelable::group::GroupError")]
pub type GroupError = crate::group::GroupError;
#[deprecated(note = "moved: use cancelable::group::GroupRun")]
pub type GroupRun<Fut, T> = crate::group::GroupRun<Fut, T>;
#[deprecated(note = "moved: use cancelable::group::GroupSummary")]
pub type GroupSummary = crate::group::GroupSummary;
#[deprecated(note = "moved: use cancelable::group::Ready")]
pub type Ready<V> = crate::group::Ready<V>;
#[deprecated(note = "moved: use cancelable::group::RestartsExhausted")]
pub type RestartsExhausted = crate::group::RestartsExhausted;
#[deprecated(note = "moved: use cancelable::group::ChildResults")]
pub type Results = crate::group::ChildResults;
#[deprecated(note = "moved: use cancelable::group::SpawnError")]
pub type SpawnError = crate::group::SpawnError;
#[deprecated(note = "moved: use cancelable::group::Start")]
pub type Start<V> = crate::group::Start<V>;
#[deprecated(note = "moved: use cancelable::group::StartError")]
pub type StartError = crate::group::StartError;
#[deprecated(note = "moved: use cancelable::group::Supervision")]
pub type Supervision = crate::group::Supervision;
#[deprecated(note = "moved: use cancelable::group::TaskError")]
pub type TaskError = crate::group::TaskError;
#[deprecated(note = "moved: use cancelable::group::TaskFailure")]
pub type TaskFailure = crate::group::TaskFailure;
#[deprecated(note = "moved: use cancelable::group::TaskGroup")]
pub type TaskGroup = crate::group::TaskGroup;
#[deprecated(note = "moved: use cancelable::group::TaskHandle")]
pub type TaskHandle<T> = crate::group::TaskHandle<T>;
#[deprecated(note = "moved: use cancelable::group::TaskOutcome")]
pub type TaskOutcome = crate::group::TaskOutcome;
#[deprecated(note = "moved: use cancelable::group::WaitForChildren")]
pub type Wait = crate::group::WaitForChildren;
#[deprecated(note = "moved: use cancelable::group::WithSummary")]
pub type WithSummary<Fut, T> = crate::group::WithSummary<Fut, T>;
/// Moved: use `cancelable::group::GroupExecutor` (a trait: no warning).
pub use crate::group::GroupExecutor;
#[deprecated(note = "moved: use cancelable::stream::Cancellable")]
pub type Cancellable<S> = crate::stream::Cancellable<S>;
#[deprecated(note = "moved: use cancelable::stream::Partial")]
pub type Partial<T> = crate::stream::Partial<T>;
#[deprecated(note = "moved: use cancelable::stream::PartialTail")]
pub type PartialTail<T> = crate::stream::PartialTail<T>;
/// Moved: use `cancelable::stream::CancellableStream` (a trait: no warning).
pub use crate::stream::CancellableStream;
#[deprecated(note = "moved: use cancelable::blocking::BlockingContext")]
pub type BlockingContext = crate::blocking::BlockingContext;
#[deprecated(note = "moved: use cancelable::blocking::run_blocking")]
pub fn run_blocking<T, F>(work: F) -> crate::blocking::RunBlocking<T>
where
    F: FnOnce(&crate::blocking::BlockingContext) -> T + Send + 'static,
    T: Send + 'static,
{
    crate::blocking::run_blocking(work)
}
#[deprecated(note = "renamed: use cancelable::ScopeRun")]
pub type Run<F> = crate::ScopeRun<F>;
#[deprecated(note = "renamed: use cancelable::ScopeTryRun")]
pub type TryRun<F> = crate::ScopeTryRun<F>;
