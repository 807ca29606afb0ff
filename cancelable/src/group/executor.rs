//! Where [`Group::spawn`](crate::group::Group::spawn) runs children: the executor
//! given to the group, or tokio's when a tokio runtime runs here.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::task::{FutureObj, Spawn};

use super::error::SpawnError;

/// An executor a group can spawn its children on.
#[derive(Clone)]
pub enum Executor {
    #[cfg(feature = "tokio")]
    Tokio(tokio::runtime::Handle),
    #[cfg(feature = "smol")]
    Smol(Arc<async_executor::Executor<'static>>),
    Spawn(Arc<dyn Spawn + Send + Sync>),
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            #[cfg(feature = "tokio")]
            Executor::Tokio(_) => "Executor::Tokio",
            #[cfg(feature = "smol")]
            Executor::Smol(_) => "Executor::Smol",
            Executor::Spawn(_) => "Executor::Spawn",
        })
    }
}

impl Executor {
    /// The executor to spawn on: the group's own, else the tokio runtime
    /// running here, else none — never a silent fallback.
    pub(crate) fn resolve(given: Option<&Executor>) -> Result<Executor, SpawnError> {
        if let Some(executor) = given {
            return Ok(executor.clone());
        }
        #[cfg(feature = "tokio")]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Ok(Executor::Tokio(handle));
        }
        Err(SpawnError::NoExecutor)
    }

    /// Runs `task` to its end on this executor, detached: held inline by
    /// tokio's and smol's tasks, boxed for a `Spawn` implementation.
    pub(crate) fn spawn<F>(&self, task: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            #[cfg(feature = "tokio")]
            Executor::Tokio(handle) => {
                drop(handle.spawn(task));
                Ok(())
            }
            #[cfg(feature = "smol")]
            Executor::Smol(executor) => {
                executor.spawn(task).detach();
                Ok(())
            }
            Executor::Spawn(spawner) => spawner
                .spawn_obj(FutureObj::new(Box::pin(task)))
                .map_err(|error| SpawnError::Executor(error.to_string())),
        }
    }
}

mod sealed {
    pub trait Sealed {
        fn executor(&self) -> super::Executor;
    }
}

/// An executor that [`TaskGroup::on`](crate::group::TaskGroup::on) accepts:
///
/// * `tokio::runtime::Handle` and `tokio::runtime::Runtime` (feature
///   `tokio`, on by default);
/// * `Arc<smol::Executor<'static>>`, which is
///   `Arc<async_executor::Executor<'static>>` (feature `smol`).
///
/// Anything implementing `futures::task::Spawn` goes through
/// [`TaskGroup::on_spawn`](crate::group::TaskGroup::on_spawn) instead.
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use cancelable::group::TaskGroup;
///
/// let runtime = tokio::runtime::Runtime::new().unwrap();
/// let group = TaskGroup::new().on(&runtime);
/// # drop(group);
/// # }
/// ```
pub trait GroupExecutor: sealed::Sealed {}

#[cfg(feature = "tokio")]
impl sealed::Sealed for tokio::runtime::Handle {
    fn executor(&self) -> Executor {
        Executor::Tokio(self.clone())
    }
}

#[cfg(feature = "tokio")]
impl GroupExecutor for tokio::runtime::Handle {}

#[cfg(feature = "tokio")]
impl sealed::Sealed for tokio::runtime::Runtime {
    fn executor(&self) -> Executor {
        Executor::Tokio(self.handle().clone())
    }
}

#[cfg(feature = "tokio")]
impl GroupExecutor for tokio::runtime::Runtime {}

#[cfg(feature = "smol")]
impl sealed::Sealed for Arc<async_executor::Executor<'static>> {
    fn executor(&self) -> Executor {
        Executor::Smol(self.clone())
    }
}

#[cfg(feature = "smol")]
impl GroupExecutor for Arc<async_executor::Executor<'static>> {}

/// The executor behind `executor`.
pub(crate) fn executor_of<E: GroupExecutor + ?Sized>(executor: &E) -> Executor {
    sealed::Sealed::executor(executor)
}
