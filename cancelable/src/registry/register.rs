//! How scopes join a registry: [`CancelScope::register`],
//! [`CancelScope::register_in`] and [`CancelScope::key`].

use std::fmt;

use super::live::{Registration, Request};
use super::{global, Registry, RegistryError};
use crate::scope::seam;
use crate::CancelScope;

/// Registering scopes (feature `registry`).
impl CancelScope {
    /// Registers the operation in the process-wide [`global`] registry
    /// while it runs: listed, cancellable by id, counted in the statistics
    /// and history. `#[cancellable(register = true)]` does the same.
    ///
    /// ```
    /// use cancelable::{registry, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let scope = CancelScope::new().name("registered-doc").register();
    /// let id = scope.handle().id();
    /// scope
    ///     .run(async move { assert!(registry::global().get(id).is_some()) })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    #[inline]
    pub fn register(self) -> Self {
        self.register_in(global())
    }

    /// Registers the operation in `registry` while it runs.
    ///
    /// A scope belongs to one registry: a scope that already holds a
    /// [`key`](Self::key) stays in the registry of its key, so choose the
    /// registry before the key.
    ///
    /// ```
    /// use cancelable::{registry::Registry, CancelScope};
    ///
    /// # futures::executor::block_on(async {
    /// let registry = Registry::new();
    /// CancelScope::new().register_in(&registry).run(async {}).await.unwrap();
    /// assert_eq!(registry.statistics().total.finished(), 1);
    /// # });
    /// ```
    #[inline]
    pub fn register_in(mut self, registry: &Registry) -> Self {
        let (hook, _) = seam::hook_slot(&mut self);
        let request = Request {
            registry: registry.clone(),
            key: None,
        };
        // The common case: nothing registered yet.
        let Err(request) = Registration::install(hook, request) else {
            return self;
        };
        let registration = Registration::request_in(hook);
        match registration {
            // A key holds the scope in its registry.
            Some(held) if held.key.is_some() => {}
            _ => *registration = Some(request),
        }
        self
    }

    /// Registers the operation under a user key, unique among the
    /// operations of its registry that have not finished: found with
    /// [`Registry::get_by_key`], cancelled with [`Registry::cancel_by_key`].
    ///
    /// The key is held from this call until the scope finishes, or is
    /// dropped unstarted. `Err(KeyInUse)` names the operation that holds
    /// it; the registry is the one chosen with
    /// [`register_in`](Self::register_in) before, else the global one.
    ///
    /// ```
    /// use cancelable::registry::{Registry, RegistryError};
    /// use cancelable::CancelScope;
    ///
    /// let registry = Registry::new();
    /// let first = CancelScope::new().name("sync").register_in(&registry).key("job-42")?;
    /// let clash = CancelScope::new().register_in(&registry).key("job-42").unwrap_err();
    /// assert!(matches!(
    ///     &clash,
    ///     RegistryError::KeyInUse { holder, holder_name: Some(name), .. }
    ///         if *holder == first.handle().id() && name == "sync"
    /// ));
    /// drop(first); // never started: the key is free again
    /// assert!(CancelScope::new().register_in(&registry).key("job-42").is_ok());
    /// # Ok::<(), RegistryError>(())
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Result<Self, RegistryError> {
        let key = key.into();
        let (scope, hook, name) = seam::key_holder(&mut self);
        let registration = Registration::request_in(hook);
        if let Some(Request {
            key: Some(claim), ..
        }) = registration
        {
            if *claim.key == *key {
                return Ok(self);
            }
        }
        let registry = match registration {
            Some(request) => request.registry.clone(),
            None => global().clone(),
        };
        let claim = registry.inner.claim_key(key, scope, name.cloned())?;
        // A second key replaces the first (released as the old claim drops).
        *registration = Some(Request {
            registry,
            key: Some(claim),
        });
        Ok(self)
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("key", &self.key.as_ref().map(|claim| &claim.key))
            .finish_non_exhaustive()
    }
}

/// A registered scope that starts without shared state, with the crate's
/// features as built (the behaviour tests build `tracing` in, which takes
/// other ends of the driver: these run without it too).
#[cfg(test)]
mod lazy_registered {
    use std::future::pending;
    use std::time::Duration;

    use futures::executor::block_on;

    use crate::registry::{Filter, Registry};
    use crate::{CancelReason, CancelScope, Cancelled, OperationStatus};

    #[test]
    fn completes_fails_times_out_and_is_cancelled_through_the_registry() {
        let registry = Registry::new();
        block_on(async {
            CancelScope::new()
                .name("done")
                .register_in(&registry)
                .run(async {})
                .await
                .unwrap();
            let failed: Result<(), Box<dyn std::error::Error + Send + Sync>> = CancelScope::new()
                .name("failed")
                .register_in(&registry)
                .try_run(async { Err("disk full".into()) })
                .keep_error_text()
                .await;
            assert!(failed.is_err());
            let timed_out = CancelScope::new()
                .name("slow")
                .timeout(Duration::from_millis(1))
                .register_in(&registry)
                .run(pending::<()>())
                .await
                .unwrap_err();
            assert!(timed_out.is_timeout());
            let job = CancelScope::new()
                .name("stopped")
                .register_in(&registry)
                .run(pending::<()>());
            futures::pin_mut!(job);
            assert!(futures::poll!(job.as_mut()).is_pending());
            let id = registry.list(&Filter::new())[0].id;
            let answer = registry.cancel(id, CancelReason::Manual, "stop").unwrap();
            assert!(answer.is_requested());
            let cancelled: Cancelled = job.await.unwrap_err();
            assert_eq!(
                (cancelled.operation_id(), cancelled.message()),
                (Some(id), Some("stop"))
            );
            assert_eq!(cancelled.operation_name(), Some("stopped"));
        });
        let history = registry.history(4, &Filter::new());
        let seen: Vec<_> = history
            .iter()
            .map(|finished| (finished.name.as_deref().unwrap(), finished.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("stopped", OperationStatus::Cancelled),
                ("slow", OperationStatus::Cancelled),
                ("failed", OperationStatus::Failed),
                ("done", OperationStatus::Completed),
            ]
        );
        assert_eq!(history[0].reason, Some(CancelReason::Manual));
        assert_eq!(history[1].reason, Some(CancelReason::Timeout));
        assert_eq!(history[2].error.as_deref(), Some("disk full"));
        assert_eq!(registry.live_count(), 0);
    }
}
