//! A registered scope that starts without shared state (`lazy.rs`,
//! invariant 3): its registration told of its start, what the registry
//! keeps of it, and its end told back.

use std::mem::ManuallyDrop;
use std::time::Instant;

use super::lazy::{now_on, LazyScope, Named, REGISTERED};
use super::{Extras, StartHook};
use crate::backend::Clock;
use crate::context::OperationStatus;
use crate::Cancelled;

impl LazyScope {
    /// Hands a registered scope's `extras` (nothing but its registration)
    /// to it: the registration keeps what it shows of the scope, given an
    /// id now, and gives the token the scope watches as its token source
    /// (invariant 3). A registration that declines is dropped with its
    /// extras.
    pub(super) fn register(&mut self, mut extras: Box<Extras>) {
        let id = self
            .known_id()
            .unwrap_or_else(super::state::next_operation_id);
        let clock = self.clock();
        // Moved to the registration if it takes the scope.
        let mut name = self.name.take();
        let token = extras.registration.as_mut().and_then(|hook| {
            hook.start_lazy(super::config::LazyStart {
                id,
                name: &mut name,
                clock,
                started: self.started,
                deadline: self.deadline,
            })
        });
        match token {
            Some(token) => {
                self.source = Some(token);
                self.source_waiter = REGISTERED;
                self.name = Named::Registered(ManuallyDrop::new(extras));
            }
            None => {
                self.name = Named::Name(name);
                super::config::recycle_extras(extras);
            }
        }
    }

    /// The id the scope is known by already: its `tracing` span's, or its
    /// registration's.
    #[inline]
    fn known_id(&self) -> Option<u64> {
        #[cfg(feature = "tracing")]
        if self.id != 0 {
            return Some(self.id);
        }
        if self.is_registered() {
            return self.hook().and_then(|hook| hook.id());
        }
        None
    }

    /// The clock the scope's times are on: its backend's once detected,
    /// else the one `backend::now` reads.
    pub(super) fn clock(&self) -> Clock {
        match self.backend {
            Some(backend) => backend.clock(),
            #[cfg(feature = "tokio")]
            None => Clock::Tokio,
            #[cfg(not(feature = "tokio"))]
            None => Clock::Std,
        }
    }

    /// A registered scope that ends without having taken its state (its
    /// `status`, at `ended`; `cancelled` and the body's `error` text if
    /// so): its token source released first — the registration reuses
    /// its token when nobody else holds it —, then its registration told
    /// how, a state a reader made given its final status, and its extras
    /// handed back.
    pub(super) fn end_registered(
        &mut self,
        status: OperationStatus,
        ended: Instant,
        cancelled: Option<&Cancelled>,
        error: Option<String>,
    ) {
        let Some(mut extras) = self.name.take_extras() else {
            return;
        };
        self.release_source();
        if let Some(hook) = extras.registration.take() {
            if let Some(shared) = hook.made() {
                if let Some(error) = &error {
                    shared.record_error_text(error.clone());
                }
                shared.set_status(status);
            }
            hook.end_lazy(super::config::LazyEnd {
                status,
                ended,
                cancelled,
                error,
            });
        }
        super::config::recycle_extras(extras);
    }

    /// Its body panicked (the slot tells it while the panic unwinds): a
    /// registered scope's registration records a failure.
    #[cold]
    pub(super) fn panicked(&mut self) {
        if self.is_registered() {
            let ended = now_on(self.backend);
            self.end_registered(OperationStatus::Failed, ended, None, None);
        }
    }

    /// A registered scope's hook (`registered`).
    #[inline]
    pub(super) fn hook(&self) -> Option<&dyn StartHook> {
        match &self.name {
            Named::Registered(extras) => extras.registration.as_deref(),
            Named::Name(_) => None,
        }
    }
}
