//! The scope's start, at its first poll: parent, backend, start time,
//! context data, links, deadline and sources — and the lazy start of a
//! scope that nothing but its body reaches (see `lazy.rs`).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::super::armed::{Armed, LazyRun};
#[cfg(feature = "tokio")]
use super::super::deadlines::Place;
use super::super::lazy::{now_on, LazyScope, Named, NestedIn, NO_WAITER, WOKEN_BY_PARENT};
#[cfg(feature = "tracing")]
use super::super::state::next_operation_id;
use super::super::state::{Parent, ScopeShared};
use super::super::{pool, slot, Config, GracePolicy};
use super::{lent_back, run_callbacks, with_data, Driver, Stage};
use crate::backend::{Backend, Clock};
use crate::context::OperationStatus;
use crate::source::{ArmedSources, Sink, Source};
#[cfg(feature = "tracing")]
use crate::sync::lock;
use crate::sync::Ordering;
use crate::token::{Cause, Link};
use crate::{CancelReason, CancellationToken};

impl Driver {
    /// Starts the scope: [`Stage::Lazy`] when nothing but its body can
    /// reach it (no shared state made yet, no parent — but a task group's
    /// for a detached, unnamed child without a token source, not shielded
    /// from it (`lazy.rs`) —, no source besides a deadline, no callback or
    /// registration), [`Stage::Running`] otherwise.
    pub(super) fn start(&mut self) {
        let parent = slot::current_parent();
        let Stage::Configured(config) = &mut self.stage else {
            unreachable!("started once, from its configuration")
        };
        let lazy_parent = match &parent {
            None => true,
            // A group's child: its end is not passed up, and the layer
            // reads its name from the state after the run.
            Some(parent) => {
                self.detached
                    && !parent.shielded
                    && config.first_token.is_none()
                    && config.name.is_none()
            }
        };
        let lazy = lazy_parent
            && self.shared.is_none()
            // No source besides one token, and no room allocated for any
            // (see below).
            && config.sources.capacity() == 0
            && config.extras.is_none();
        if lazy {
            // Read in place: the configuration is not moved.
            let (name, source) = (config.name.take(), config.first_token.take());
            let (timeout, deadline, policy) =
                (config.timeout, config.deadline, config.grace_policy);
            // Two calls, so that the parentless start (most scopes) is
            // built without the child's branches.
            let run = match parent {
                None => self.start_lazy(name, source, None, timeout, deadline, policy, false),
                Some(parent) => {
                    // A group's child watches its parent's token as its
                    // source (`lazy.rs`).
                    let source = Some(parent.scope.token.clone());
                    let woken_by_parent = config.woken_by_parent;
                    self.start_lazy(
                        name,
                        source,
                        Some(parent.scope),
                        timeout,
                        deadline,
                        policy,
                        woken_by_parent,
                    )
                }
            };
            // What is left of the configuration owns nothing (no name,
            // token, source, room for sources or extras): forgotten
            // rather than dropped field by field.
            std::mem::forget(std::mem::replace(&mut self.stage, Stage::Lazy(run)));
        } else {
            let Stage::Configured(config) = std::mem::replace(&mut self.stage, Stage::Finished)
            else {
                unreachable!("matched above")
            };
            if self.shared.is_none() {
                self.shared = Some(pool::take());
            }
            self.start_armed(config, parent);
        }
    }

    /// The start of a scope without shared state (`lazy.rs`): its
    /// backend, start time, deadline, name and token source, kept in its
    /// future; `woken_by_parent` for a group's `start_soon` child, whose
    /// group wakes it on its cancellation (no waiter on the parent's
    /// token).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn start_lazy(
        &mut self,
        name: Option<Cow<'static, str>>,
        source: Option<CancellationToken>,
        parent: Option<Arc<ScopeShared>>,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
        policy: GracePolicy,
        woken_by_parent: bool,
    ) -> LazyRun {
        let with_deadline = timeout.is_some() || deadline.is_some();
        // A group's child runs under its group's executor, which the
        // group's scope has detected (as `start_armed` takes it).
        let parent_backend = parent
            .as_ref()
            .and_then(|parent| Clock::from_number(parent.clock.load(Ordering::Acquire)))
            .map(Backend::of_clock);
        // Without a deadline the backend is detected only if the state is
        // made; its clock is read without it (`backend::now`).
        #[cfg(feature = "tokio")]
        let (backend, start_runtime) = match (parent_backend, with_deadline) {
            (Some(backend), _) => (Some(backend), None),
            (None, true) => {
                let (backend, runtime) = Place::detect();
                (Some(backend), runtime)
            }
            (None, false) => (None, None),
        };
        #[cfg(not(feature = "tokio"))]
        let backend = parent_backend.or_else(|| with_deadline.then(Backend::detect));
        let started = now_on(backend);
        let deadline = match with_deadline {
            true => {
                let timeout_at = timeout.and_then(|timeout| started.checked_add(timeout));
                earliest(deadline, timeout_at)
            }
            false => None,
        };
        self.policy = policy;
        // A `tracing` span names the scope by its id from the start.
        #[cfg(feature = "tracing")]
        let id = next_operation_id();
        #[cfg(feature = "tracing")]
        let span = start_span(id, name.as_deref());
        LazyRun {
            scope: LazyScope {
                backend,
                started,
                deadline,
                name: Named::Name(name),
                #[cfg(feature = "tracing")]
                id,
                made: None,
                source,
                source_waiter: match woken_by_parent {
                    true => WOKEN_BY_PARENT,
                    false => NO_WAITER,
                },
                source_link: None,
                parent: parent.map(NestedIn::of),
            },
            #[cfg(feature = "tokio")]
            start_runtime,
            deadline_entry: None,
            #[cfg(feature = "tracing")]
            span,
        }
    }

    // Inlined into `start`: the configuration is not moved once more.
    #[inline(always)]
    fn start_armed(&mut self, mut config: Config, parent: Option<Parent>) {
        // A scope started inside another runs on its thread, inside its
        // poll: under the same executor, which the parent has detected.
        // Without a parent, the backend and (for a deadline) the tokio
        // runtime of its shard are found in one look-up, valid for the
        // first poll.
        #[cfg(feature = "tokio")]
        let (backend, start_runtime) = match parent
            .as_ref()
            .and_then(|parent| Clock::from_number(parent.scope.clock.load(Ordering::Acquire)))
        {
            Some(clock) => (Backend::of_clock(clock), None),
            None if config.timeout.is_some() || config.deadline.is_some() => Place::detect(),
            None => (Backend::detect(), None),
        };
        #[cfg(not(feature = "tokio"))]
        let backend = parent
            .as_ref()
            .and_then(|parent| Clock::from_number(parent.scope.clock.load(Ordering::Acquire)))
            .map_or_else(Backend::detect, Backend::of_clock);
        let started = backend.now();
        let timeout_at = config
            .timeout
            .and_then(|timeout| started.checked_add(timeout));
        let shared = self
            .shared
            .as_mut()
            .expect("an armed scope has shared state");
        let handle_set_deadline = shared.deadline_generation.load(Ordering::Acquire) > 0;
        let deadline = with_data(shared, |data| {
            data.started = Some(started);
            data.name = config.name.take();
            // Context extras only for what needs them (a registration
            // alone does not).
            if let Some(extras) = config.extras.as_deref_mut().filter(|extras| {
                !extras.metadata.as_slice().is_empty()
                    || !extras.on_progress.is_empty()
                    || extras.grace.is_some()
                    || extras.grace_held
            }) {
                let extra = data.extra.get_or_insert_with(Default::default);
                extra.metadata = std::mem::take(&mut extras.metadata);
                extra.progress_callbacks = std::mem::take(&mut extras.on_progress);
                extra.grace = extras.grace.map(|period| (period, None));
                extra.grace_held = extras.grace_held;
            }
            // A deadline set through a handle before the start was set
            // after the builder's: the last one set wins.
            if !handle_set_deadline {
                data.deadline = earliest(config.deadline, timeout_at);
            }
            data.deadline
        });
        let shared = lent_back(&self.shared);
        shared
            .clock
            .store(backend.clock().number(), Ordering::Release);
        self.grace = config
            .extras
            .as_ref()
            .is_some_and(|extras| extras.grace.is_some() && !extras.grace_held);
        self.policy = config.grace_policy;
        let parent_link = parent
            .as_ref()
            .filter(|p| !p.shielded)
            .and_then(|p| p.scope.token.attach(&shared.token, Link::Parent));
        let nested_in = parent.as_ref().map(|p| NestedIn::new(&p.scope));
        if let Some(parent) = parent {
            let shared = self
                .shared
                .as_mut()
                .expect("an armed scope has shared state");
            match Arc::get_mut(shared) {
                // Nobody else holds the state yet: set without the
                // once-cell's synchronisation.
                Some(state) => state.parent = OnceLock::from(parent),
                None => {
                    let _ = shared.parent.set(parent);
                }
            }
        }
        let shared = lent_back(&self.shared);
        shared.set_status(OperationStatus::Running);
        // --- registry hook: join the live set if `register()` asked ---
        #[cfg(feature = "registry")]
        if let Some(hook) = config
            .extras
            .as_deref_mut()
            .and_then(|extras| extras.registration.as_mut())
        {
            hook.start(shared, backend.clock(), started);
        }
        #[cfg(feature = "tracing")]
        let span = start_span(shared.id(), lock(&shared.data).name.as_deref());
        // The first source, when a plain token, is kept inline.
        let mut token_link = config
            .first_token
            .and_then(|token| token.attach(&shared.token, Link::Transparent));
        let mut sources = None;
        // Most scopes have no source besides their deadline: the loop
        // (and its iterator) only for those that do.
        if !config.sources.is_empty() {
            for source in config.sources {
                // A later plain token source is kept inline if the first
                // one was not.
                let source = match source.into_token() {
                    Ok(token) if token_link.is_none() => {
                        token_link = token.attach(&shared.token, Link::Transparent);
                        continue;
                    }
                    Ok(token) => Source::token(&token),
                    Err(source) => source,
                };
                let sources = sources.get_or_insert_with(Box::<ArmedSources>::default);
                if let Err(error) = sources.arm(source, Sink::Token(shared.token.clone()), started)
                {
                    shared
                        .token
                        .cancel_cause(Cause::new(CancelReason::Error(error)));
                    break;
                }
            }
        }
        let initial_generation = shared.deadline_generation.load(Ordering::Acquire);
        // --- context completion: `on_start` callbacks ---
        if let Some(extras) = config.extras.as_deref_mut() {
            if !extras.on_start.is_empty() {
                let context = shared.context();
                let callbacks = std::mem::take(&mut extras.on_start);
                run_callbacks("an on_start callback", callbacks, &context);
            }
        }
        self.stage = Stage::Running(Armed {
            #[cfg(feature = "tokio")]
            start_runtime,
            extras: config.extras,
            _token_link: token_link,
            backend,
            _parent_link: parent_link,
            _nested_in: nested_in,
            deadline: None,
            deadline_generation: u64::MAX,
            initial_generation,
            initial_deadline: deadline,
            initial_passed: deadline.is_some_and(|deadline| deadline <= started),
            sources,
            grace_timer: None,
            #[cfg(feature = "tracing")]
            span,
        });
    }
}

/// The `tracing` span of the scope `id` named `name`, with its "scope
/// started" event.
#[cfg(feature = "tracing")]
fn start_span(id: u64, name: Option<&str>) -> tracing::Span {
    let span = tracing::debug_span!("cancel_scope", id, name);
    tracing::debug!(parent: &span, "scope started");
    span
}

/// The earlier of two optional deadlines (matched, not iterated: on every
/// scope start).
#[inline(always)]
fn earliest(one: Option<Instant>, other: Option<Instant>) -> Option<Instant> {
    match (one, other) {
        (Some(one), Some(other)) => Some(one.min(other)),
        (one, other) => one.or(other),
    }
}
