//! `ResponseFuture`: the handler's outcome, or the layer's answer to its
//! cancellation.

use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::body::ScopedBody;
use super::handler::Checked;
use super::layer::{CancelCause, Config, DisconnectMode};
use super::request::now;
use super::request::DeadlineSource;
use super::timeout_header::TimeoutHeaderError;
use super::tracker::Tracked;
use super::{CLIENT_DISCONNECTED, SERVER_SHUTTING_DOWN};
use crate::scope::seam;
use crate::{CancelReason, Cancelled, ScopeHandle, ScopeRun};

/// The `400` for a malformed timeout header.
pub(super) fn bad_request<B>(error: &TimeoutHeaderError, grpc: bool) -> Response<ScopedBody<B>> {
    // gRPC's INVALID_ARGUMENT.
    answer(grpc, StatusCode::BAD_REQUEST, 3, &error.to_string())
}

/// The layer's own answer: plain text over HTTP, a trailers-only response
/// for gRPC.
fn answer<B>(grpc: bool, status: StatusCode, code: i32, message: &str) -> Response<ScopedBody<B>> {
    if grpc {
        let mut response = Response::new(ScopedBody::message(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(code));
        if let Ok(message) = HeaderValue::try_from(percent_encode(message, MAX_GRPC_MESSAGE)) {
            headers.insert("grpc-message", message);
        }
        return response;
    }
    let mut response = Response::new(ScopedBody::message(one_line(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The most bytes of `grpc-message` the layer sends: a header much larger
/// is refused by HTTP/2 peers (the client then gets no status at all).
const MAX_GRPC_MESSAGE: usize = 8 * 1024;

/// gRPC's percent-encoding of `grpc-message`: every byte outside printable
/// ASCII, and `%` itself — at most `limit` bytes of it, whole characters
/// only (a longer message is cut, ending with an encoded `…`).
fn percent_encode(message: &str, limit: usize) -> String {
    const CUT: &str = "%E2%80%A6";
    let mut encoded = String::with_capacity(message.len().min(limit));
    let mut buffer = [0u8; 4];
    // Where the encoding stood before the first character that passes
    // `limit - CUT`: the cut point if the whole does not fit.
    let mut cut_at = None;
    for character in message.chars() {
        let start = encoded.len();
        for &byte in character.encode_utf8(&mut buffer).as_bytes() {
            if (0x20..=0x7e).contains(&byte) && byte != b'%' {
                encoded.push(char::from(byte));
            } else {
                let _ = write!(encoded, "%{byte:02X}");
            }
        }
        if cut_at.is_none() && encoded.len() > limit - CUT.len() {
            cut_at = Some(start);
        }
        if encoded.len() > limit {
            encoded.truncate(cut_at.unwrap_or(start));
            encoded.push_str(CUT);
            break;
        }
    }
    encoded
}

/// The plain-text answer: one line, whatever the message holds (an
/// operator's message with a newline must not start a line of its own in
/// a log that records the body).
fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len() + 1);
    for character in message.chars() {
        match character {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            character if character.is_control() => {
                line.extend(character.escape_default());
            }
            character => line.push(character),
        }
    }
    line.push('\n');
    line
}

/// What the response future knows about its request.
pub(super) struct Pending {
    pub(super) handle: ScopeHandle,
    pub(super) source: Option<DeadlineSource>,
    /// The request's own deadline, from `source`.
    pub(super) deadline: Option<Instant>,
    pub(super) grpc: bool,
    pub(super) config: Arc<Config>,
}

impl Pending {
    fn cause(&self, cancelled: &Cancelled) -> CancelCause {
        match CancelCause::of(cancelled) {
            CancelCause::Cancelled
                if self
                    .config
                    .server_token
                    .as_ref()
                    // The cause, not the flag: a token cancels its children
                    // (the request scopes) before its own flag reads as
                    // cancelled.
                    .is_some_and(seam::cancel_recorded) =>
            {
                CancelCause::Shutdown
            }
            cause => cause,
        }
    }

    /// The answer to a cancelled request.
    fn cancelled<B>(&self, cancelled: &Cancelled) -> Response<ScopedBody<B>> {
        let cause = self.cause(cancelled);
        let why = match cancelled.message() {
            Some(message) => format!("{}: {message}", cancelled.reason()),
            None => cancelled.reason().to_string(),
        };
        let message = match cause {
            // The request's own deadline.
            CancelCause::Deadline if self.deadline.is_some_and(|deadline| now() >= deadline) => {
                deadline_message(self.source.as_ref())
            }
            // A timeout from elsewhere: an operator's cancel, an enclosing
            // deadline.
            CancelCause::Deadline => {
                format!("deadline exceeded: cancelled before the request's deadline ({why})")
            }
            CancelCause::Shutdown => match cancelled.message() {
                Some(message) if message.starts_with(SERVER_SHUTTING_DOWN) => {
                    format!("service unavailable: {message}")
                }
                _ => format!("service unavailable: {SERVER_SHUTTING_DOWN} ({why})"),
            },
            CancelCause::ClientDisconnected => CLIENT_DISCONNECTED.to_owned(),
            CancelCause::Cancelled => format!("request cancelled: {why}"),
        };
        let status = self.config.statuses[cause.index()];
        #[cfg(feature = "tracing")]
        tracing::info!(
            operation = self.handle.id(),
            %cause,
            status = status.as_u16(),
            "{message}"
        );
        answer(
            self.grpc,
            status,
            self.config.grpc_codes[cause.index()],
            &message,
        )
    }
}

/// What the answer for a passed deadline says.
fn deadline_message(source: Option<&DeadlineSource>) -> String {
    match source {
        Some(source) => format!("deadline exceeded: {source} passed"),
        None => "deadline exceeded: the request's deadline passed".to_owned(),
    }
}

/// The answer to a request whose deadline passed before it reached the
/// handler (`x-request-timeout: 0`, `grpc-timeout: 0n`).
pub(super) fn deadline_exceeded<B>(
    config: &Config,
    source: Option<&DeadlineSource>,
    grpc: bool,
) -> Response<ScopedBody<B>> {
    let cause = CancelCause::Deadline;
    let message = deadline_message(source);
    #[cfg(feature = "tracing")]
    tracing::info!(%cause, "{message}; the handler was not called");
    answer(
        grpc,
        config.statuses[cause.index()],
        config.grpc_codes[cause.index()],
        &message,
    )
}

/// Tells the scope when the response future is dropped unfinished: the
/// client went away. Declared before the stage, so that it runs before the
/// handler is dropped (in [`DisconnectMode::Drop`]).
pub(super) struct Guard {
    /// `None` once the response is ready, or for an immediate answer.
    pub(super) request: Option<Pending>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else {
            return;
        };
        // A handler that panicked cancelled its scope with the panic
        // (`Checked`): a failure, not a client that left.
        if let Some(failed) = seam::cancelled_by_error(&request.handle.cancel_token()) {
            #[cfg(feature = "tracing")]
            tracing::error!(
                operation = request.handle.id(),
                status = 500,
                "request failed: {}",
                failed.message().unwrap_or("")
            );
            #[cfg(not(feature = "tracing"))]
            let _ = failed;
            return;
        }
        if request.config.disconnect != DisconnectMode::Detach {
            request
                .handle
                .cancel_with(CancelReason::ClientDisconnected, CLIENT_DISCONNECTED);
        }
        #[cfg(feature = "tracing")]
        tracing::info!(
            operation = request.handle.id(),
            mode = ?request.config.disconnect,
            status = request.config.statuses[CancelCause::ClientDisconnected.index()].as_u16(),
            "client disconnected"
        );
    }
}

/// What the handler's scope ends with: the handler's output, or the
/// cancellation that the layer answers.
type Outcome<T> = Result<T, Cancelled>;

pin_project! {
    #[project = StageProj]
    pub(super) enum Stage<F, B>
    where
        F: Future,
    {
        Ready { response: Option<Response<ScopedBody<B>>> },
        Inline { #[pin] run: ScopeRun<Checked<F>>, tracked: Option<Tracked> },
        Spawned { task: tokio::task::JoinHandle<Outcome<F::Output>> },
    }
}

pin_project! {
    /// The response future of [`RequestScopeService`].
    pub struct ResponseFuture<F, B>
    where
        F: Future,
    {
        pub(super) guard: Guard,
        #[pin]
        pub(super) stage: Stage<F, B>,
    }
}

impl<F: Future, B> ResponseFuture<F, B> {
    pub(super) fn ready(response: Response<ScopedBody<B>>) -> Self {
        ResponseFuture {
            guard: Guard { request: None },
            stage: Stage::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ScopedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = match this.stage.project() {
            StageProj::Ready { response } => {
                return Poll::Ready(Ok(response
                    .take()
                    .expect("a response future was polled after it completed")));
            }
            StageProj::Inline { run, tracked } => {
                let outcome = ready!(run.poll(cx));
                if let Some(tracked) = tracked.take() {
                    tracked.finish(outcome.is_ok());
                }
                outcome
            }
            StageProj::Spawned { task } => match ready!(Pin::new(task).poll(cx)) {
                Ok(outcome) => outcome,
                Err(error) => {
                    if error.is_panic() {
                        // The handler panicked: nothing to tell the scope.
                        this.guard.request = None;
                        std::panic::resume_unwind(error.into_panic());
                    }
                    // Aborted: the runtime is shutting down.
                    Err(Cancelled::new(CancelReason::Manual)
                        .with_message(Some("the runtime shut down".into())))
                }
            },
        };
        let Some(request) = this.guard.request.take() else {
            panic!("a response future was polled after it completed");
        };
        Poll::Ready(match outcome {
            Ok(Ok(response)) => Ok(response.map(ScopedBody::handler)),
            Ok(Err(error)) => Err(error),
            Err(cancelled) => Ok(request.cancelled(&cancelled)),
        })
    }
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_encoded_and_bounded() {
        assert_eq!(percent_encode("a 100% é", 100), "a 100%25 %C3%A9");
        let long = "é".repeat(10_000);
        let cut = percent_encode(&long, MAX_GRPC_MESSAGE);
        assert!(cut.len() <= MAX_GRPC_MESSAGE, "{}", cut.len());
        assert!(cut.starts_with("%C3%A9") && cut.ends_with("%E2%80%A6"));
        assert_eq!(cut.len() % 6, 9 % 6, "whole characters only");
        let exact = "a".repeat(MAX_GRPC_MESSAGE);
        assert_eq!(percent_encode(&exact, MAX_GRPC_MESSAGE), exact);
    }

    #[test]
    fn plain_answers_are_one_line() {
        assert_eq!(one_line("a\nb\r\u{1b}c"), "a\\nb\\r\\u{1b}c\n");
    }

    #[test]
    fn every_cause_has_a_slot() {
        for (index, cause) in CancelCause::ALL.into_iter().enumerate() {
            assert_eq!(cause.index(), index);
        }
    }
}
