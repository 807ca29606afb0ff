//! Graceful shutdown of an axum server: stop accepting, a grace for the
//! requests in flight, then their cancellation, then a hard deadline.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;

use super::tracker::{Counts, Tracker};
use super::{RequestScopeLayer, SERVER_SHUTTING_DOWN};
use crate::seam::signal::{watch_signal, SignalArrivals, SignalGuard};
use crate::seam::time;
use crate::{CancelReason, CancellationToken, Cancelled, SecondSignal, Signal};

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
            Ok(())
        };
        let mut drained = pin!(drained);

        // Until a signal or the trigger.
        let cause = match race(drained.as_mut(), [&first, &trigger], None).await {
            Event::Server(result) => {
                result?;
                return Ok(ShutdownReport {
                    cause: None,
                    outcome: ShutdownOutcome::Drained,
                    elapsed: Duration::ZERO,
                    handlers: Counts::default(),
                });
            }
            Event::Signal(cause) => cause,
            Event::Timer => unreachable!("no timer in the first phase"),
        };
        let started = time::executor_now();
        tracker.start_counting();
        trigger.cancel_with(cause.reason().clone(), "shutdown started");
        let cause_text = describe(&cause);
        #[cfg(feature = "tracing")]
        tracing::info!(cause = %cause_text, ?grace, "shutdown started: not accepting connections");

        // The grace: requests in flight may finish. A signal now ends it:
        // the second arrival, or the first after a trigger.
        let again = match first.is_cancelled() {
            true => &second,
            false => &first,
        };
        let report = |outcome| ShutdownReport {
            cause: Some(cause.reason().clone()),
            outcome,
            elapsed: time::executor_now().saturating_duration_since(started),
            handlers: tracker.counts(),
        };
        let grace_end = started.checked_add(grace);
        let mut ended_by = None;
        match race(drained.as_mut(), [again, again], grace_end).await {
            Event::Server(result) => {
                result?;
                return Ok(report(ShutdownOutcome::Drained));
            }
            Event::Signal(signalled) => match (on_second, signalled.reason().signal()) {
                // Only the grace ends: the next signal ends the rest.
                (SecondSignal::EndGrace, Some(signal)) => ended_by = Some(signal),
                _ => return Ok(report(second_signal(&signalled))),
            },
            Event::Timer => {}
        }
        let again = match (ended_by, std::ptr::eq(again, &first)) {
            (None, _) => again,
            (Some(_), true) => &second,
            (Some(_), false) => &third,
        };

        // Cancel what still runs, and wait until the hard deadline.
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
        match race(
            drained.as_mut(),
            [again, again],
            started.checked_add(hard_deadline.max(grace)),
        )
        .await
        {
            Event::Server(result) => {
                result?;
                Ok(report(match ended_by {
                    Some(signal) => ShutdownOutcome::GraceEndedBySignal(signal),
                    None => ShutdownOutcome::CancelledInFlight,
                }))
            }
            Event::Signal(again) => Ok(report(second_signal(&again))),
            Event::Timer => {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    ?hard_deadline,
                    "hard deadline reached: giving up on open connections"
                );
                Ok(report(ShutdownOutcome::HardDeadline))
            }
        }
    }
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

enum Event {
    Server(io::Result<()>),
    Signal(Cancelled),
    Timer,
}

/// The first of: one of `tokens` is cancelled (a signal, or the trigger),
/// the server is drained, the deadline.
async fn race(
    mut server: std::pin::Pin<&mut impl Future<Output = io::Result<()>>>,
    tokens: [&CancellationToken; 2],
    deadline: Option<Instant>,
) -> Event {
    // On the crate's clock, which the testing kit's manual clock drives.
    let mut timer = deadline.map(time::executor_timer);
    let mut waits = tokens.map(|token| token.cancelled());
    std::future::poll_fn(|cx| {
        for (wait, token) in waits.iter_mut().zip(tokens) {
            if std::pin::Pin::new(wait).poll(cx).is_ready() {
                let cancelled = token
                    .check()
                    .expect_err("a token whose wait is over is cancelled");
                return Poll::Ready(Event::Signal(cancelled));
            }
        }
        if let Poll::Ready(result) = server.as_mut().poll(cx) {
            return Poll::Ready(Event::Server(result));
        }
        if let Some(timer) = &mut timer {
            if timer.poll_fired(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
        }
        Poll::Pending
    })
    .await
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
