//! The scope's poll state machine, shared by `ScopeRun` and `ScopeTryRun`: starts
//! the scope at its first poll (parent, deadline, sources), polls the body
//! inside the current-scope slot and then the sources, and finishes it
//! (status, callbacks) exactly once.
//!
//! Poll order is the body first, then the sources, like
//! `tokio::time::timeout`. A scope cancelled while a shield inside its body
//! runs keeps polling the body until the shield is done, then ends with its
//! reason.
//!
//! A scope with a grace period (`CancelScope::grace`) that is cancelled
//! keeps polling its body until the body returns or the grace period ends
//! — whichever comes first; a grace that ran out is checked *before* the
//! body is polled, so that it bounds shields too. The end is the earliest
//! of its own end, the limit of the scopes around it
//! (`ScopeShared::grace_limit_from_outside`) and a second delivery of the
//! signal that cancelled it; the thread's deadline shard wakes the scope
//! at that end — also a child whose grace is its parent's held grace (a
//! task group's: one grace for the group and its children). The `GracePolicy` (`grace.rs`)
//! says which cancellations start the grace (decided once, at the first
//! sight of the cancellation) and whether a value returned after the
//! cancellation is kept or replaced by it (`complete`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::armed::{Armed, LazyRun};
#[cfg(any(feature = "registry", not(feature = "tracing")))]
use super::lazy::Named;
use super::pool;
use super::slot;
use super::state::ScopeShared;
use super::{config, Callback, CancelScope, Config, GracePolicy, GraceValue};
use crate::context::{ContextData, OperationStatus};
use crate::panic;
use crate::sync::{lock, Ordering};
use crate::{Cancelled, GraceOutcome};

mod grace;
#[cfg(feature = "registry")]
mod registered;
mod start;

#[cfg(feature = "registry")]
use registered::{cancelled_registered, ended_registered};

/// The engine shared by [`ScopeRun`](super::ScopeRun) and [`ScopeTryRun`](super::ScopeTryRun).
pub(super) struct Driver {
    /// `None` while the scope has no shared state (`Stage::Lazy`); the
    /// current-scope slot points here while the body is polled.
    shared: Option<Arc<ScopeShared>>,
    stage: Stage,
    /// The scope was seen cancelled while a shield inside its body ran: it
    /// ends with its reason whatever the body does afterwards.
    held_by_shield: bool,
    /// The scope has a grace period (`CancelScope::grace`) that applies to
    /// its cancellation (or may: see `policy`).
    grace: bool,
    /// The grace policy (`grace.rs`); its start rule becomes `Any` once the
    /// grace is known to apply to the scope's cancellation.
    policy: GracePolicy,
    /// The grace started with the parent's cancellation (`FromParent`).
    grace_from_parent: bool,
    /// The scope's output does not flow into the code of its parent (a
    /// group's child): its cancellation is not passed up as seen.
    detached: bool,
}

/// Where the scope future is; an enum so that the configuration and the
/// running state share their room in the future.
enum Stage {
    Configured(Config),
    /// Running without shared state (`lazy.rs`): becomes `Running` when
    /// something asks for that state or the body pends under a deadline.
    Lazy(LazyRun),
    Running(Armed),
    Finished,
}

impl Driver {
    pub(super) fn new(scope: CancelScope) -> Self {
        Driver {
            shared: scope.shared.into_inner(),
            stage: Stage::Configured(scope.config),
            held_by_shield: false,
            grace: false,
            policy: GracePolicy::new(),
            grace_from_parent: false,
            detached: false,
        }
    }

    /// See `detached`.
    pub(super) fn detach(&mut self) {
        self.detached = true;
    }

    /// Takes `shared` as the scope's state, made outside before the start
    /// (as `CancelScope::handle` makes it): kept if the scope has none yet
    /// and has not started; `false` otherwise.
    pub(super) fn adopt(&mut self, shared: &Arc<ScopeShared>) -> bool {
        let adopt = self.shared.is_none() && matches!(self.stage, Stage::Configured(_));
        if adopt {
            self.shared = Some(shared.clone());
        }
        adopt
    }

    /// The scope's shared state, if it has any (it is made or kept until
    /// the scope future is dropped).
    pub(super) fn state(&self) -> Option<&Arc<ScopeShared>> {
        self.shared.as_ref()
    }

    #[inline]
    fn shared(&self) -> &Arc<ScopeShared> {
        lent_back(&self.shared)
    }

    pub(super) fn poll<F: Future>(
        &mut self,
        mut body: Pin<&mut F>,
        cx: &mut Context<'_>,
        is_failure: fn(&F::Output) -> bool,
        describe: Option<fn(&F::Output) -> String>,
    ) -> Poll<Result<F::Output, Cancelled>> {
        // Matched in place: a running scope's state is not moved out and
        // back on every poll.
        match &self.stage {
            Stage::Running(_) | Stage::Lazy(_) => {}
            // A scope with extras may be a registered one that starts
            // lazy (`registered.rs`).
            #[cfg(feature = "registry")]
            Stage::Configured(config) if config.extras.is_some() => self.start_with_extras(),
            Stage::Configured(_) => self.start(),
            Stage::Finished => panic!("a cancel scope future was polled after it completed"),
        }
        #[cfg(feature = "tracing")]
        let _entered = match &self.stage {
            Stage::Running(armed) => armed.span.clone().entered(),
            Stage::Lazy(run) => run.span.clone().entered(),
            _ => unreachable!("started above"),
        };
        if let Stage::Lazy(run) = &mut self.stage {
            let polled = slot::enter_lazy(&mut run.scope, || body.as_mut().poll(cx));
            match run.scope.made.take() {
                // The code inside asked for the scope's state.
                Some(shared) => self.shared = Some(shared),
                None => {
                    if let Poll::Ready(output) = polled {
                        // A registered scope (its token source is its
                        // registration's) tells its registration how it
                        // ended; nothing else reached the scope: its end
                        // is unobservable (`lazy.rs`, invariant 1).
                        #[cfg(feature = "tracing")]
                        {
                            #[cfg(feature = "registry")]
                            if let Named::Registered(_) = run.scope.name {
                                ended_registered(run, &output, is_failure, describe);
                            }
                            tracing::debug!(parent: &run.span, "scope finished");
                            run.release(true);
                            self.stage = Stage::Finished;
                        }
                        // Without `tracing` the lazy state owns nothing but
                        // its name and what `LazyRun::release` releases:
                        // those dropped, the rest is forgotten rather than
                        // dropped field by field.
                        #[cfg(not(feature = "tracing"))]
                        {
                            // One look at the name: a registered scope's
                            // room holds its extras instead.
                            match run.scope.name {
                                Named::Name(ref mut name) => drop(name.take()),
                                #[cfg(feature = "registry")]
                                Named::Registered(_) => {
                                    ended_registered(run, &output, is_failure, describe)
                                }
                                #[cfg(not(feature = "registry"))]
                                Named::Registered(_) => {}
                            }
                            run.release(true);
                            std::mem::forget(std::mem::replace(&mut self.stage, Stage::Finished));
                        }
                        return Poll::Ready(Ok(output));
                    }
                    // Pending: its token source's waiter and its deadline's
                    // entry in the shard wake the task.
                    if run.waits(cx) {
                        return Poll::Pending;
                    }
                    // Its token source was cancelled or its deadline
                    // passed: the scope ends for it, with the error its
                    // state would have given, and no state made (nothing
                    // can observe its end: `lazy.rs`, invariant 1).
                    #[cfg(feature = "registry")]
                    let cancelled = match run.scope.is_registered() {
                        true => cancelled_registered(run),
                        false => run.scope.cancelled_error(),
                    };
                    #[cfg(not(feature = "registry"))]
                    let cancelled = run.scope.cancelled_error();
                    #[cfg(feature = "tracing")]
                    {
                        tracing::info!(parent: &run.span, reason = %cancelled.reason(), "scope cancelled");
                        // Its deadline's entry and its waiter go with it.
                        self.stage = Stage::Finished;
                    }
                    // As at a lazy scope's return above: its name is in
                    // the error (a registered scope's extras went back
                    // with its end); the rest of what it owns released,
                    // its deadline's entry not kept for the next scope.
                    #[cfg(not(feature = "tracing"))]
                    {
                        drop(run.scope.name.take());
                        run.release(false);
                        std::mem::forget(std::mem::replace(&mut self.stage, Stage::Finished));
                    }
                    return Poll::Ready(Err(cancelled));
                }
            }
            let armed = run.armed();
            self.stage = Stage::Running(armed);
            return match polled {
                Poll::Ready(output) => Poll::Ready(self.complete(output, is_failure, describe)),
                Poll::Pending => self.pended(body, cx, false, is_failure, describe),
            };
        }
        let cancelled_before = self.shared().token.is_cancelled();
        if cancelled_before && self.shared().hold_count() > 0 {
            // Cancelled while a shield runs: only the shield keeps the body
            // going from here on.
            self.held_by_shield = true;
        }
        if cancelled_before && self.grace_applies() && self.grace_is_over() {
            return Poll::Ready(Err(self.drop_after_grace()));
        }
        if let Poll::Ready(output) = self.poll_body(body.as_mut(), cx) {
            return Poll::Ready(self.complete(output, is_failure, describe));
        }
        self.pended(body, cx, cancelled_before, is_failure, describe)
    }

    /// Polls the body with the scope in the current-scope slot.
    #[inline(always)]
    fn poll_body<F: Future>(&mut self, body: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        slot::enter_shared(lent_back(&self.shared), || body.poll(cx))
    }

    /// The body of a running scope pended: watch the sources, and end the
    /// scope if it is cancelled (`cancelled_before`: it was at the start
    /// of this poll).
    #[inline(always)]
    fn pended<F: Future>(
        &mut self,
        mut body: Pin<&mut F>,
        cx: &mut Context<'_>,
        cancelled_before: bool,
        is_failure: fn(&F::Output) -> bool,
        describe: Option<fn(&F::Output) -> String>,
    ) -> Poll<Result<F::Output, Cancelled>> {
        let shared = lent_back(&self.shared);
        if let Stage::Running(armed) = &mut self.stage {
            if armed.reachable(shared) {
                shared.token.register_owner(cx.waker());
                if !shared.token.is_cancelled() {
                    armed.poll_sources(shared, cx);
                }
            }
        }
        if !shared.token.is_cancelled() {
            return Poll::Pending;
        }
        if self.grace_applies() {
            // Cancelled, with a grace period: the body goes on until it
            // returns or the grace period ends.
            if self.grace_is_over() {
                return Poll::Ready(Err(self.drop_after_grace()));
            }
            if !cancelled_before {
                // The cancellation arrived during this poll, after the body
                // was polled: poll it again now, so that its checkpoints and
                // waits report it without waiting for a wake-up.
                if let Poll::Ready(output) = self.poll_body(body.as_mut(), cx) {
                    return Poll::Ready(self.complete(output, is_failure, describe));
                }
            }
            return Poll::Pending;
        }
        let shared = lent_back(&self.shared);
        if shared.hold_count() > 0 {
            // Cancelled, but a shield inside the body runs: keep polling the
            // body until it is done, then end with the reason.
            self.held_by_shield = true;
            return Poll::Pending;
        }
        // The cancellation arrived during this poll, after the body was
        // polled, and scopes are running inside the body: poll it once more
        // so that they end with their `Parent` reason, which the body may
        // pass on (a caller receiving an inner error through `?` then
        // still learns what fired). Without nested scopes the body is not
        // polled again, as with `tokio::time::timeout`.
        if !cancelled_before && shared.nested.load(Ordering::Acquire) > 0 {
            if let Poll::Ready(output) = self.poll_body(body.as_mut(), cx) {
                return Poll::Ready(self.complete(output, is_failure, describe));
            }
        }
        let cancelled = self.shared().cancelled_error();
        self.finish(OperationStatus::Cancelled, Some(&cancelled));
        Poll::Ready(Err(cancelled))
    }

    /// The body finished: record how, and hand its output back — unless
    /// the scope was seen cancelled while a shield held it open, in which
    /// case it ends with its reason, as it would have without the shield,
    /// and the output is dropped.
    fn complete<T>(
        &mut self,
        output: T,
        is_failure: fn(&T) -> bool,
        describe: Option<fn(&T) -> String>,
    ) -> Result<T, Cancelled> {
        let shared = self.shared();
        if self.policy.late_value() == GraceValue::Replace && shared.token.has_recorded_cause() {
            // Returned after the cancellation was recorded: the
            // cancellation's answer, whatever the body returned.
            drop(output);
            let mut cancelled = shared.cancelled_error();
            if self.grace {
                cancelled = cancelled.with_grace_outcome(GraceOutcome::FinishedWithinGrace);
            }
            self.finish(OperationStatus::Cancelled, Some(&cancelled));
            return Err(cancelled);
        }
        if self.grace && shared.token.is_cancelled() {
            // Cancelled, and the body returned within its grace period: an
            // `Err` is the cancellation's doing, a value is returned (the
            // body finished its work after all).
            if is_failure(&output) {
                drop(output);
                let cancelled = shared
                    .cancelled_error()
                    .with_grace_outcome(GraceOutcome::FinishedWithinGrace);
                self.finish(OperationStatus::Cancelled, Some(&cancelled));
                return Err(cancelled);
            }
            self.finish(OperationStatus::Completed, None);
            return Ok(output);
        }
        if self.held_by_shield {
            drop(output);
            let cancelled = self.shared().cancelled_error();
            self.finish(OperationStatus::Cancelled, Some(&cancelled));
            return Err(cancelled);
        }
        let shared = self.shared();
        let status = if !is_failure(&output) {
            OperationStatus::Completed
        } else if shared.err_is_cancellation(false) {
            // An error after the body saw the cancellation is the
            // cancellation's doing; any other is the body's own failure.
            OperationStatus::Cancelled
        } else {
            OperationStatus::Failed
        };
        // --- context completion: the failed body's error text ---
        if let (OperationStatus::Failed, Some(describe)) = (status, describe) {
            shared.record_error_text(describe(&output));
        }
        let cancelled = (status == OperationStatus::Cancelled).then(|| shared.cancelled_error());
        self.finish(status, cancelled.as_ref());
        Ok(output)
    }

    /// Records the outcome, releases every source and runs the callbacks.
    fn finish(&mut self, status: OperationStatus, cancelled: Option<&Cancelled>) {
        // The running state is read and dropped in place: moving it out
        // would copy the whole of it on every scope's end.
        let Stage::Running(armed) = &mut self.stage else {
            unreachable!("only a running scope with shared state finishes here")
        };
        let (backend, extras, sources) =
            (armed.backend, armed.extras.take(), armed.sources.as_mut());
        // Unregister timers, signal listeners and token callbacks, and
        // detach from the parent, before user callbacks run. A signal that
        // reached the scope counts it as cleaning up until the callbacks
        // ran: a second one meanwhile does what it would do without
        // cancelable (see the `signal` module).
        let _cleaning = sources.map(|sources| sources.stop_signals());
        let shared = lent_back(&self.shared);
        // Most scopes have no extras: no default `Extras` is built (and
        // dropped) for them.
        #[cfg_attr(not(feature = "registry"), allow(unused_mut))]
        let mut extras = extras;
        // The end time can only be read through a handle or a callback:
        // spare the clock read when there is neither.
        let observed = Arc::strong_count(shared) > 1
            || extras.as_deref().is_some_and(|extras| {
                !extras.on_complete.is_empty() || !extras.on_error.is_empty()
            });
        if observed {
            lock(&shared.data).ended = Some(backend.clock().now());
        }
        shared.set_status(status);
        if let (Some(cancelled), false) = (cancelled, self.detached) {
            shared.pass_cancellation_up(cancelled);
        }
        #[cfg(feature = "tracing")]
        {
            let Stage::Running(armed) = &self.stage else {
                unreachable!("only a running scope finishes")
            };
            let span = &armed.span;
            match cancelled {
                Some(cancelled) => {
                    tracing::info!(parent: span, reason = %cancelled.reason(), "scope cancelled")
                }
                None => tracing::debug!(parent: span, %status, "scope finished"),
            }
        }
        // The links, timer entry and sources go with the running state.
        self.stage = Stage::Finished;
        // --- registry hook: leave the live set before user callbacks run ---
        #[cfg(feature = "registry")]
        if let Some(hook) = extras
            .as_deref_mut()
            .and_then(|extras| extras.registration.take())
        {
            hook.end();
        }
        let Some(mut extras) = extras else {
            return;
        };
        match status {
            OperationStatus::Cancelled if !extras.on_cancel.is_empty() => {
                let cancelled = cancelled
                    .cloned()
                    .unwrap_or_else(|| shared.cancelled_error());
                let callbacks = std::mem::take(&mut extras.on_cancel);
                run_callbacks("an on_cancel callback", callbacks, &cancelled);
            }
            OperationStatus::Completed if !extras.on_complete.is_empty() => {
                let context = shared.context();
                let callbacks = std::mem::take(&mut extras.on_complete);
                run_callbacks("an on_complete callback", callbacks, &context);
            }
            OperationStatus::Failed if !extras.on_error.is_empty() => {
                let context = shared.context();
                let callbacks = std::mem::take(&mut extras.on_error);
                run_callbacks("an on_error callback", callbacks, &context);
            }
            _ => {}
        }
        config::recycle_extras(extras);
    }
}

/// Runs each of a scope's callbacks, containing their panics: the scope's
/// result is returned whatever they do.
fn run_callbacks<T>(what: &'static str, callbacks: Vec<Callback<T>>, arg: &T) {
    for callback in callbacks {
        let _ = panic::contain(what, || callback(arg));
    }
}

/// The scope's shared state, which a running scope past its lazy stage
/// has.
#[inline]
fn lent_back(shared: &Option<Arc<ScopeShared>>) -> &Arc<ScopeShared> {
    shared
        .as_ref()
        .expect("a running scope past its lazy stage has shared state")
}

/// Runs `write` on the scope's context data: without locking while nothing
/// else holds the state yet (no handle was taken), under the lock otherwise.
fn with_data<R>(shared: &mut Arc<ScopeShared>, write: impl FnOnce(&mut ContextData) -> R) -> R {
    match Arc::get_mut(shared) {
        Some(state) => write(crate::sync::get_mut(&mut state.data)),
        None => write(&mut lock(&shared.data)),
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropped mid-run from outside: the operation did not complete (a
        // scope without shared state has nobody to tell).
        if matches!(self.stage, Stage::Running(_)) {
            if let Some(shared) = &self.shared {
                if shared.status() == OperationStatus::Running {
                    shared.set_status(OperationStatus::Cancelled);
                }
            }
            // Its sources, links and timer entry go first: they hold the
            // state or its token, which could then not be reused.
            self.stage = Stage::Finished;
        }
        if let Some(shared) = self.shared.take() {
            pool::recycle(shared);
        }
    }
}
