//! The sources of a running scope: armed when the scope starts (signal
//! listeners, token links and callbacks registered), polled while its body
//! pends (timers, conditions, futures), released when it ends.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::dispatcher::{listen, SignalGuard};
use super::{BoxBoolFuture, BoxReasonFuture, Condition, Sink, Source, SourceKind};
use crate::backend::{Backend, Blocking, Timer};
use crate::panic::{self, Panicked};
use crate::reason::SourceError;
use crate::token::{CallbackGuard, Cause, ChildLink, Link};
use crate::CancelReason;

/// What a contained panic of a condition predicate is reported as.
const PREDICATE: &str = "a condition predicate";
/// What a contained panic of a future source is reported as.
const FUTURE: &str = "a source future";

/// The live state of a scope's sources while it runs. Dropping it
/// unregisters every signal listener and token callback.
#[derive(Default)]
pub(crate) struct ArmedSources {
    signals: Vec<SignalGuard>,
    callbacks: Vec<CallbackGuard>,
    links: Vec<ChildLink>,
    polled: Vec<Polled>,
}

impl ArmedSources {
    /// Starts `source`, delivering into `sink`. Timers and conditions are
    /// only started when [`poll`](Self::poll) runs, i.e. once the body pends.
    pub(crate) fn arm(
        &mut self,
        source: Source,
        sink: Sink,
        started: Instant,
    ) -> Result<(), SourceError> {
        match source.kind {
            SourceKind::Timeout(duration) => {
                let at = started.checked_add(duration);
                self.polled.push(Polled::Deadline {
                    at,
                    timer: None,
                    sink,
                });
            }
            SourceKind::Deadline(at) => self.polled.push(Polled::Deadline {
                at: Some(at),
                timer: None,
                sink,
            }),
            SourceKind::Signal(signal, second) => self.signals.push(listen(signal, sink, second)?),
            // A token feeding the scope directly: link the scope's token
            // under it, as a child that reports the token's own reason.
            SourceKind::Token(token) if matches!(sink, Sink::Token(_)) => {
                let Sink::Token(scope_token) = &sink else {
                    unreachable!("matched above")
                };
                if let Some(link) = token.attach(scope_token, Link::Transparent) {
                    self.links.push(link);
                }
            }
            SourceKind::Token(token) => {
                let guard = token.on_cancel_cause(Box::new(move |cause: &Cause| {
                    sink.fire_cause(cause.clone());
                }));
                self.callbacks.push(guard);
            }
            SourceKind::Future(future) => self.polled.push(Polled::Future { future, sink }),
            SourceKind::Condition(condition, check_every) => {
                if check_every.is_zero() {
                    return Err(SourceError::new(
                        "a condition's check interval must be greater than zero (try 100ms)",
                    ));
                }
                self.polled.push(Polled::Condition(ConditionState {
                    condition,
                    check_every,
                    timer: None,
                    check: None,
                    sink,
                }));
            }
            SourceKind::AnyOf(sources) => {
                let sink = sink.any_of();
                for source in sources {
                    self.arm(source, sink.clone(), started)?;
                }
            }
            SourceKind::AllOf(sources) => {
                let sinks = sink.all_of(sources.len());
                for (source, sink) in sources.into_iter().zip(sinks) {
                    self.arm(source, sink, started)?;
                }
            }
        }
        Ok(())
    }

    /// Stops the signal listeners and hands them back: a scope that a
    /// signal reached counts as cleaning up until they are dropped (see
    /// the `signal` module).
    pub(crate) fn stop_signals(&mut self) -> Vec<SignalGuard> {
        let mut signals = std::mem::take(&mut self.signals);
        for guard in &mut signals {
            guard.stop_listening();
        }
        signals
    }

    /// `true` once a signal that cancelled the scope arrived a second time
    /// while the scope still listened (a scope in its grace period then
    /// ends it).
    pub(crate) fn signalled_again(&self) -> bool {
        self.signals.iter().any(SignalGuard::reached_again)
    }

    /// Polls the sources that need polling: timers, conditions, futures.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, backend: Backend) {
        self.polled
            .retain_mut(|polled| polled.poll(cx, backend).is_pending());
    }
}

enum Polled {
    Deadline {
        /// `None` if the deadline is too far to represent: never fires.
        at: Option<Instant>,
        timer: Option<Timer>,
        sink: Sink,
    },
    Condition(ConditionState),
    Future {
        future: BoxReasonFuture,
        sink: Sink,
    },
}

impl Polled {
    /// `Ready` once the source has fired (or can never fire) and can be dropped.
    fn poll(&mut self, cx: &mut Context<'_>, backend: Backend) -> Poll<()> {
        match self {
            Polled::Deadline { at, timer, sink } => {
                let Some(at) = *at else {
                    return Poll::Ready(());
                };
                let timer = match timer {
                    Some(timer) => timer,
                    None if backend.now() >= at => {
                        sink.fire(CancelReason::Timeout);
                        return Poll::Ready(());
                    }
                    None => timer.insert(backend.timer(at)),
                };
                if timer.poll_fired(cx).is_ready() {
                    sink.fire(CancelReason::Timeout);
                    return Poll::Ready(());
                }
                Poll::Pending
            }
            Polled::Condition(state) => state.poll(cx, backend),
            Polled::Future { future, sink } => {
                match panic::contain(FUTURE, || future.as_mut().poll(cx)) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(reason)) => sink.fire(reason),
                    Err(panicked) => sink.fire(CancelReason::Error(SourceError::new(format!(
                        "the source future panicked: {panicked}"
                    )))),
                }
                Poll::Ready(())
            }
        }
    }
}

struct ConditionState {
    condition: Condition,
    check_every: Duration,
    timer: Option<Timer>,
    check: Option<Check>,
    sink: Sink,
}

/// What a check found: `None` if the condition does not hold, else
/// `Some` with the message to cancel with, if the predicate gives one.
type Met = Option<Option<String>>;

/// A check of the predicate in progress. Its outcome is whether the
/// condition holds, or the panic of the predicate: the blocking pool never
/// loses work, so a panic is the only way a check fails.
enum Check {
    Blocking(Blocking<Result<Met, Panicked>>),
    Async(BoxBoolFuture),
    /// Making the predicate's future panicked.
    Failed(Panicked),
}

impl ConditionState {
    fn poll(&mut self, cx: &mut Context<'_>, backend: Backend) -> Poll<()> {
        loop {
            if let Some(check) = &mut self.check {
                let outcome = match check {
                    Check::Blocking(task) => match task.poll_done(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(outcome) => outcome,
                    },
                    Check::Async(future) => {
                        match panic::contain(PREDICATE, || future.as_mut().poll(cx)) {
                            Ok(Poll::Pending) => return Poll::Pending,
                            Ok(Poll::Ready(met)) => Ok(met.then_some(None)),
                            Err(panicked) => Err(panicked),
                        }
                    }
                    Check::Failed(panicked) => Err(panicked.clone()),
                };
                self.check = None;
                match outcome {
                    Ok(Some(message)) => {
                        match message {
                            Some(message) => self
                                .sink
                                .fire_cause(Cause::with_message(CancelReason::Condition, message)),
                            None => self.sink.fire(CancelReason::Condition),
                        }
                        return Poll::Ready(());
                    }
                    Ok(None) => {
                        // An interval too long to represent means: never
                        // check again.
                        let Some(next) = backend.now().checked_add(self.check_every) else {
                            return Poll::Ready(());
                        };
                        match &mut self.timer {
                            Some(timer) => timer.reset(next),
                            None => self.timer = Some(backend.timer(next)),
                        }
                    }
                    Err(panicked) => {
                        self.sink.fire(CancelReason::Error(SourceError::new(format!(
                            "the condition predicate panicked: {panicked}"
                        ))));
                        return Poll::Ready(());
                    }
                }
            }
            // The first check runs as soon as the body pends; later ones
            // when the interval timer fires.
            if let Some(timer) = &mut self.timer {
                if timer.poll_fired(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.check = Some(self.start_check(backend));
        }
    }

    fn start_check(&self, backend: Backend) -> Check {
        match &self.condition {
            Condition::Blocking(predicate) => {
                let predicate = predicate.clone();
                Check::Blocking(backend.run_blocking(move || {
                    panic::contain(PREDICATE, || predicate().then_some(None))
                }))
            }
            Condition::Described(predicate) => {
                let predicate = predicate.clone();
                Check::Blocking(
                    backend
                        .run_blocking(move || panic::contain(PREDICATE, || predicate().map(Some))),
                )
            }
            Condition::Async(make) => match panic::contain(PREDICATE, || make()) {
                Ok(future) => Check::Async(future),
                Err(panicked) => Check::Failed(panicked),
            },
        }
    }
}
