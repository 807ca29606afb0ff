//! Graceful shutdown of an axum server: stop accepting, a grace for the
//! requests in flight, then their cancellation, then a hard deadline.
//!
//! The ladder is built from scopes and the one grace, with no timer of
//! its own: the server runs in a scope the first signal (or the trigger)
//! cancels; then in the *shutdown's* scope (cancelled by the hard
//! deadline, or by the signal that ends the shutdown at once) around the
//! *grace's* scope, whose deadline is the end of the grace. The grace's
//! scope has a grace of its own (`CancelScope::grace`), clipped to the
//! shutdown's deadline: once cancelled it keeps polling the server — which
//! cancels the requests in flight when it sees the cancellation — up to
//! the hard deadline. The testing kit's manual clock drives both, as it
//! drives every scope.

use std::fmt;
use std::future::IntoFuture;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use super::tracker::{Counts, Tracker};
use super::{RequestScopeLayer, SERVER_SHUTTING_DOWN};
use crate::scope::seam;
use crate::seam::signal::{watch_signal, SignalArrivals, SignalGuard};
use crate::seam::time;
use crate::{
    CancelReason, CancelScope, CancellationToken, Cancelled, OrCancelled, SecondSignal, Signal,
};

/// Serves an axum [`Router`] until SIGINT or SIGTERM (or
/// [`trigger`](Self::trigger)), then shuts down in steps:
///
/// 1. stops accepting connections (idle keep-alive connections close);
/// 2. gives the requests in flight the [`grace`](Self::grace) period to
///    finish (default 10 s);
/// 3. cancels the [`server_token`](Self::server_token): request scopes
///    from [`layer`](Self::layer) end with `503 Service Unavailable`
///    (gRPC `UNAVAILABLE`) saying the server is shutting down and why, and
///    a `tracing` event (feature `tracing`) logs each one; a layer with a
///    [`grace`](RequestScopeLayer::grace) lets their cleanup run for it;
/// 4. returns at the [`hard_deadline`](Self::hard_deadline) (default
///    30 s after the signal) whatever is still open.
///
/// The shutdown waits for every handler of [`layer`](Self::layer)'s
/// request scopes, not only for the connections: a handler whose client
/// left and that runs on in a task of its own
/// ([`DisconnectMode::Detach`](super::DisconnectMode::Detach), or
/// [`Notify`](super::DisconnectMode::Notify) cleaning up) is waited for
/// within the grace, cancelled when it runs out, and counted in the
/// [`ShutdownReport`] (finished, cancelled, or still running at the hard
/// deadline) — never dropped unannounced.
///
/// With [`on_second_signal(SecondSignal::EndGrace)`](Self::on_second_signal)
/// a second signal during the grace only ends the grace: step 3 follows at
/// once, so the requests in flight get their `503`; a third signal then
/// returns at once. By default:
/// a second signal during the shutdown makes it return at once, however
/// soon after the first it arrives (the signals are watched from the
/// start of `serve` until it returns; two signals the kernel delivers as
/// one are one). Once `serve` returns, Ctrl-C behaves as it did before.
/// Connections and handlers still open when it returns end when the tokio
/// runtime shuts down (return from `main`).
///
/// ```no_run
/// # async fn doc() -> std::io::Result<()> {
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use cancelable::http::GracefulShutdown;
///
/// let shutdown = GracefulShutdown::new()
///     .grace(Duration::from_secs(5))
///     .hard_deadline(Duration::from_secs(15));
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(shutdown.layer().timeout(Duration::from_secs(30)));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let report = shutdown.serve(listener, app).await?;
/// eprintln!("{report}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GracefulShutdown {
    grace: Duration,
    hard_deadline: Duration,
    signals: Vec<Signal>,
    second_signal: SecondSignal,
    server_token: CancellationToken,
    trigger: CancellationToken,
    tracker: Arc<Tracker>,
}

impl Default for GracefulShutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl GracefulShutdown {
    /// On SIGINT or SIGTERM: a grace of 10 s, a hard deadline of 30 s.
    pub fn new() -> Self {
        GracefulShutdown {
            grace: Duration::from_secs(10),
            hard_deadline: Duration::from_secs(30),
            signals: vec![Signal::Interrupt, Signal::Terminate],
            second_signal: SecondSignal::Exit,
            server_token: CancellationToken::new(),
            trigger: CancellationToken::new(),
            tracker: Arc::default(),
        }
    }

    /// How long requests in flight may run on once shutdown started,
    /// before they are cancelled.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// When, counted from the start of the shutdown, `serve` returns
    /// whatever is still open.
    pub fn hard_deadline(mut self, hard_deadline: Duration) -> Self {
        self.hard_deadline = hard_deadline;
        self
    }

    /// The signals that start the shutdown (and, sent again, end it at
    /// once). Default: SIGINT and SIGTERM. None: only
    /// [`trigger`](Self::trigger) starts it.
    pub fn signals(mut self, signals: impl IntoIterator<Item = Signal>) -> Self {
        self.signals = signals.into_iter().collect();
        self
    }

    /// What a second signal during the grace does (see [`SecondSignal`]):
    /// by default ([`SecondSignal::Exit`]) `serve` returns at once, closing
    /// what is still open without an answer (the report says
    /// [`ShutdownOutcome::SecondSignal`]); with [`SecondSignal::EndGrace`]
    /// it ends the grace at once and cancels the requests in flight, which
    /// are answered `503` as when the grace runs out
    /// ([`ShutdownOutcome::GraceEndedBySignal`]), then waits up to the hard
    /// deadline; a third signal returns at once.
    pub fn on_second_signal(mut self, action: SecondSignal) -> Self {
        self.second_signal = action;
        self
    }

    /// The server-wide token, cancelled when the grace ends: the parent
    /// of every request scope of [`layer`](Self::layer).
    pub fn server_token(&self) -> CancellationToken {
        self.server_token.clone()
    }

    /// A [`RequestScopeLayer`] whose scopes are cancelled with the server
    /// token; configure it further as usual.
    pub fn layer(&self) -> RequestScopeLayer {
        RequestScopeLayer::new()
            .server_token(&self.server_token)
            .tracked_by(&self.tracker)
    }

    /// Cancel this token to start the shutdown without a signal (its
    /// reason and message are reported).
    pub fn trigger(&self) -> CancellationToken {
        self.trigger.clone()
    }

    /// Serves `router` on `listener` until the shutdown is over.
    ///
    /// # Errors
    ///
    /// What axum's server returns (it handles accept errors itself), and
    /// an error saying which signal could not be listened for.
    pub async fn serve(self, listener: TcpListener, router: Router) -> io::Result<ShutdownReport> {
        let GracefulShutdown {
            grace,
            hard_deadline,
            signals,
            second_signal: on_second,
            server_token,
            trigger,
            tracker,
        } = self;
        // Every arrival of the signals, from now until `serve` returns:
        // the first starts the shutdown, the next one ends it. One watch
        // for the whole shutdown, so that a second signal is the
        // shutdown's however soon after the first it comes — never the
        // default action's, as it would be between two listeners.
        let first = CancellationToken::new();
        let second = CancellationToken::new();
        // The third only for a second signal that ends the grace alone.
        let third = CancellationToken::new();
        let arrivals = Arc::new(SignalArrivals::new(vec![
            first.clone(),
            second.clone(),
            third.clone(),
        ]));
        let _watching = signals
            .iter()
            .map(|&signal| watch_signal(signal, arrivals.clone()))
            .collect::<Result<Vec<SignalGuard>, _>>()
            .map_err(io::Error::other)?;

        let stop_accepting = trigger.clone().cancelled_owned();
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(stop_accepting)
            .into_future();
        // Done once the server closed every connection and every handler
        // it started ended, even those whose client left.
        let drained = async {
            server.await?;
            tracker.idle().await;
            Ok::<(), io::Error>(())
        };
        let mut drained = pin!(drained);

        // Until a signal or the trigger: the server runs in a scope they
        // cancel.
        let serving = CancelScope::new().token(&first).token(&trigger);
        let cause = match serving.run(drained.as_mut()).await {
            Ok(result) => {
                result?;
                return Ok(ShutdownReport {
                    cause: None,
                    outcome: ShutdownOutcome::Drained,
                    elapsed: Duration::ZERO,
                    handlers: Counts::default(),
                });
            }
            Err(cause) => cause,
        };
        let started = time::executor_now();
        tracker.start_counting();
        trigger.cancel_with(cause.reason().clone(), "shutdown started");
        let cause_text = describe(&cause);
        #[cfg(feature = "tracing")]
        tracing::info!(cause = %cause_text, ?grace, "shutdown started: not accepting connections");

        // A signal now ends the grace or the shutdown: the second arrival,
        // or the first after a trigger; with `EndGrace`, the one after the
        // signal that ended the grace ends the shutdown. (Whether the first
        // signal started it is read from its recorded cancel: the scope it
        // cancelled reads as cancelled before the token's own flag does,
        // `token/node.rs`.)
        let (again, next) = match seam::cancel_recorded(&first) {
            true => (&second, &third),
            false => (&first, &second),
        };
        let (ends_grace, ends_shutdown) = match on_second {
            SecondSignal::EndGrace => (Some(again), next),
            _ => (None, again),
        };
        let report = |outcome| ShutdownReport {
            cause: Some(cause.reason().clone()),
            outcome,
            elapsed: time::executor_now().saturating_duration_since(started),
            handlers: tracker.counts(),
        };
        // Cancels what still runs: the requests in flight get their `503`.
        let cancel_in_flight = |ended_by: Option<Signal>| {
            if server_token.is_cancelled() {
                return;
            }
            #[cfg(feature = "tracing")]
            tracing::warn!(cause = %cause_text, ?grace, "grace over: cancelling requests in flight");
            let why = match ended_by {
                Some(signal) => format!("a second {signal} ended the grace"),
                None => format!("the grace of {grace:?} ran out"),
            };
            server_token.cancel_with(
                cause.reason().clone(),
                format!("{SERVER_SHUTTING_DOWN}: {cause_text}; {why}"),
            );
        };

        // The ladder, two scopes (see `Ladder`): the shutdown's, which the
        // hard deadline and a signal that ends the shutdown cancel, and
        // the grace's inside it, cancelled at the end of the grace (or by
        // a signal that ends it), whose own grace lets the cancelled
        // requests finish up to the hard deadline.
        let hard_end = started.checked_add(hard_deadline.max(grace));
        let mut shutdown = CancelScope::new().token(ends_shutdown);
        if let Some(hard_end) = hard_end {
            shutdown = shutdown.deadline(hard_end);
        }
        let mut in_grace = CancelScope::new().grace(hard_deadline.max(grace));
        if let Some(grace_end) = started.checked_add(grace) {
            in_grace = in_grace.deadline(grace_end);
        }
        if let Some(token) = ends_grace {
            in_grace = in_grace.token(token);
        }
        let ladder = async {
            match drained.as_mut().or_cancelled().await {
                Ok(result) => (result, Ladder::Drained),
                Err(ended) if ended.reason().is_from_parent() => {
                    // The shutdown's scope ends (the hard deadline, a
                    // signal), dropping this: its reason is the outcome.
                    std::future::pending().await
                }
                Err(ended) => {
                    let ended_by = ended.reason().signal();
                    cancel_in_flight(ended_by);
                    (drained.as_mut().await, Ladder::Cancelled(ended_by))
                }
            }
        };
        let outcome = match shutdown.run(in_grace.run(ladder)).await {
            Ok(Ok((result, ladder))) => {
                result?;
                match ladder {
                    Ladder::Drained => ShutdownOutcome::Drained,
                    Ladder::Cancelled(None) => ShutdownOutcome::CancelledInFlight,
                    Ladder::Cancelled(Some(signal)) => ShutdownOutcome::GraceEndedBySignal(signal),
                }
            }
            // A signal that ends the shutdown at once.
            Err(again) if again.reason().signal().is_some() => second_signal(&again),
            // The hard deadline: the shutdown's own, or the end of the
            // grace's grace (the same instant).
            Ok(Err(_)) | Err(_) => {
                // Cancelled now if the grace ran out with the hard deadline.
                cancel_in_flight(None);
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    ?hard_deadline,
                    "hard deadline reached: giving up on open connections"
                );
                ShutdownOutcome::HardDeadline
            }
        };
        Ok(report(outcome))
    }
}

/// How the grace's scope of the ladder ended.
enum Ladder {
    /// Every request finished within the grace.
    Drained,
    /// The grace ran out (or the signal that ended it): the requests still
    /// in flight were cancelled, and finished before the hard deadline.
    Cancelled(Option<Signal>),
}

/// What a shutdown was started by, in words.
fn describe(cause: &Cancelled) -> String {
    match (cause.reason().signal(), cause.message()) {
        (Some(signal), _) => format!("received {signal}"),
        (None, Some(message)) => message.to_owned(),
        (None, None) => cause.reason().to_string(),
    }
}

fn second_signal(again: &Cancelled) -> ShutdownOutcome {
    #[cfg(feature = "tracing")]
    tracing::warn!(reason = %again.reason(), "second signal: stopping at once");
    match again.reason().signal() {
        Some(signal) => ShutdownOutcome::SecondSignal(signal),
        // Only signals end the second wait.
        None => ShutdownOutcome::HardDeadline,
    }
}

/// How a [`GracefulShutdown`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownOutcome {
    /// Every connection closed within the grace.
    Drained,
    /// The grace ran out; the requests still in flight were cancelled
    /// (`503`) and every connection closed before the hard deadline.
    CancelledInFlight,
    /// The hard deadline passed with connections still open.
    HardDeadline,
    /// A second signal arrived during the shutdown.
    SecondSignal(Signal),
    /// A second signal ended the grace
    /// ([`SecondSignal::EndGrace`](crate::SecondSignal::EndGrace)); the
    /// requests in flight were cancelled (`503`) and every connection
    /// closed before the hard deadline.
    GraceEndedBySignal(Signal),
}

/// What [`GracefulShutdown::serve`] reports: why it stopped, how, and how
/// long the shutdown took. Its `Display` is a line for the log.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What started the shutdown: a signal, or the trigger's reason.
    pub cause: Option<CancelReason>,
    /// How it ended.
    pub outcome: ShutdownOutcome,
    /// From the start of the shutdown until `serve` returned.
    pub elapsed: Duration,
    handlers: Counts,
}

impl ShutdownReport {
    /// The handlers of [`layer`](GracefulShutdown::layer)'s request
    /// scopes that ended with their own answer after the shutdown started
    /// — including those whose client had left
    /// ([`DisconnectMode::Detach`](super::DisconnectMode::Detach)).
    pub fn handlers_finished(&self) -> usize {
        self.handlers.finished
    }

    /// The handlers that ended cancelled after the shutdown started: by
    /// the shutdown once the grace ran out (after their own grace, if the
    /// layer gives one), by their deadline, or because their client left.
    pub fn handlers_cancelled(&self) -> usize {
        self.handlers.cancelled
    }

    /// The handlers still running when `serve` returned (the hard
    /// deadline or a second signal): the tokio runtime drops them when it
    /// shuts down.
    pub fn handlers_running(&self) -> usize {
        self.handlers.running
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(CancelReason::Signal(signal)) => write!(f, "shut down on {signal}")?,
            Some(reason) => write!(f, "shut down ({reason})")?,
            None => f.write_str("server stopped")?,
        }
        let outcome = match self.outcome {
            ShutdownOutcome::Drained => "every request finished within the grace".to_owned(),
            ShutdownOutcome::CancelledInFlight => {
                "the grace ran out; requests in flight were cancelled".to_owned()
            }
            ShutdownOutcome::HardDeadline => {
                "the hard deadline passed with connections still open".to_owned()
            }
            ShutdownOutcome::SecondSignal(signal) => format!("a second {signal} ended it at once"),
            ShutdownOutcome::GraceEndedBySignal(signal) => {
                format!("a second {signal} ended the grace; requests in flight were cancelled")
            }
        };
        let handlers = |count: usize| match count {
            1 => "1 handler".to_owned(),
            count => format!("{count} handlers"),
        };
        write!(
            f,
            ": {outcome} (after {:.3?}; {} finished, {} cancelled, {} still running)",
            self.elapsed,
            handlers(self.handlers.finished),
            handlers(self.handlers.cancelled),
            handlers(self.handlers.running),
        )
    }
}
