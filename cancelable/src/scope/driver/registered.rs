//! A registered scope that starts without shared state (`lazy.rs`,
//! invariant 3): its start, and the ends the driver tells its
//! registration of when the scope never took its state. Out of line: most
//! lazy scopes are not registered.

use super::super::armed::LazyRun;
use super::super::lazy::now_on;
use super::super::{slot, Extras};
use super::{Driver, Stage};
use crate::context::OperationStatus;
use crate::Cancelled;

impl Driver {
    /// [`start`](Self::start) of a scope with extras: lazy if it is a
    /// registered scope with nothing else in its extras, no parent, no
    /// token source and no state made before (`lazy.rs`, invariant 3);
    /// otherwise as any scope. Out of line: most scopes have no extras.
    #[inline(never)]
    pub(super) fn start_with_extras(&mut self) {
        let Stage::Configured(config) = &self.stage else {
            unreachable!("started once, from its configuration")
        };
        let candidate = self.shared.is_none()
            && config.first_token.is_none()
            && config.sources.capacity() == 0
            && config
                .extras
                .as_deref()
                .is_some_and(Extras::registration_only);
        match candidate && !slot::has_current() {
            true => self.start_registered_lazy(),
            false => self.start(),
        }
    }

    /// [`start`](Self::start) of a registered scope without a parent that
    /// starts lazy (`lazy.rs`, invariant 3): started as a scope without
    /// extras, then its registration, the only thing in its extras, is
    /// told of it and gives the token source it watches.
    fn start_registered_lazy(&mut self) {
        let Stage::Configured(config) = &mut self.stage else {
            unreachable!("started once, from its configuration")
        };
        let extras = config.extras.take();
        self.start();
        if let (Some(extras), Stage::Lazy(run)) = (extras, &mut self.stage) {
            run.scope.register(extras);
        }
    }
}

/// A registered scope without shared state whose body returned `output`
/// tells its registration (`lazy.rs`, invariant 3): the body could not
/// have seen a cancellation without making the state, so an `Err` is its
/// own failure. Out of line: most lazy scopes are not registered.
#[inline(never)]
pub(super) fn ended_registered<T>(
    run: &mut LazyRun,
    output: &T,
    is_failure: fn(&T) -> bool,
    describe: Option<fn(&T) -> String>,
) {
    let (status, error) = match is_failure(output) {
        true => (
            OperationStatus::Failed,
            describe.map(|describe| describe(output)),
        ),
        false => (OperationStatus::Completed, None),
    };
    let ended = now_on(run.scope.backend);
    run.scope.end_registered(status, ended, None, error);
}

/// A registered scope without shared state found cancelled at a pend:
/// its error, made as an unregistered one's, and its registration told
/// (`lazy.rs`, invariant 3), both with one clock read.
#[inline(never)]
pub(super) fn cancelled_registered(run: &mut LazyRun) -> Cancelled {
    let ended = now_on(run.scope.backend);
    let cancelled = run.scope.cancelled_error_at(ended);
    let status = OperationStatus::Cancelled;
    run.scope
        .end_registered(status, ended, Some(&cancelled), None);
    cancelled
}
