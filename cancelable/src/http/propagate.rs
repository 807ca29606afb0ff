//! Outgoing deadline propagation: the current scope's remaining time, less
//! a margin, travels with every request a client sends.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::request::now;
use super::timeout_header::{
    format_grpc_timeout, format_http_timeout, header_value, parse_grpc_timeout,
    parse_http_timeout_named, GRPC_TIMEOUT, X_REQUEST_TIMEOUT,
};
use super::BoxError;
use crate::{current_scope, CancelReason, CancellationToken, Cancelled, WaitForCancellationOwned};

/// The margin kept by default for the way back: 5 ms.
const DEFAULT_MARGIN: Duration = Duration::from_millis(5);

/// How the timeout is written.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Format {
    Grpc,
    Http(HeaderName),
}

/// What an outgoing call takes from the current scope.
pub(super) struct Outgoing {
    /// The timeout to send, if the scope has a deadline.
    pub(super) timeout: Option<Duration>,
    /// The scope's token, which ends the call when cancelled.
    pub(super) token: CancellationToken,
}

/// The timeout to send from the calling code's current scope, if it has a
/// deadline: `Ok(None)` outside a scope or without a deadline, an error
/// once the scope is cancelled or less than `margin` remains.
///
/// `unit` is the smallest timeout the header can carry (1 ms for
/// `x-request-timeout`): less than that beyond the margin would be sent
/// as `0`, which many proxies read as "no timeout", so it is refused too.
pub(super) fn outgoing(margin: Duration, unit: Duration) -> Result<Option<Outgoing>, Cancelled> {
    let Some(scope) = current_scope() else {
        return Ok(None);
    };
    let token = scope.cancel_token();
    token.check()?;
    let Some(deadline) = scope.effective_deadline() else {
        return Ok(Some(Outgoing {
            timeout: None,
            token,
        }));
    };
    let remaining = deadline.saturating_duration_since(now());
    match remaining.checked_sub(margin) {
        Some(timeout) if !timeout.is_zero() && timeout >= unit => Ok(Some(Outgoing {
            timeout: Some(timeout),
            token,
        })),
        _ => Err(Cancelled::new(CancelReason::Timeout).with_message(Some(
            format!(
                "not sent: {remaining:?} left before the deadline, no more than the margin of {margin:?}{}",
                match unit > Duration::from_nanos(1) {
                    true => format!(" plus {unit:?}, the least the header can carry"),
                    false => String::new(),
                }
            )
            .into(),
        ))),
    }
}

/// A tower [`Layer`] for HTTP and gRPC clients that sends the current
/// scope's remaining time, less a margin, with every request: as
/// `x-request-timeout` in milliseconds ([`http`](Self::http), the header
/// name configurable) or as `grpc-timeout` ([`grpc`](Self::grpc)).
///
/// * A request carrying a shorter timeout of its own keeps it.
/// * With less than the margin left (default 5 ms) — for
///   `x-request-timeout`, less than the margin plus 1 ms, as the header
///   would otherwise say `0`, which many proxies read as "no timeout" — or
///   once the scope is cancelled, the request is not sent: the call fails with a
///   [`Cancelled`] whose reason is [`Timeout`](CancelReason::Timeout) (or
///   the scope's reason).
/// * While the request is in flight, the scope's cancellation ends the
///   call with that [`Cancelled`].
///
/// The scope is the one current where the service is *called* (inside a
/// handler run by [`RequestScopeLayer`](super::RequestScopeLayer), or any
/// [`CancelScope`](crate::CancelScope)); outside a scope requests go out
/// unchanged. Errors are boxed ([`BoxError`]): downcast to [`Cancelled`].
///
/// ```no_run
/// # async fn doc() -> Result<(), cancelable::http::BoxError> {
/// use std::time::Duration;
/// use cancelable::http::PropagateDeadlineLayer;
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::{Layer, Service, ServiceExt};
///
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
/// let mut client = PropagateDeadlineLayer::http()
///     .margin(Duration::from_millis(2))
///     .layer(client);
/// let request = http::Request::get("http://127.0.0.1:3000/work").body(Empty::new())?;
/// // Inside a request scope: the downstream service gets our deadline.
/// let response = client.ready().await?.call(request).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateDeadlineLayer {
    format: Format,
    margin: Duration,
}

impl PropagateDeadlineLayer {
    /// Sends `x-request-timeout: <milliseconds>`.
    pub fn http() -> Self {
        PropagateDeadlineLayer {
            format: Format::Http(X_REQUEST_TIMEOUT),
            margin: DEFAULT_MARGIN,
        }
    }

    /// Sends `grpc-timeout` (for tonic channels and other gRPC clients).
    pub fn grpc() -> Self {
        PropagateDeadlineLayer {
            format: Format::Grpc,
            margin: DEFAULT_MARGIN,
        }
    }

    /// Sends the timeout in milliseconds under another header name.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.format = Format::Http(name);
        self
    }

    /// The time kept back for the answer's way back (default 5 ms): the
    /// downstream service gets the remaining time less this, and no
    /// request is sent with less than this left.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            format: self.format.clone(),
            margin: self.margin,
        }
    }
}

/// The service of [`PropagateDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
    format: Format,
    margin: Duration,
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateDeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let unit = match self.format {
            Format::Grpc => Duration::from_nanos(1),
            Format::Http(_) => Duration::from_millis(1),
        };
        let Outgoing { timeout, token } = match outgoing(self.margin, unit) {
            Ok(Some(outgoing)) => outgoing,
            Ok(None) => {
                return PropagateDeadlineFuture {
                    call: Some(self.inner.call(request)),
                    token: None,
                    cancelled: None,
                    refused: None,
                }
            }
            Err(cancelled) => {
                return PropagateDeadlineFuture {
                    call: None,
                    token: None,
                    cancelled: None,
                    refused: Some(cancelled),
                }
            }
        };
        if let Some(timeout) = timeout {
            let headers = request.headers_mut();
            let (name, own, formatted) = match &self.format {
                Format::Grpc => (
                    GRPC_TIMEOUT,
                    headers
                        .get(GRPC_TIMEOUT)
                        .and_then(|value| parse_grpc_timeout(value.as_bytes()).ok()),
                    format_grpc_timeout(timeout),
                ),
                Format::Http(name) => (
                    name.clone(),
                    headers
                        .get(name)
                        .and_then(|value| parse_http_timeout_named(name, value.as_bytes()).ok()),
                    format_http_timeout(timeout),
                ),
            };
            if own.is_none_or(|own| own > timeout) {
                if let Some(value) = header_value(formatted) {
                    headers.insert(name, value);
                }
            }
        }
        PropagateDeadlineFuture {
            call: Some(self.inner.call(request)),
            cancelled: Some(token.clone().cancelled_owned()),
            token: Some(token),
            refused: None,
        }
    }
}

pin_project! {
    /// The response future of [`PropagateDeadline`].
    pub struct PropagateDeadlineFuture<F> {
        #[pin]
        call: Option<F>,
        token: Option<CancellationToken>,
        cancelled: Option<WaitForCancellationOwned>,
        refused: Option<Cancelled>,
    }
}

impl<F, T, E> Future for PropagateDeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Err(refused.into()));
        }
        let Some(call) = this.call.as_mut().as_pin_mut() else {
            panic!("a propagate-deadline future was polled after it completed");
        };
        if let Poll::Ready(outcome) = call.poll(cx) {
            this.call.set(None);
            return Poll::Ready(outcome.map_err(Into::into));
        }
        if let (Some(cancelled), Some(token)) = (this.cancelled, this.token.as_ref()) {
            if Pin::new(cancelled).poll(cx).is_ready() {
                // The scope was cancelled: the call is dropped, the
                // request with it.
                this.call.set(None);
                let cancelled = token.cancellation();
                let cancelled = match cancelled.message() {
                    Some(_) => cancelled,
                    None => cancelled.with_message(Some(
                        "the calling scope was cancelled while the request was in flight".into(),
                    )),
                };
                return Poll::Ready(Err(cancelled.into()));
            }
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for PropagateDeadlineFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateDeadlineFuture")
            .finish_non_exhaustive()
    }
}
