//! `CancelScope`: run a future under a set of cancellation sources.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use crate::backend::{Backend, Timer};
use crate::context::{ContextData, OperationContext, OperationStatus, Progress};
use crate::current;
use crate::source::{ArmedSources, Predicate, Sink, Source};
use crate::sync::{lock, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::token::{Cause, ChildLink};
use crate::{CancelReason, CancellationToken, Cancelled, Signal};

static NEXT_OPERATION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

type CancelCallback = Box<dyn FnOnce(&Cancelled) + Send>;
type ContextCallback = Box<dyn FnOnce(&OperationContext) + Send>;
pub(crate) type ProgressCallback = Arc<dyn Fn(&Progress) + Send + Sync>;

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
///   the whole chain.
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
    timeout: Option<Duration>,
    sources: Vec<Source>,
    on_cancel: Vec<CancelCallback>,
    on_complete: Vec<ContextCallback>,
    on_error: Vec<ContextCallback>,
}

/// State shared by a running scope, its handles and the code inside it.
pub(crate) struct ScopeShared {
    pub(crate) token: CancellationToken,
    id: OnceLock<u64>,
    status: AtomicU8,
    /// A checkpoint inside the body returned the cancellation.
    observed: AtomicBool,
    /// Shielded futures running inside this scope.
    pub(crate) shields: AtomicUsize,
    /// Scopes running inside this one's body right now.
    nested: AtomicUsize,
    deadline: Mutex<Option<Instant>>,
    deadline_generation: AtomicU64,
    parent: OnceLock<Option<Arc<ScopeShared>>>,
    backend: OnceLock<Backend>,
    data: Mutex<ContextData>,
    progress_callbacks: Mutex<Vec<ProgressCallback>>,
}

impl ScopeShared {
    fn new() -> Self {
        ScopeShared {
            token: CancellationToken::new(),
            id: OnceLock::new(),
            status: AtomicU8::new(OperationStatus::Pending as u8),
            observed: AtomicBool::new(false),
            shields: AtomicUsize::new(0),
            nested: AtomicUsize::new(0),
            deadline: Mutex::new(None),
            deadline_generation: AtomicU64::new(0),
            parent: OnceLock::new(),
            backend: OnceLock::new(),
            data: Mutex::new(ContextData::default()),
            progress_callbacks: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        *self
            .id
            .get_or_init(|| NEXT_OPERATION_ID.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn parent(&self) -> Option<&Arc<ScopeShared>> {
        self.parent.get().and_then(Option::as_ref)
    }

    fn status(&self) -> OperationStatus {
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

    fn backend(&self) -> Backend {
        *self.backend.get_or_init(Backend::detect)
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        *lock(&self.deadline)
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        *lock(&self.deadline) = deadline;
        self.deadline_generation.fetch_add(1, Ordering::AcqRel);
        self.token.wake_owner();
    }

    /// Cancels every scope of the chain whose deadline has passed; `true`
    /// if this scope is cancelled afterwards.
    pub(crate) fn enforce_deadlines(&self) -> bool {
        let mut now = None;
        let mut scope = Some(self);
        while let Some(current) = scope {
            if let Some(deadline) = current.deadline() {
                let now = *now.get_or_insert_with(|| current.backend().now());
                if now >= deadline {
                    current.token.cancel_cause(Cause {
                        reason: CancelReason::Timeout,
                        message: None,
                    });
                }
            }
            scope = current.parent().map(Arc::as_ref);
        }
        self.token.is_cancelled()
    }

    /// The error describing this scope's cancellation, as a checkpoint
    /// inside it saw it: marks the cancellation as observed.
    pub(crate) fn observe_cancellation(&self) -> Cancelled {
        self.observed.store(true, Ordering::Release);
        self.cancelled_error()
    }

    fn cancelled_error(&self) -> Cancelled {
        let cause = self.token.cause().unwrap_or(Cause {
            reason: CancelReason::Manual,
            message: None,
        });
        let (name, started) = {
            let data = lock(&self.data);
            (data.name.clone(), data.started)
        };
        let elapsed =
            started.map(|started| self.backend().now().saturating_duration_since(started));
        Cancelled::new(cause.reason)
            .with_message(cause.message)
            .with_operation(name, self.id(), elapsed)
    }

    pub(crate) fn report_progress(&self, progress: Progress) {
        lock(&self.data).progress = Some(progress.clone());
        let callbacks = lock(&self.progress_callbacks).clone();
        for callback in callbacks {
            // A panicking progress handler must not unwind into the body
            // that reported progress.
            let _ = catch_unwind(AssertUnwindSafe(|| callback(&progress)));
        }
    }

    fn context(&self) -> OperationContext {
        let now = self.backend().now();
        let status = self.status();
        let reason = self.token.reason();
        lock(&self.data).snapshot(self.id(), status, reason, now)
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
    pub fn name(self, name: impl Into<String>) -> Self {
        lock(&self.shared.data).name = Some(Arc::from(name.into()));
        self
    }

    /// Attaches a key/value pair to the operation's context.
    pub fn metadata(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        lock(&self.shared.data)
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
    pub fn deadline(self, deadline: Instant) -> Self {
        {
            let mut current = lock(&self.shared.deadline);
            *current = Some(current.map_or(deadline, |earlier| earlier.min(deadline)));
        }
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
        self.config.on_cancel.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the body completes without being cancelled
    /// (with a value, or an `Ok` for [`try_run`](Self::try_run)).
    pub fn on_complete(
        mut self,
        callback: impl FnOnce(&OperationContext) + Send + 'static,
    ) -> Self {
        self.config.on_complete.push(Box::new(callback));
        self
    }

    /// Runs `callback` when the body of [`try_run`](Self::try_run) returns
    /// an `Err` of its own (status [`OperationStatus::Failed`]).
    pub fn on_error(mut self, callback: impl FnOnce(&OperationContext) + Send + 'static) -> Self {
        self.config.on_error.push(Box::new(callback));
        self
    }

    /// Runs `callback` on every [`report_progress`](crate::report_progress)
    /// made inside the scope, on the reporting thread.
    pub fn on_progress(self, callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        lock(&self.shared.progress_callbacks).push(Arc::new(callback));
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

    /// The earliest deadline of this scope and the scopes around it.
    pub fn effective_deadline(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut scope = Some(&*self.shared);
        while let Some(current) = scope {
            if let Some(deadline) = current.deadline() {
                earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            }
            scope = current.parent().map(Arc::as_ref);
        }
        earliest
    }

    /// Moves the scope's deadline, earlier or later (`None` removes it).
    /// A running scope re-arms its timer; a deadline that has passed
    /// cancels a pending body at once.
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
    backend: Backend,
    _parent_link: Option<ChildLink>,
    _nested_in: Option<NestedIn>,
    timer: Option<Timer>,
    timer_generation: u64,
    sources: ArmedSources,
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
    config: Config,
    armed: Option<Armed>,
    finished: bool,
}

impl Driver {
    fn new(scope: CancelScope) -> Self {
        Driver {
            shared: Some(scope.shared),
            config: scope.config,
            armed: None,
            finished: false,
        }
    }

    fn shared(&self) -> &Arc<ScopeShared> {
        self.shared
            .as_ref()
            .expect("the scope is only lent out while its body is polled")
    }

    fn start(&mut self) {
        let shared = self.shared().clone();
        let parent = current::current_shared();
        let backend = parent
            .as_ref()
            .map_or_else(Backend::detect, |p| p.backend());
        let _ = shared.backend.set(backend);
        let started = backend.now();
        let parent_link = parent.as_ref().and_then(|p| p.token.attach(&shared.token));
        let nested_in = parent.as_ref().map(NestedIn::new);
        {
            let mut data = lock(&shared.data);
            data.started = Some(started);
            data.parent_id = parent.as_ref().map(|p| p.id());
        }
        let _ = shared.parent.set(parent);
        if let Some(timeout) = self.config.timeout {
            if let Some(at) = started.checked_add(timeout) {
                let mut deadline = lock(&shared.deadline);
                *deadline = Some(deadline.map_or(at, |earlier| earlier.min(at)));
            }
        }
        shared.set_status(OperationStatus::Running);
        #[cfg(feature = "tracing")]
        let span = {
            let name = lock(&shared.data).name.clone();
            let span =
                tracing::debug_span!("cancel_scope", id = shared.id(), name = name.as_deref());
            tracing::debug!(parent: &span, "scope started");
            span
        };
        let mut sources = ArmedSources::default();
        for source in std::mem::take(&mut self.config.sources) {
            if let Err(error) = sources.arm(source, Sink::Token(shared.token.clone()), started) {
                shared.token.cancel_cause(Cause {
                    reason: CancelReason::Error(error),
                    message: None,
                });
                break;
            }
        }
        self.armed = Some(Armed {
            backend,
            _parent_link: parent_link,
            _nested_in: nested_in,
            timer: None,
            timer_generation: u64::MAX,
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
    ) -> Poll<Result<F::Output, Cancelled>> {
        assert!(
            !self.finished,
            "a cancel scope future was polled after it completed"
        );
        if self.armed.is_none() {
            self.start();
        }
        #[cfg(feature = "tracing")]
        let _entered = self
            .armed
            .as_ref()
            .map(|armed| armed.span.clone().entered());
        let cancelled_before = self.shared().token.is_cancelled();
        if let Poll::Ready(output) = current::enter(&mut self.shared, || body.as_mut().poll(cx)) {
            return Poll::Ready(Ok(self.complete(output, is_failure)));
        }

        let shared = self.shared().clone();
        shared.token.register_owner(cx.waker());
        if !shared.token.is_cancelled() {
            self.poll_sources(&shared, cx);
        }
        if !shared.token.is_cancelled() || shared.shields.load(Ordering::Acquire) > 0 {
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
                return Poll::Ready(Ok(self.complete(output, is_failure)));
            }
        }
        let cancelled = shared.cancelled_error();
        self.finish(OperationStatus::Cancelled, Some(&cancelled));
        Poll::Ready(Err(cancelled))
    }

    /// The body finished: record how, and hand its output back.
    fn complete<T>(&mut self, output: T, is_failure: fn(&T) -> bool) -> T {
        let shared = self.shared().clone();
        let status = if !is_failure(&output) {
            OperationStatus::Completed
        } else if shared.observed.load(Ordering::Acquire) || shared.token.is_cancelled() {
            // An error after the scope was cancelled is the cancellation's doing.
            OperationStatus::Cancelled
        } else {
            OperationStatus::Failed
        };
        let cancelled = (status == OperationStatus::Cancelled).then(|| shared.cancelled_error());
        self.finish(status, cancelled.as_ref());
        output
    }

    /// Polls the deadline timer (arming it on the first pend, re-arming it
    /// when the deadline moved) and the sources that need polling.
    fn poll_sources(&mut self, shared: &ScopeShared, cx: &mut Context<'_>) {
        let armed = self.armed.as_mut().expect("started above");
        let generation = shared.deadline_generation.load(Ordering::Acquire);
        if armed.timer_generation != generation {
            armed.timer_generation = generation;
            match shared.deadline() {
                None => armed.timer = None,
                Some(deadline) if armed.backend.now() >= deadline => {
                    armed.timer = None;
                    shared.token.cancel_cause(Cause {
                        reason: CancelReason::Timeout,
                        message: None,
                    });
                    return;
                }
                Some(deadline) => match &mut armed.timer {
                    Some(timer) => timer.reset(deadline),
                    None => armed.timer = Some(armed.backend.timer(deadline)),
                },
            }
        }
        if let Some(timer) = &mut armed.timer {
            if timer.poll_fired(cx).is_ready() {
                armed.timer = None;
                shared.token.cancel_cause(Cause {
                    reason: CancelReason::Timeout,
                    message: None,
                });
                return;
            }
        }
        armed.sources.poll(cx, armed.backend);
    }

    /// Records the outcome, releases every source and runs the callbacks.
    fn finish(&mut self, status: OperationStatus, cancelled: Option<&Cancelled>) {
        self.finished = true;
        let shared = self.shared().clone();
        let armed = self.armed.take();
        let backend = armed.as_ref().map_or_else(Backend::detect, |a| a.backend);
        lock(&shared.data).ended = Some(backend.now());
        shared.set_status(status);
        #[cfg(feature = "tracing")]
        if let Some(armed) = &armed {
            match cancelled {
                Some(cancelled) => {
                    tracing::info!(parent: &armed.span, reason = %cancelled.reason(), "scope cancelled")
                }
                None => tracing::debug!(parent: &armed.span, %status, "scope finished"),
            }
        }
        // Unregister timers, signal listeners and token callbacks, and
        // detach from the parent, before user callbacks run.
        drop(armed);
        let config = std::mem::take(&mut self.config);
        match status {
            OperationStatus::Cancelled => {
                let cancelled = cancelled
                    .cloned()
                    .unwrap_or_else(|| shared.cancelled_error());
                for callback in config.on_cancel {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&cancelled)));
                }
            }
            OperationStatus::Completed if !config.on_complete.is_empty() => {
                let context = shared.context();
                for callback in config.on_complete {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&context)));
                }
            }
            OperationStatus::Failed if !config.on_error.is_empty() => {
                let context = shared.context();
                for callback in config.on_error {
                    let _ = catch_unwind(AssertUnwindSafe(|| callback(&context)));
                }
            }
            _ => {}
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropped mid-run from outside: the operation did not complete.
        if !self.finished && self.armed.is_some() {
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
        this.driver.poll(this.body, cx, |_| false)
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
        }
    }
}

impl<F: Future> Future for TryRun<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.driver.poll(this.body, cx, *this.is_err) {
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
