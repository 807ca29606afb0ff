//! Graceful shutdown of an axum server: stop accepting, a grace for the
//! requests in flight, then their cancellation, then a hard deadline.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;

use super::RequestScopeLayer;
use crate::{CancelReason, CancelScope, CancellationToken, Cancelled, Signal};

/// Serves an axum [`Router`] until SIGINT or SIGTERM (or
/// [`trigger`](Self::trigger)), then shuts down in steps:
///
/// 1. stops accepting connections (idle keep-alive connections close);
/// 2. gives the requests in flight the [`grace`](Self::grace) period to
///    finish (default 10 s);
/// 3. cancels the [`server_token`](Self::server_token): request scopes
///    from [`layer`](Self::layer) end with `503 Service Unavailable`
///    (gRPC `UNAVAILABLE`) saying the server is shutting down and why, and
///    a `tracing` event (feature `tracing`) logs each one;
/// 4. returns at the [`hard_deadline`](Self::hard_deadline) (default
///    30 s after the signal) whatever is still open.
///
/// A second signal during the shutdown makes it return at once. The
/// signals are watched through cancelable's own signal sources: once
/// `serve` returns, Ctrl-C behaves as it did before. Connections still
/// open when it returns are closed when the tokio runtime shuts down
/// (return from `main`).
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
    server_token: CancellationToken,
    trigger: CancellationToken,
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
            server_token: CancellationToken::new(),
            trigger: CancellationToken::new(),
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

    /// The server-wide token, cancelled when the grace ends: the parent
    /// of every request scope of [`layer`](Self::layer).
    pub fn server_token(&self) -> CancellationToken {
        self.server_token.clone()
    }

    /// A [`RequestScopeLayer`] whose scopes are cancelled with the server
    /// token; configure it further as usual.
    pub fn layer(&self) -> RequestScopeLayer {
        RequestScopeLayer::new().server_token(&self.server_token)
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
    /// Only what axum's server returns (it handles accept errors itself).
    pub async fn serve(self, listener: TcpListener, router: Router) -> io::Result<ShutdownReport> {
        let GracefulShutdown {
            grace,
            hard_deadline,
            signals,
            server_token,
            trigger,
        } = self;
        let stop_accepting = trigger.clone().cancelled_owned();
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(stop_accepting)
            .into_future();
        let mut server = pin!(server);

        // Until a signal or the trigger.
        let first = pin!(wait_for_signal(&signals, Some(&trigger)));
        let cause = match race(server.as_mut(), first, None).await {
            Event::Server(result) => {
                result?;
                return Ok(ShutdownReport {
                    cause: None,
                    outcome: ShutdownOutcome::Drained,
                    elapsed: Duration::ZERO,
                });
            }
            Event::Signal(cause) => cause,
            Event::Timer => unreachable!("no timer in the first phase"),
        };
        let started = Instant::now();
        trigger.cancel_with(cause.reason().clone(), "shutdown started");
        let cause_text = describe(&cause);
        #[cfg(feature = "tracing")]
        tracing::info!(cause = %cause_text, ?grace, "shutdown started: not accepting connections");

        // The grace: requests in flight may finish.
        let mut second = pin!(wait_for_signal(&signals, None));
        let report = |outcome| ShutdownReport {
            cause: Some(cause.reason().clone()),
            outcome,
            elapsed: started.elapsed(),
        };
        let grace_end = started.checked_add(grace);
        match race(server.as_mut(), second.as_mut(), grace_end).await {
            Event::Server(result) => {
                result?;
                return Ok(report(ShutdownOutcome::Drained));
            }
            Event::Signal(again) => return Ok(report(second_signal(&again))),
            Event::Timer => {}
        }

        // Cancel what still runs, and wait until the hard deadline.
        #[cfg(feature = "tracing")]
        tracing::warn!(cause = %cause_text, ?grace, "grace ran out: cancelling requests in flight");
        server_token.cancel_with(
            cause.reason().clone(),
            format!("{cause_text}; the grace of {grace:?} ran out"),
        );
        match race(
            server.as_mut(),
            second.as_mut(),
            started.checked_add(hard_deadline.max(grace)),
        )
        .await
        {
            Event::Server(result) => {
                result?;
                Ok(report(ShutdownOutcome::CancelledInFlight))
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

/// Waits for one of `signals` (or `trigger`): the cancellation says which.
/// Without signals or trigger it waits forever.
async fn wait_for_signal(signals: &[Signal], trigger: Option<&CancellationToken>) -> Cancelled {
    let mut scope = CancelScope::new().name("graceful shutdown");
    for &signal in signals {
        scope = scope.on_signal(signal);
    }
    if let Some(trigger) = trigger {
        scope = scope.token(trigger);
    }
    match scope
        .run(std::future::pending::<std::convert::Infallible>())
        .await
    {
        Err(cancelled) => cancelled,
        Ok(never) => match never {},
    }
}

enum Event {
    Server(io::Result<()>),
    Signal(Cancelled),
    Timer,
}

/// The first of: a signal, the server ends, the deadline.
async fn race(
    mut server: std::pin::Pin<&mut impl Future<Output = io::Result<()>>>,
    mut signal: std::pin::Pin<&mut impl Future<Output = Cancelled>>,
    deadline: Option<Instant>,
) -> Event {
    let mut timer = deadline.map(|deadline| Box::pin(tokio::time::sleep_until(deadline.into())));
    std::future::poll_fn(|cx| {
        // The signals first: their scope starts listening on its first
        // poll, which must come before the server's first poll accepts a
        // connection. A request handled before it, on another worker,
        // left a signal its default action (ending the process) meanwhile.
        if let Poll::Ready(cancelled) = signal.as_mut().poll(cx) {
            return Poll::Ready(Event::Signal(cancelled));
        }
        if let Poll::Ready(result) = server.as_mut().poll(cx) {
            return Poll::Ready(Event::Server(result));
        }
        if let Some(timer) = &mut timer {
            if timer.as_mut().poll(cx).is_ready() {
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
        };
        write!(f, ": {outcome} (after {:.3?})", self.elapsed)
    }
}
