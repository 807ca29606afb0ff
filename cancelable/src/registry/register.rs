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
