//! What a running scope holds ([`Armed`], made at its first poll by the
//! driver, or when a scope without shared state gets it: [`LazyRun`]): its
//! links, deadline registration and sources, and the two questions the
//! driver asks it at every pend — can anything reach the scope, and has a
//! source fired.

use std::sync::Arc;
use std::task::Context;
use std::time::Instant;

use super::deadlines::Place;
use super::deadlines::{Registration, Shard, Target};
use super::lazy::{LazyScope, NestedIn};
use super::state::ScopeShared;
use super::Extras;
use crate::backend::Backend;
use crate::source::ArmedSources;
use crate::sync::Ordering;
use crate::token::{Cause, ChildLink};
use crate::CancelReason;

/// What a running scope holds: created at its first poll.
pub(super) struct Armed {
    /// The tokio runtime the scope started in, found with its backend:
    /// where its deadline registers at the first pend (the same poll, so
    /// the same thread and runtime), then forgotten. `None`: looked up
    /// when needed.
    #[cfg(feature = "tokio")]
    pub(super) start_runtime: Option<tokio::runtime::Id>,
    /// Callbacks, run when the scope finishes.
    pub(super) extras: Option<Box<Extras>>,
    /// The first token source, linked to the scope's token.
    pub(super) _token_link: Option<ChildLink>,
    pub(super) backend: Backend,
    pub(super) _parent_link: Option<ChildLink>,
    pub(super) _nested_in: Option<NestedIn>,
    /// The scope's deadline in its thread's shared timer.
    pub(super) deadline: Option<Registration>,
    pub(super) deadline_generation: u64,
    /// The deadline computed at the start, with the generation it had and
    /// whether it had passed already (three fields, not a tuple, so that
    /// the flag shares its word with `backend`): spares a lock and a clock
    /// read at the first pend.
    pub(super) initial_generation: u64,
    pub(super) initial_deadline: Option<Instant>,
    pub(super) initial_passed: bool,
    /// Boxed, and only when the scope has sources besides its deadline.
    pub(super) sources: Option<Box<ArmedSources>>,
    /// In the grace period: when the timer is set to wake the scope, and
    /// its entry in the thread's deadline shard.
    pub(super) grace_timer: Option<Box<(Instant, Registration)>>,
    #[cfg(feature = "tracing")]
    pub(super) span: tracing::Span,
}

/// A running scope without shared state (`lazy.rs`), as its driver holds
/// it: the [`LazyScope`] (pointed to from the current-scope slot while the
/// body is polled) and what its running state needs once the scope gets
/// shared state ([`LazyRun::armed`]).
pub(super) struct LazyRun {
    pub(super) scope: LazyScope,
    /// The tokio runtime found with the backend, for a scope with a
    /// deadline: such a scope gets its shared state at its first pend, in
    /// its first poll, so on this thread and runtime (see [`Armed`]).
    #[cfg(feature = "tokio")]
    pub(super) start_runtime: Option<tokio::runtime::Id>,
    /// Its deadline's entry in the thread's deadline shard, once it
    /// pended: the entry wakes the task, and nothing else
    /// ([`LazyRun::waits`]).
    pub(super) deadline_entry: Option<Registration>,
    #[cfg(feature = "tracing")]
    pub(super) span: tracing::Span,
}

impl LazyRun {
    /// At a pend of a scope without shared state: `true` if it waits, its
    /// task to be woken by its token source's cancel or by the deadline
    /// shard when its deadline passes; `false` if either happened, and
    /// the scope must end for it.
    #[inline(always)]
    pub(super) fn waits(&mut self, cx: &mut Context<'_>) -> bool {
        if self.scope.source_fired(cx) {
            return false;
        }
        match self.scope.deadline {
            Some(deadline) => self.waits_for_deadline(deadline, cx),
            None => true,
        }
    }

    /// [`waits`](Self::waits) for the deadline `deadline`: `true` until it
    /// has passed.
    ///
    /// Nothing else can cancel such a scope (`lazy.rs`, invariant 1), so
    /// the shard's entry only wakes its task: the entry gone means the
    /// shard expired it, at or after the deadline (`deadlines`, invariant
    /// 1). The clock is read only then, and at no other pend.
    #[inline(always)]
    fn waits_for_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        match &self.deadline_entry {
            Some(entry) if entry.is_live() => {
                if entry.waiting(cx.waker()) {
                    return true;
                }
                // Expired: the deadline passed, unless the clock of the
                // shard and the scope disagree (it then registers again).
                if self.scope.deadline_passed() {
                    return false;
                }
            }
            // The first pend: passed at the start already (`timeout_at`
            // with a time gone by) or not, without reading the clock.
            None if deadline <= self.scope.started => return false,
            // First pend, or a shard that can no longer fire (its tokio
            // runtime shut down): register where the scope is polled now.
            _ => {}
        }
        self.register_deadline(deadline, cx);
        true
    }

    /// At the scope's end, without its state: its deadline's entry
    /// (retired for the thread's next scope if `retire_entry`, for a scope
    /// that ended before its deadline), its token source and its parent
    /// released. What is left of the run owns nothing but its name.
    #[inline(always)]
    pub(super) fn release(&mut self, retire_entry: bool) {
        if let Some(entry) = self.deadline_entry.take() {
            if retire_entry {
                entry.retire();
            }
        }
        self.scope.release_source();
        drop(self.scope.parent.take());
    }

    #[inline(never)]
    fn register_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) {
        self.deadline_entry = None;
        // Found with the backend at the start: valid for the first poll.
        #[cfg(feature = "tokio")]
        let place = match self.start_runtime.take() {
            Some(runtime) => Place::tokio(runtime),
            None => Place::of(self.scope.backend()),
        };
        #[cfg(not(feature = "tokio"))]
        let place = Place::of(self.scope.backend());
        self.deadline_entry = Some(Registration::task(place, deadline, cx.waker()));
    }

    /// The running state of a scope that just got its shared state: no
    /// links, no sources, its deadline (the one it started with, or one
    /// set through a handle since) registered at the next
    /// [`Armed::poll_sources`]. Built from the lazy state in place (the
    /// driver replaces it right after), which saves moving it whole.
    pub(super) fn armed(&mut self) -> Armed {
        // Detected by now: the state was made (`LazyScope::make_shared`).
        let backend = self.scope.backend();
        let LazyScope {
            started, deadline, ..
        } = self.scope;
        // Made with the state (`LazyScope::make_shared`): a group's
        // child's link is to its parent.
        let link = self.scope.source_link.take();
        let (token_link, parent_link) = match self.scope.parent.is_some() {
            true => (None, link),
            false => (link, None),
        };
        Armed {
            #[cfg(feature = "tokio")]
            start_runtime: self.start_runtime,
            // A registered scope's registration goes with it.
            extras: self.scope.name.take_extras(),
            _token_link: token_link,
            backend,
            _parent_link: parent_link,
            _nested_in: self.scope.parent.take(),
            deadline: None,
            deadline_generation: u64::MAX,
            // A fresh state's generation: 0 until a handle moves the
            // deadline.
            initial_generation: 0,
            initial_deadline: deadline,
            initial_passed: deadline.is_some_and(|deadline| deadline <= started),
            sources: None,
            grace_timer: None,
            #[cfg(feature = "tracing")]
            span: std::mem::replace(&mut self.span, tracing::Span::none()),
        }
    }
}

impl Armed {
    /// `false` while nothing can cancel the scope or move its deadline: no
    /// deadline, no source, no parent, and nobody else holds its state or
    /// its token (a handle, `current_token()`, a nested scope or the
    /// registry would). Such a scope pends without registering its waker
    /// anywhere; every poll asks again, since only its body (polled just
    /// before) can hand it out.
    #[inline]
    pub(super) fn reachable(&self, shared: &Arc<ScopeShared>) -> bool {
        self.initial_deadline.is_some()
            || self.deadline.is_some()
            // A deadline set (through a handle dropped since) after the start.
            || shared.deadline_generation.load(Ordering::Acquire) != self.initial_generation
            || self.sources.is_some()
            || self._token_link.is_some()
            || self._parent_link.is_some()
            || self.grace_timer.is_some()
            || !(Arc::strong_count(shared) == 1
                && Arc::weak_count(shared) == 0
                && shared.token.is_unshared())
    }

    /// Registers the scope's deadline with the shared timer on the first
    /// pend (and again when the deadline moved), then polls the sources
    /// that need polling. Most pends of a running scope change nothing
    /// here: that case is checked in line, the rest is a call.
    #[inline(always)]
    pub(super) fn poll_sources(&mut self, shared: &Arc<ScopeShared>, cx: &mut Context<'_>) {
        let unchanged = self.deadline_generation
            == shared.deadline_generation.load(Ordering::Acquire)
            && self.sources.is_none()
            && self
                .deadline
                .as_ref()
                .is_none_or(|registration| registration.is_live());
        if !unchanged {
            self.poll_sources_changed(shared, cx);
        }
    }

    #[inline(never)]
    fn poll_sources_changed(&mut self, shared: &Arc<ScopeShared>, cx: &mut Context<'_>) {
        #[cfg(feature = "tokio")]
        let start_runtime = self.start_runtime.take();
        let generation = shared.deadline_generation.load(Ordering::Acquire);
        // A registration whose tokio runtime shut down can no longer fire:
        // register again where the scope is polled now.
        let lost = self
            .deadline
            .as_ref()
            .is_some_and(|registration| !registration.is_live());
        if self.deadline_generation != generation || lost {
            self.deadline_generation = generation;
            self.deadline = None;
            let (deadline, passed) = match self.initial_generation == generation {
                true => (self.initial_deadline, self.initial_passed),
                false => {
                    let deadline = shared.deadline();
                    let now = || self.backend.clock().now();
                    (deadline, deadline.is_some_and(|deadline| deadline <= now()))
                }
            };
            if passed {
                // Passed already (`timeout_at(now, ..)`): the scope ends at
                // this poll, whatever drives the timers.
                shared.token.cancel_cause(Cause::new(CancelReason::Timeout));
                return;
            }
            if let Some(deadline) = deadline {
                #[cfg(feature = "tokio")]
                let shard = match start_runtime {
                    Some(runtime) => Shard::at(Place::tokio(runtime)),
                    None => Shard::current(self.backend),
                };
                #[cfg(not(feature = "tokio"))]
                let shard = Shard::current(self.backend);
                self.deadline =
                    Some(shard.register(deadline, Target::Scope(Arc::downgrade(shared))));
                if shared.token.is_cancelled() {
                    return;
                }
            }
        }
        if let Some(sources) = &mut self.sources {
            sources.poll(cx, self.backend);
        }
    }
}
