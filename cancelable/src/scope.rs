//! `CancelScope`: run a future under a set of cancellation sources.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use crate::backend::{Backend, Clock, Registration, Shard};
use crate::context::{ContextData, OperationContext, OperationStatus, Progress, ProgressCallback};
use crate::current;
use crate::source::{ArmedSources, Predicate, Sink, Source};
use crate::sync::{lock, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::token::{Cause, ChildLink};
use crate::{CancelReason, CancellationToken, Cancelled, Signal};

static NEXT_OPERATION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many ids a thread takes from the global counter at a time, so that
/// threads cancelling many scopes at once do not fight over one counter.
const ID_BLOCK: u64 = 1024;

/// A process-unique operation id.
fn next_operation_id() -> u64 {
    thread_local! {
        static IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    let from_block = IDS.try_with(|ids| {
        let (next, end) = ids.get();
        if next < end {
            ids.set((next + 1, end));
            next
        } else {
            let start = NEXT_OPERATION_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            ids.set((start + 1, start + ID_BLOCK));
            start
        }
    });
    from_block.unwrap_or_else(|_| NEXT_OPERATION_ID.fetch_add(1, Ordering::Relaxed))
}

type CancelCallback = Box<dyn FnOnce(&Cancelled) + Send>;
type ContextCallback = Box<dyn FnOnce(&OperationContext) + Send>;

/// A scope of cancellation (the origin's `Cancellable`): build it from
/// sources and options, then run a future inside it.
///
/// * Sources combine as "any of": the first that fires cancels the scope.
///   Use [`Source::all_of`] for "all of".
/// * The body is polled first, then the sources, exactly like
///   `tokio::time::timeout`: a body that is ready at its first poll returns
///   `Ok` even under a passed deadline.
/// * Scopes nest: inside the body, the scope is the *current scope*.
///   A scope started inside another is cancelled with it (reason
///   [`CancelReason::Parent`]), and [`checkpoint`](crate::checkpoint) and
///   `cancel_point!()` see the cancellation and the earliest deadline of
///   the whole chain — up to the nearest [`shield`](crate::shield): a scope
///   started inside a shield has the scope around it as its parent (for
///   its context) but is not cancelled with it.
/// * The same code runs on tokio, async-std, smol or any executor: the
///   backend is detected when the scope starts. On tokio the runtime needs
///   its time driver (`enable_time()` or `enable_all()`) for timeouts.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, CancelReason};
///
/// # futures::executor::block_on(async {
/// let outcome = CancelScope::new()
///     .name("slow")
///     .timeout(Duration::from_millis(10))
///     .run(std::future::pending::<()>())
///     .await;
/// let cancelled = outcome.unwrap_err();
/// assert_eq!(cancelled.reason(), &CancelReason::Timeout);
/// assert_eq!(cancelled.operation_name(), Some("slow"));
/// # });
/// ```
#[must_use = "a scope does nothing until `run` or `try_run` is awaited"]
pub struct CancelScope {
    shared: Arc<ScopeShared>,
    config: Config,
}

#[derive(Default)]
struct Config {
    name: Option<Cow<'static, str>>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    sources: Vec<Source>,
    /// Boxed: most scopes have none of it, and the builder and the scope
    /// future move `Config` around by value.
    extras: Option<Box<Extras>>,
}

#[derive(Default)]
struct Extras {
    metadata: BTreeMap<String, String>,
    on_progress: Vec<ProgressCallback>,
    on_cancel: Vec<CancelCallback>,
    on_complete: Vec<ContextCallback>,
    on_error: Vec<ContextCallback>,
    // --- registry hook: what `register()` / `key(..)` asked for, then,
    // once started, the scope's place in the registry; dropping it (the
    // scope finished, or its future was dropped mid-run) leaves the live
    // set. Registered scopes always have extras: the future stays as small
    // as an unregistered one's ---
    #[cfg(feature = "registry")]
    register: Option<crate::registry::Request>,
    #[cfg(feature = "registry")]
    registry_entry: Option<crate::registry::Entry>,
    // --- context completion: `on_start` callbacks ---
    on_start: Vec<ContextCallback>,
}

impl Config {
    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }
}

/// State shared by a running scope, its handles and the code inside it.
pub(crate) struct ScopeShared {
    pub(crate) token: CancellationToken,
    /// 0 until someone asks: most scopes never need an id.
    id: AtomicU64,
    status: AtomicU8,
    /// A checkpoint inside the body returned the cancellation.
    observed: AtomicBool,
    /// Shielded futures running inside this scope.
    pub(crate) shields: AtomicUsize,
    /// Scopes running inside this one's body right now.
    nested: AtomicUsize,
    deadline_generation: AtomicU64,
    /// Set when the scope starts inside another.
    parent: OnceLock<Parent>,
    /// `Clock` as a number, 0 until the scope starts.
    clock: AtomicU8,
    /// Name, deadline, timestamps, progress and metadata: locked when the
    /// scope starts and finishes, and when somebody reads them.
    pub(crate) data: Mutex<ContextData>,
    // --- registry hook: checkpoints that returned the cancellation ---
    #[cfg(feature = "registry")]
    pub(crate) checkpoints_after_cancel: std::sync::atomic::AtomicU32,
}

/// The scope a scope started inside.
pub(crate) struct Parent {
    pub(crate) scope: Arc<ScopeShared>,
    /// The scope started inside a shield: it has its parent for its context
    /// (parent id) only, neither its cancellation nor its deadlines.
    pub(crate) shielded: bool,
}

impl ScopeShared {
    fn new() -> Self {
        ScopeShared {
            token: CancellationToken::new(),
            id: AtomicU64::new(0),
            status: AtomicU8::new(OperationStatus::Pending as u8),
            observed: AtomicBool::new(false),
            shields: AtomicUsize::new(0),
            nested: AtomicUsize::new(0),
            deadline_generation: AtomicU64::new(0),
            parent: OnceLock::new(),
            clock: AtomicU8::new(0),
            data: Mutex::new(ContextData::default()),
            #[cfg(feature = "registry")]
            checkpoints_after_cancel: std::sync::atomic::AtomicU32::new(0),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        match self.id.load(Ordering::Acquire) {
            0 => {
                let fresh = next_operation_id();
                match self
                    .id
                    .compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => fresh,
                    Err(assigned) => assigned,
                }
            }
            assigned => assigned,
        }
    }

    /// The scope this one started inside, if any, shield or not.
    pub(crate) fn parent(&self) -> Option<&Arc<ScopeShared>> {
        self.parent.get().map(|parent| &parent.scope)
    }

    /// The scope whose cancellation and deadlines reach this one: its
    /// parent, unless the scope started inside a shield.
    pub(crate) fn outer(&self) -> Option<&Arc<ScopeShared>> {
        self.parent
            .get()
            .filter(|parent| !parent.shielded)
            .map(|parent| &parent.scope)
    }

    /// This scope and the scopes whose cancellation and deadlines reach it,
    /// outwards up to the nearest shield.
    fn unshielded_chain(&self) -> impl Iterator<Item = &ScopeShared> {
        std::iter::successors(Some(self), |scope| scope.outer().map(Arc::as_ref))
    }

    pub(crate) fn status(&self) -> OperationStatus {
        match self.status.load(Ordering::Acquire) {
            0 => OperationStatus::Pending,
            1 => OperationStatus::Running,
            2 => OperationStatus::Completed,
            3 => OperationStatus::Cancelled,
            _ => OperationStatus::Failed,
        }
    }

    pub(crate) fn set_status(&self, status: OperationStatus) {
        self.status.store(status as u8, Ordering::Release);
    }

    /// The clock of the backend the scope runs on (detected now if it has
    /// not started).
    fn clock(&self) -> Clock {
        Clock::from_number(self.clock.load(Ordering::Acquire)).unwrap_or_else(Clock::detect)
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        lock(&self.data).deadline
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        lock(&self.data).deadline = deadline;
        self.deadline_generation.fetch_add(1, Ordering::AcqRel);
        self.token.wake_owner();
    }

    /// The shared timer found this scope's registered deadline passed:
    /// cancel the scope if the clock says so, unless the deadline moved
    /// meanwhile, in which case the scope registers the new one when it is
    /// polled.
    pub(crate) fn deadline_reached(&self) {
        let reached = self
            .deadline()
            .is_some_and(|deadline| self.clock().now() >= deadline);
        if reached {
            self.token.cancel_cause(Cause {
                reason: CancelReason::Timeout,
                message: None,
            });
        } else {
            // Its entry left the shard: make the scope register again.
            self.deadline_generation.fetch_add(1, Ordering::AcqRel);
            self.token.wake_owner();
        }
    }

    /// Cancels every scope of the chain (up to the nearest shield) whose
    /// deadline has passed; `true` if this scope is cancelled afterwards.
    pub(crate) fn enforce_deadlines(&self) -> bool {
        let mut now = None;
        for current in self.unshielded_chain() {
            if let Some(deadline) = current.deadline() {
                let now = *now.get_or_insert_with(|| current.clock().now());
                if now >= deadline {
                    current.token.cancel_cause(Cause {
                        reason: CancelReason::Timeout,
                        message: None,
                    });
                }
            }
        }
        self.token.is_cancelled()
    }

    /// The error describing this scope's cancellation, as a checkpoint
    /// inside it saw it: marks the cancellation as observed.
    pub(crate) fn observe_cancellation(&self) -> Cancelled {
        self.observed.store(true, Ordering::Release);
        // --- registry hook: count checkpoints since the cancel ---
        #[cfg(feature = "registry")]
        self.checkpoints_after_cancel
            .fetch_add(1, Ordering::Relaxed);
        self.cancelled_error()
    }

    fn cancelled_error(&self) -> Cancelled {
        let cause = self.token.recorded_cause().unwrap_or(Cause {
            reason: CancelReason::Manual,
            message: None,
        });
        let (name, started) = {
            let data = lock(&self.data);
            (data.name.clone(), data.started)
        };
        let elapsed = started.map(|started| self.clock().now().saturating_duration_since(started));
        Cancelled::new(cause.reason)
            .with_message(cause.message)
            .with_operation(name, self.id(), elapsed)
    }

    pub(crate) fn report_progress(&self, progress: Progress) {
        let callbacks = {
            let mut data = lock(&self.data);
            let extra = data.extra.get_or_insert_with(Default::default);
            extra.progress = Some(progress.clone());
            extra.progress_callbacks.clone()
        };
        for callback in callbacks {
            // A panicking progress handler must not unwind into the body
            // that reported progress.
            let _ = catch_unwind(AssertUnwindSafe(|| callback(&progress)));
        }
    }

    fn context(&self) -> OperationContext {
        let now = self.clock().now();
        let status = self.status();
        let reason = self.token.recorded_cause().map(|cause| cause.reason);
        let parent_id = self.parent().map(|parent| parent.id());
        lock(&self.data).snapshot(self.id(), parent_id, status, reason, now)
    }
}

impl CancelScope {
    /// A scope with no sources: it is cancelled only through its handle,
    /// its token, or an enclosing scope.
    pub fn new() -> Self {
        CancelScope {
            shared: Arc::new(ScopeShared::new()),
            config: Config::default(),
        }
    }

    /// Names the operation, for errors, logs and [`OperationContext`].
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Attaches a key/value pair to the operation's context.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .extras()
            .metadata
            .insert(key.into(), value.into());
        self
    }

    /// Cancels the scope `duration` after it starts (reason
    /// [`CancelReason::Timeout`]). With several timeouts and deadlines the
    /// earliest wins. A zero duration cancels a body that pends at once.
    pub fn timeout(mut self, duration: Duration) -> Self {
        self.config.timeout = Some(match self.config.timeout {
            Some(earlier) => earlier.min(duration),
            None => duration,
        });
        self
    }

    /// Cancels the scope at `deadline` (reason [`CancelReason::Timeout`]).
    /// A deadline in the past cancels a body that pends at once. The
    /// deadline can be moved while the scope runs, through
    /// [`ScopeHandle::set_deadline`].
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.config.deadline = Some(match self.config.deadline {
            Some(earlier) => earlier.min(deadline),
            None => deadline,
        });
        self
    }

    /// Cancels the scope when the process receives `signal` (reason
    /// [`CancelReason::Signal`]). Listening scopes share one OS
    /// registration; once no scope listens, the signal behaves as before.
    /// If the handler cannot be installed, the scope ends with
    /// [`CancelReason::Error`] carrying the OS error.
    pub fn on_signal(self, signal: Signal) -> Self {
        self.source(Source::signal(signal))
    }

    /// Cancels the scope when `token` is cancelled, with the token's reason.
    pub fn token(self, token: &CancellationToken) -> Self {
        self.source(Source::token(token))
    }

    /// Cancels the scope when a `tokio_util` token is cancelled.
    #[cfg(feature = "tokio-util")]
    pub fn tokio_util_token(self, token: &tokio_util::sync::CancellationToken) -> Self {
        self.source(Source::tokio_util_token(token))
    }

    /// Cancels the scope when `predicate` returns `true` (reason
    /// [`CancelReason::Condition`]); see [`Source::condition`].
    pub fn condition<P, M>(self, predicate: P, check_every: Duration) -> Self
    where
        P: Predicate<M>,
    {
        self.source(Source::condition(predicate, check_every))
    }

    /// Adds a source; the first source to fire cancels the scope.
    pub fn source(mut self, source: Source) -> Self {
        self.config.sources.push(source);
        self
    }

    /// Adds a source that fires when the first of `sources` fires.
    pub fn any_of(self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.source(Source::any_of(sources))
    }

    /// Adds a source that fires once all of `sources` have fired.
    pub fn all_of(self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.source(Source::all_of(sources))
    }

    /// Runs `callback` when the scope ends cancelled. A panicking callback
    /// is contained: the scope's result is still returned.
    pub fn on_cancel(mut self, callback: impl FnOnce(&Cancelled) + Send + 'static) -> Self {
        self.config.extras().on_cancel.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the body completes without being cancelled
    /// (with a value, or an `Ok` for [`try_run`](Self::try_run)).
    pub fn on_complete(
        mut self,
        callback: impl FnOnce(&OperationContext) + Send + 'static,
    ) -> Self {
        self.config.extras().on_complete.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the body of [`try_run`](Self::try_run) returns
    /// an `Err` of its own (status [`OperationStatus::Failed`]).
    pub fn on_error(mut self, callback: impl FnOnce(&OperationContext) + Send + 'static) -> Self {
        self.config.extras().on_error.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the scope starts (its first poll), with the
    /// operation's context (status [`OperationStatus::Running`]). A
    /// panicking callback is contained.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cancelable::{CancelScope, OperationStatus};
    ///
    /// # futures::executor::block_on(async {
    /// let seen = Arc::new(Mutex::new(None));
    /// let record = seen.clone();
    /// CancelScope::new()
    ///     .name("load")
    ///     .on_start(move |context| *record.lock().unwrap() = Some(context.status))
    ///     .run(async {})
    ///     .await
    ///     .unwrap();
    /// assert_eq!(*seen.lock().unwrap(), Some(OperationStatus::Running));
    /// # });
    /// ```
    pub fn on_start(mut self, callback: impl FnOnce(&OperationContext) + Send + 'static) -> Self {
        self.config.extras().on_start.push(Box::new(callback));
        self
    }

    /// Registry hook: the scope's state and the registration that
    /// `register()` and `key(..)` fill in (see `registry/mod.rs`).
    #[cfg(feature = "registry")]
    pub(crate) fn registration(
        &mut self,
    ) -> (
        &Arc<ScopeShared>,
        Option<&Cow<'static, str>>,
        &mut Option<crate::registry::Request>,
    ) {
        let extras = self.config.extras.get_or_insert_with(Default::default);
        (
            &self.shared,
            self.config.name.as_ref(),
            &mut extras.register,
        )
    }

    /// Runs `callback` on every [`report_progress`](crate::report_progress)
    /// made inside the scope, on the reporting thread.
    pub fn on_progress(mut self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.config.extras().on_progress.push(Arc::new(callback));
        self
    }

    /// A handle to the scope: cancel it, move its deadline, read its status,
    /// from anywhere, before, during or after the run.
    pub fn handle(&self) -> ScopeHandle {
        ScopeHandle {
            shared: self.shared.clone(),
        }
    }

    /// The scope's own token: cancelling it cancels the scope (reason
    /// [`CancelReason::Manual`] unless given). Hand it to spawned tasks to
    /// link them to the scope.
    pub fn cancel_token(&self) -> CancellationToken {
        self.shared.token.clone()
    }

    /// Runs `body` in the scope: `Ok(output)` if it finishes, `Err(Cancelled)`
    /// if a source fires first. On cancellation the body is dropped.
    pub fn run<F: Future>(self, body: F) -> Run<F> {
        Run {
            body,
            driver: Driver::new(self),
        }
    }

    /// Runs a fallible `body` in the scope: its own result, or
    /// `Err(E::from(cancelled))` if a source fires first.
    ///
    /// If the body returns an `Err` after a checkpoint observed the
    /// cancellation, the operation counts as cancelled, not failed.
    pub fn try_run<F, T, E>(self, body: F) -> TryRun<F>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Cancelled>,
    {
        TryRun::new(self, body)
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelScope")
            .field("id", &self.shared.id())
            .field("timeout", &self.config.timeout)
            .field("sources", &self.config.sources)
            .finish_non_exhaustive()
    }
}

/// A handle to a scope, to control and observe it from outside.
#[derive(Clone)]
pub struct ScopeHandle {
    pub(crate) shared: Arc<ScopeShared>,
}

impl ScopeHandle {
    /// Cancels the scope (reason [`CancelReason::Manual`]). Returns `true`
    /// if this call cancelled it.
    pub fn cancel(&self) -> bool {
        self.shared.token.cancel()
    }

    /// Cancels the scope with `reason` and a message.
    pub fn cancel_with(&self, reason: CancelReason, message: impl Into<String>) -> bool {
        self.shared.token.cancel_with(reason, message)
    }

    /// `true` once the scope is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// The scope's token (cancelling it cancels the scope).
    pub fn token(&self) -> CancellationToken {
        self.shared.token.clone()
    }

    /// The operation's id, unique within the process.
    pub fn id(&self) -> u64 {
        self.shared.id()
    }

    /// Where the operation is in its life.
    pub fn status(&self) -> OperationStatus {
        self.shared.status()
    }

    /// A snapshot of the operation's context.
    pub fn context(&self) -> OperationContext {
        self.shared.context()
    }

    /// The scope's own deadline (set by `timeout`, `deadline` or
    /// [`set_deadline`](Self::set_deadline)). A timeout only becomes a
    /// deadline when the scope starts.
    pub fn deadline(&self) -> Option<Instant> {
        self.shared.deadline()
    }

    /// The earliest deadline of this scope and the scopes around it, up
    /// to the nearest [`shield`](crate::shield): deadlines outside a shield
    /// do not reach a scope started inside it.
    pub fn effective_deadline(&self) -> Option<Instant> {
        self.shared
            .unshielded_chain()
            .filter_map(ScopeShared::deadline)
            .min()
    }

    /// Moves the scope's deadline, earlier or later (`None` removes it).
    /// A running scope re-arms its timer; a deadline that has passed
    /// cancels a pending body at once. Set before the scope starts, it
    /// replaces the builder's `timeout` and `deadline`: the last one set
    /// wins.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.shared.set_deadline(deadline);
    }
}

impl fmt::Debug for ScopeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeHandle")
            .field("id", &self.id())
            .field("status", &self.status())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// What a running scope holds: created at its first poll.
struct Armed {
    /// Callbacks, run when the scope finishes.
    extras: Option<Box<Extras>>,
    /// The first token source, linked to the scope's token.
    _token_link: Option<ChildLink>,
    backend: Backend,
    _parent_link: Option<ChildLink>,
    _nested_in: Option<NestedIn>,
    /// The scope's deadline in its thread's shared timer.
    deadline: Option<Registration>,
    deadline_generation: u64,
    /// The deadline computed at the start, with the generation it had:
    /// spares a lock at the first pend.
    initial_deadline: (u64, Option<Instant>),
    /// Boxed, and only when the scope has sources besides its deadline.
    sources: Option<Box<ArmedSources>>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// Counts a running scope in its parent's `nested` while it lives.
struct NestedIn(Arc<ScopeShared>);

impl NestedIn {
    fn new(parent: &Arc<ScopeShared>) -> Self {
        parent.nested.fetch_add(1, Ordering::AcqRel);
        NestedIn(parent.clone())
    }
}

impl Drop for NestedIn {
    fn drop(&mut self) {
        self.0.nested.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The engine shared by [`Run`] and [`TryRun`].
struct Driver {
    /// `None` only while the body is polled: the scope then sits in the
    /// thread-local current-scope slot.
    shared: Option<Arc<ScopeShared>>,
    stage: Stage,
    /// The scope was seen cancelled while a shield inside its body ran: it
    /// ends with its reason whatever the body does afterwards.
    held_by_shield: bool,
}

/// Where the scope future is; an enum so that the configuration and the
/// running state share their room in the future.
enum Stage {
    Configured(Config),
    Running(Armed),
    Finished,
}

impl Driver {
    fn new(scope: CancelScope) -> Self {
        Driver {
            shared: Some(scope.shared),
            stage: Stage::Configured(scope.config),
            held_by_shield: false,
        }
    }

    fn shared(&self) -> &Arc<ScopeShared> {
        lent_back(&self.shared)
    }

    fn start(&mut self, mut config: Config) {
        let parent = current::current_parent();
        let backend = Backend::detect();
        let started = backend.now();
        let timeout_at = config
            .timeout
            .and_then(|timeout| started.checked_add(timeout));
        let shared = self
            .shared
            .as_mut()
            .expect("the scope is only lent out while its body is polled");
        let handle_set_deadline = shared.deadline_generation.load(Ordering::Acquire) > 0;
        let deadline = with_data(shared, |data| {
            data.started = Some(started);
            data.name = config.name.take();
            if let Some(extras) = &mut config.extras {
                let extra = data.extra.get_or_insert_with(Default::default);
                extra.metadata = std::mem::take(&mut extras.metadata);
                extra.progress_callbacks = std::mem::take(&mut extras.on_progress);
            }
            // A deadline set through a handle before the start was set
            // after the builder's: the last one set wins.
            if !handle_set_deadline {
                data.deadline = config.deadline.into_iter().chain(timeout_at).min();
            }
            data.deadline
        });
        let shared = lent_back(&self.shared);
        shared
            .clock
            .store(backend.clock().number(), Ordering::Release);
        let parent_link = parent
            .as_ref()
            .filter(|p| !p.shielded)
            .and_then(|p| p.scope.token.attach(&shared.token, false));
        let nested_in = parent.as_ref().map(|p| NestedIn::new(&p.scope));
        if let Some(parent) = parent {
            let _ = shared.parent.set(parent);
        }
        shared.set_status(OperationStatus::Running);
        // --- registry hook: join the live set if `register()` asked ---
        #[cfg(feature = "registry")]
        if let Some(extras) = config.extras.as_deref_mut() {
            let request = extras.register.take();
            extras.registry_entry =
                crate::registry::Entry::join(shared, request, backend.clock(), started);
        }
        #[cfg(feature = "tracing")]
        let span = {
            let name = lock(&shared.data).name.clone();
            let span =
                tracing::debug_span!("cancel_scope", id = shared.id(), name = name.as_deref());
            tracing::debug!(parent: &span, "scope started");
            span
        };
        let mut token_link = None;
        let mut sources = None;
        for source in config.sources {
            // The first plain token source, the common case, is kept inline.
            let source = match source.into_token() {
                Ok(token) if token_link.is_none() => {
                    token_link = token.attach(&shared.token, true);
                    continue;
                }
                Ok(token) => Source::token(&token),
                Err(source) => source,
            };
            let sources = sources.get_or_insert_with(Box::<ArmedSources>::default);
            if let Err(error) = sources.arm(source, Sink::Token(shared.token.clone()), started) {
                shared.token.cancel_cause(Cause {
                    reason: CancelReason::Error(error),
                    message: None,
                });
                break;
            }
        }
        let initial_deadline = (shared.deadline_generation.load(Ordering::Acquire), deadline);
        // --- context completion: `on_start` callbacks ---
        if let Some(extras) = config.extras.as_deref_mut() {
            if !extras.on_start.is_empty() {
                let context = shared.context();
                for callback in std::mem::take(&mut extras.on_start) {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&context)));
                }
            }
        }
        self.stage = Stage::Running(Armed {
            extras: config.extras,
            _token_link: token_link,
            backend,
            _parent_link: parent_link,
            _nested_in: nested_in,
            deadline: None,
            deadline_generation: u64::MAX,
            initial_deadline,
            sources,
            #[cfg(feature = "tracing")]
            span,
        });
    }

    fn poll<F: Future>(
        &mut self,
        mut body: Pin<&mut F>,
        cx: &mut Context<'_>,
        is_failure: fn(&F::Output) -> bool,
        describe: Option<fn(&F::Output) -> String>,
    ) -> Poll<Result<F::Output, Cancelled>> {
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Configured(config) => self.start(config),
            Stage::Finished => panic!("a cancel scope future was polled after it completed"),
            running => self.stage = running,
        }
        #[cfg(feature = "tracing")]
        let _entered = match &self.stage {
            Stage::Running(armed) => armed.span.clone().entered(),
            _ => unreachable!("started above"),
        };
        let cancelled_before = self.shared().token.is_cancelled();
        if cancelled_before && self.shared().shields.load(Ordering::Acquire) > 0 {
            // Cancelled while a shield runs: only the shield keeps the body
            // going from here on.
            self.held_by_shield = true;
        }
        if let Poll::Ready(output) = current::enter(&mut self.shared, || body.as_mut().poll(cx)) {
            return Poll::Ready(self.complete(output, is_failure, describe));
        }

        let shared = lent_back(&self.shared);
        let Stage::Running(armed) = &mut self.stage else {
            unreachable!("started above")
        };
        shared.token.register_owner(cx.waker());
        if !shared.token.is_cancelled() {
            armed.poll_sources(shared, cx);
        }
        if !shared.token.is_cancelled() {
            return Poll::Pending;
        }
        if shared.shields.load(Ordering::Acquire) > 0 {
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
            if let Poll::Ready(output) = current::enter(&mut self.shared, || body.poll(cx)) {
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
        if self.held_by_shield {
            drop(output);
            let cancelled = self.shared().cancelled_error();
            self.finish(OperationStatus::Cancelled, Some(&cancelled));
            return Err(cancelled);
        }
        let shared = self.shared();
        let status = if !is_failure(&output) {
            OperationStatus::Completed
        } else if shared.observed.load(Ordering::Acquire) || shared.token.recorded_cause().is_some()
        {
            // An error after the scope was cancelled — even while the cancel
            // is still reaching the scopes inside it — is the cancellation's
            // doing.
            OperationStatus::Cancelled
        } else {
            OperationStatus::Failed
        };
        // --- context completion: the failed body's error text ---
        if let (OperationStatus::Failed, Some(describe)) = (status, describe) {
            lock(&shared.data)
                .extra
                .get_or_insert_with(Default::default)
                .error = Some(describe(&output));
        }
        let cancelled = (status == OperationStatus::Cancelled).then(|| shared.cancelled_error());
        self.finish(status, cancelled.as_ref());
        Ok(output)
    }

    /// Records the outcome, releases every source and runs the callbacks.
    fn finish(&mut self, status: OperationStatus, cancelled: Option<&Cancelled>) {
        let Stage::Running(mut armed) = std::mem::replace(&mut self.stage, Stage::Finished) else {
            unreachable!("only a running scope finishes")
        };
        let shared = lent_back(&self.shared);
        #[cfg_attr(not(feature = "registry"), allow(unused_mut))]
        let mut extras = armed
            .extras
            .take()
            .map(|extras| *extras)
            .unwrap_or_default();
        // The end time can only be read through a handle or a callback:
        // spare the clock read when there is neither.
        let observed = Arc::strong_count(shared) > 1
            || !extras.on_complete.is_empty()
            || !extras.on_error.is_empty();
        if observed {
            lock(&shared.data).ended = Some(armed.backend.clock().now());
        }
        shared.set_status(status);
        #[cfg(feature = "tracing")]
        match cancelled {
            Some(cancelled) => {
                tracing::info!(parent: &armed.span, reason = %cancelled.reason(), "scope cancelled")
            }
            None => tracing::debug!(parent: &armed.span, %status, "scope finished"),
        }
        // Unregister timers, signal listeners and token callbacks, and
        // detach from the parent, before user callbacks run.
        drop(armed);
        // --- registry hook: leave the live set before user callbacks run ---
        #[cfg(feature = "registry")]
        drop(extras.registry_entry.take());
        match status {
            OperationStatus::Cancelled => {
                let cancelled = cancelled
                    .cloned()
                    .unwrap_or_else(|| shared.cancelled_error());
                for callback in extras.on_cancel {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&cancelled)));
                }
            }
            OperationStatus::Completed if !extras.on_complete.is_empty() => {
                let context = shared.context();
                for callback in extras.on_complete {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&context)));
                }
            }
            OperationStatus::Failed if !extras.on_error.is_empty() => {
                let context = shared.context();
                for callback in extras.on_error {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&context)));
                }
            }
            _ => {}
        }
    }
}

impl Armed {
    /// Registers the scope's deadline with the shared timer on the first
    /// pend (and again when the deadline moved), then polls the sources
    /// that need polling.
    fn poll_sources(&mut self, shared: &Arc<ScopeShared>, cx: &mut Context<'_>) {
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
            let deadline = match self.initial_deadline {
                (initial, deadline) if initial == generation => deadline,
                _ => shared.deadline(),
            };
            if let Some(deadline) = deadline {
                let shard = Shard::current(self.backend);
                self.deadline = Some(shard.register(deadline, Arc::downgrade(shared)));
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

/// The scope's state, which the driver holds except while the body is
/// polled (then it sits in the current-scope slot).
fn lent_back(shared: &Option<Arc<ScopeShared>>) -> &Arc<ScopeShared> {
    shared
        .as_ref()
        .expect("the scope is only lent out while its body is polled")
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
        // Dropped mid-run from outside: the operation did not complete.
        if matches!(self.stage, Stage::Running(_)) {
            if let Some(shared) = &self.shared {
                if shared.status() == OperationStatus::Running {
                    shared.set_status(OperationStatus::Cancelled);
                }
            }
        }
    }
}

pin_project! {
    /// The future returned by [`CancelScope::run`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Run<F> {
        #[pin]
        body: F,
        driver: Driver,
    }
}

impl<F: Future> Future for Run<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.driver.poll(this.body, cx, |_| false, None)
    }
}

impl<F> fmt::Debug for Run<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future returned by [`CancelScope::try_run`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct TryRun<F>
    where
        F: Future,
    {
        #[pin]
        body: F,
        driver: Driver,
        // How to turn a cancellation into the body's output, and whether an
        // output is a failure: stored so that the `Future` impl needs no
        // bound of its own (a bound there would report a wrong return type
        // of `#[cancellable]` twice).
        from_cancelled: fn(Cancelled) -> F::Output,
        is_err: fn(&F::Output) -> bool,
        // The text of an error, when `keep_error_text` asked for it.
        describe: Option<fn(&F::Output) -> String>,
    }
}

impl<F: Future> TryRun<F>
where
    F::Output: crate::__private::CancellableResult,
{
    pub(crate) fn new(scope: CancelScope, body: F) -> Self {
        use crate::__private::CancellableResult;
        TryRun {
            body,
            driver: Driver::new(scope),
            from_cancelled: F::Output::from_cancelled,
            is_err: F::Output::is_err,
            describe: None,
        }
    }
}

impl<F, T, E> TryRun<F>
where
    F: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    /// Keeps the text (`Display`) of the body's own error in the
    /// operation's context when the body fails: `on_error` callbacks read
    /// it in [`OperationContext::error`], the registry's history in
    /// [`FinishedOperation::error`](crate::registry::FinishedOperation::error).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cancelable::{CancelScope, Cancelled};
    ///
    /// # futures::executor::block_on(async {
    /// let seen = Arc::new(Mutex::new(None));
    /// let record = seen.clone();
    /// let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> = CancelScope::new()
    ///     .on_error(move |context| *record.lock().unwrap() = context.error.clone())
    ///     .try_run(async { Err("disk full".into()) })
    ///     .keep_error_text()
    ///     .await;
    /// assert!(outcome.is_err());
    /// assert_eq!(seen.lock().unwrap().as_deref(), Some("disk full"));
    /// # });
    /// ```
    pub fn keep_error_text(mut self) -> Self {
        self.describe = Some(|output| match output {
            Err(error) => error.to_string(),
            Ok(_) => String::new(),
        });
        self
    }
}

impl<F: Future> Future for TryRun<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this
            .driver
            .poll(this.body, cx, *this.is_err, *this.describe)
        {
            Poll::Ready(Ok(output)) => Poll::Ready(output),
            Poll::Ready(Err(cancelled)) => Poll::Ready((this.from_cancelled)(cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: Future> fmt::Debug for TryRun<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryRun").finish_non_exhaustive()
    }
}
