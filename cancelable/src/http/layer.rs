//! `RequestScopeLayer`: every request in its own cancel scope.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};

use super::request::DeadlineSource;
use super::timeout_header::{
    parse_grpc_timeout, parse_http_timeout_named, TimeoutHeaderError, GRPC_TIMEOUT,
    X_REQUEST_TIMEOUT,
};
use super::tracker::Tracker;
#[cfg(doc)]
use super::RequestScope;
use super::{CLIENT_DISCONNECTED, SERVER_SHUTTING_DOWN};
use crate::{CancelReason, CancellationToken, Cancelled};

/// Why a request's scope was cancelled, as the layer tells it to the
/// client: each cause has its own HTTP status and gRPC code, set with
/// [`RequestScopeLayer::status`] and [`RequestScopeLayer::grpc_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelCause {
    /// The request's deadline passed: `504 Gateway Timeout`, gRPC
    /// `DEADLINE_EXCEEDED` (4).
    Deadline,
    /// The server token was cancelled (the server is shutting down):
    /// `503 Service Unavailable`, gRPC `UNAVAILABLE` (14).
    Shutdown,
    /// The client went away. Nobody receives the answer; it shows in logs
    /// as `499`, gRPC `CANCELLED` (1).
    ClientDisconnected,
    /// The scope was cancelled some other way — by an operator through the
    /// operations registry (`POST /operations/{id}/cancel` on the
    /// [`admin_router`](super::admin_router), or
    /// [`Registry::cancel`](crate::registry::Registry::cancel)) for a layer
    /// that [registers](RequestScopeLayer::register) its requests, or by
    /// the handler through its own handle: `503 Service Unavailable` with a
    /// body carrying the reason and the operator's message (`request
    /// cancelled: cancelled manually: <message>`), gRPC `CANCELLED` (1).
    Cancelled,
}

impl CancelCause {
    #[cfg(test)]
    pub(super) const ALL: [CancelCause; 4] = [
        CancelCause::Deadline,
        CancelCause::Shutdown,
        CancelCause::ClientDisconnected,
        CancelCause::Cancelled,
    ];

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// The cause of `cancelled`, as its reason and message tell it: one
    /// mapping for the layer's answers and for `From<Cancelled> for
    /// tonic::Status`. A client that left ([`CLIENT_DISCONNECTED`]), a
    /// timeout, a server shutdown ([`SERVER_SHUTTING_DOWN`], or a signal:
    /// the process is stopping), anything else. The layer also counts a
    /// cancel of its own server token as a shutdown.
    pub(super) fn of(cancelled: &Cancelled) -> CancelCause {
        let message = cancelled.message().unwrap_or_default();
        match cancelled.reason().root() {
            CancelReason::ClientDisconnected => CancelCause::ClientDisconnected,
            CancelReason::Manual if message == CLIENT_DISCONNECTED => {
                CancelCause::ClientDisconnected
            }
            CancelReason::Timeout => CancelCause::Deadline,
            CancelReason::Signal(_) => CancelCause::Shutdown,
            _ if message.starts_with(SERVER_SHUTTING_DOWN) => CancelCause::Shutdown,
            _ => CancelCause::Cancelled,
        }
    }

    /// The gRPC code answered for this cause unless configured otherwise.
    #[cfg(feature = "tonic")]
    pub(super) fn default_grpc_code(self) -> i32 {
        DEFAULT_GRPC_CODES[self.index()]
    }
}

/// `DEADLINE_EXCEEDED`, `UNAVAILABLE`, `CANCELLED`, `CANCELLED`.
const DEFAULT_GRPC_CODES: [i32; 4] = [4, 14, 1, 1];

/// The grace a [`DisconnectMode::Notify`] layer gives when none is set.
pub(super) const DEFAULT_NOTIFY_GRACE: Duration = Duration::from_secs(1);

impl fmt::Display for CancelCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelCause::Deadline => "deadline exceeded",
            CancelCause::Shutdown => "server shutting down",
            CancelCause::ClientDisconnected => "client disconnected",
            CancelCause::Cancelled => "request cancelled",
        })
    }
}

/// What happens to a handler whose client goes away before the response
/// is ready (hyper drops the response future: the connection closed, or
/// an HTTP/2 stream was reset).
///
/// | mode | handler | its token | work it started |
/// |---|---|---|---|
/// | [`Drop`](Self::Drop) | dropped at its current `.await` | cancelled | cancelled |
/// | [`Detach`](Self::Detach) | runs to completion (its deadline and the server's shutdown still apply) | untouched | untouched |
/// | [`Notify`](Self::Notify) | keeps running, dropped after the layer's [`grace`](RequestScopeLayer::grace) | cancelled | cancelled |
///
/// In each case the token is cancelled with reason
/// [`ClientDisconnected`](crate::CancelReason::ClientDisconnected) and the message
/// [`CLIENT_DISCONNECTED`](super::CLIENT_DISCONNECTED), so checkpoints
/// in the handler and tasks linked to the token learn why.
/// `Detach` and `Notify` run the handler in a task of its own on the
/// current tokio runtime (outside a tokio runtime they behave as `Drop`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectMode {
    /// Drop the handler, as hyper and axum do by themselves; its token is
    /// cancelled first, so work linked to it stops too.
    #[default]
    Drop,
    /// Let the handler run to completion; its answer is discarded.
    Detach,
    /// Cancel the handler's token, keep polling the handler for the
    /// layer's grace period so that it sees the cancellation at its next
    /// checkpoint and cleans up, then drop it. Without a
    /// [`grace`](RequestScopeLayer::grace) set, the grace is 1 s (with a
    /// zero grace set explicitly, the handler is dropped at once, as in
    /// `Drop`).
    Notify,
}

/// A tower [`Layer`](tower_layer::Layer) that runs each request in its own cancel scope.
///
/// The scope's deadline is the earliest of the layer's
/// [`timeout`](Self::timeout), an incoming `grpc-timeout` and the HTTP
/// timeout header (`x-request-timeout` by default, in milliseconds or
/// humantime form); a header sent several times counts with its earliest
/// value. A deadline that has passed on arrival (`x-request-timeout: 0`,
/// `grpc-timeout: 0n`) is answered at once without calling the handler,
/// and a handler that returns at or past its deadline — even one that
/// never yielded, so that no timer could fire — gets the deadline's answer,
/// not its own. It is cancelled with the server token, when the
/// deadline passes, and according to the [`DisconnectMode`] when the
/// client goes away. The handler runs inside the scope: it is the current
/// scope there, and a [`RequestScope`] in the request extensions.
///
/// A cancelled request is answered by the layer: `504` for a passed
/// deadline, `503` while shutting down, with a one-line `text/plain` body
/// that names the cause (for gRPC requests, `content-type:
/// application/grpc*`: `grpc-status` 4 or 14 and `grpc-message`). A
/// malformed timeout header is answered with `400` (gRPC:
/// `INVALID_ARGUMENT`) saying what format is expected, without calling
/// the handler.
///
/// The rule: once the request's scope is cancelled — its deadline passed,
/// the server token cancelled, the client gone, an operator's cancel —
/// the answer is the layer's, whatever the handler's future returns
/// afterwards: the error it returns on seeing the cancellation (even when
/// the cancel arrives from another thread during the very poll in which
/// it returns, and axum has already turned the error into a `200` or
/// `500` response), or a response it completes within the
/// [`grace`](Self::grace). Only a response the handler's future returned
/// before the cancellation is sent as the handler made it. The request's
/// operation then ends [`Cancelled`](crate::OperationStatus::Cancelled),
/// in a registry too ([`register`](Self::register)).
///
/// gRPC services: serve them through axum (tonic's
/// `Routes::into_axum_router()`, or axum routes calling
/// `tonic::server::Grpc`) with this layer. tonic's own
/// `transport::Server` enforces `grpc-timeout` itself, outside every
/// layer, and answers `CANCELLED` when it fires — a hair before this
/// layer's `DEADLINE_EXCEEDED` for the same deadline; the handler's scope
/// is then dropped with it.
///
/// The layer never touches the request body: it reaches the handler
/// untouched, however large or slow. It covers the handler's future, up to
/// the response head; a streaming response body is not part of the scope.
///
/// ```no_run
/// # #[cfg(feature = "axum")]
/// # async fn doc() -> std::io::Result<()> {
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use cancelable::{cancel_point, Cancelled};
/// use cancelable::http::{DisconnectMode, RequestScopeLayer};
///
/// async fn slow() -> Result<&'static str, String> {
///     for _ in 0..100 {
///         tokio::time::sleep(Duration::from_millis(100)).await;
///         // Leaves once the deadline passed or the client went away.
///         async { cancel_point!(); Ok::<_, Cancelled>(()) }.await.map_err(|c| c.to_string())?;
///     }
///     Ok("done")
/// }
///
/// let app = Router::new().route("/slow", get(slow)).layer(
///     RequestScopeLayer::new()
///         .timeout(Duration::from_secs(5))
///         .on_disconnect(DisconnectMode::Notify)
///         .grace(Duration::from_millis(500)),
/// );
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RequestScopeLayer {
    pub(super) config: Arc<Config>,
}

#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) timeout: Option<Duration>,
    pub(super) grpc_timeout: bool,
    pub(super) header: Option<HeaderName>,
    pub(super) server_token: Option<CancellationToken>,
    pub(super) disconnect: DisconnectMode,
    /// `None` until set: then [`DEFAULT_NOTIFY_GRACE`] for
    /// [`DisconnectMode::Notify`], none otherwise.
    pub(super) grace: Option<Duration>,
    pub(super) statuses: [StatusCode; 4],
    pub(super) grpc_codes: [i32; 4],
    /// The graceful shutdown that counts this layer's handlers, if any.
    pub(super) tracker: Option<Arc<Tracker>>,
    /// The registry each request's scope joins, if any.
    #[cfg(feature = "registry")]
    pub(super) registry: Option<crate::registry::Registry>,
}

impl Default for RequestScopeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestScopeLayer {
    /// A layer without a timeout of its own that honours `grpc-timeout`
    /// and `x-request-timeout`, drops handlers whose client went away
    /// ([`DisconnectMode::Drop`]) and has no grace period.
    pub fn new() -> Self {
        RequestScopeLayer {
            config: Arc::new(Config {
                timeout: None,
                grpc_timeout: true,
                header: Some(X_REQUEST_TIMEOUT),
                server_token: None,
                disconnect: DisconnectMode::Drop,
                grace: None,
                statuses: [
                    StatusCode::GATEWAY_TIMEOUT,
                    StatusCode::SERVICE_UNAVAILABLE,
                    // nginx's "client closed request"; always a valid code.
                    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                    StatusCode::SERVICE_UNAVAILABLE,
                ],
                grpc_codes: DEFAULT_GRPC_CODES,
                tracker: None,
                #[cfg(feature = "registry")]
                registry: None,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The server's own timeout for every request; a request asking for
    /// less (through its headers) gets less.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config().timeout = Some(timeout);
        self
    }

    /// Whether an incoming `grpc-timeout` sets the deadline (default: yes).
    pub fn grpc_timeout(mut self, honour: bool) -> Self {
        self.config().grpc_timeout = honour;
        self
    }

    /// The HTTP header that carries the client's timeout (default
    /// `x-request-timeout`): milliseconds (`2500`) or a humantime duration
    /// (`2.5s`, `1m30s`).
    pub fn timeout_header(mut self, name: HeaderName) -> Self {
        self.config().header = Some(name);
        self
    }

    /// Ignores HTTP timeout headers; only `grpc-timeout` (if honoured) and
    /// the layer's timeout set deadlines.
    pub fn without_timeout_header(mut self) -> Self {
        self.config().header = None;
        self
    }

    /// The server-wide token: cancelling it cancels every request scope
    /// (answered with `503`, [`CancelCause::Shutdown`]).
    /// [`GracefulShutdown::layer`](super::GracefulShutdown::layer) sets it.
    pub fn server_token(mut self, token: &CancellationToken) -> Self {
        self.config().server_token = Some(token.clone());
        self
    }

    /// Counts every handler in `tracker` until it ends (set by
    /// [`GracefulShutdown::layer`](super::GracefulShutdown::layer)).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(super) fn tracked_by(mut self, tracker: &Arc<Tracker>) -> Self {
        self.config().tracker = Some(tracker.clone());
        self
    }

    /// What happens to a handler whose client goes away.
    pub fn on_disconnect(mut self, mode: DisconnectMode) -> Self {
        self.config().disconnect = mode;
        self
    }

    /// How long a cancelled handler keeps running (its checkpoints report
    /// the cancellation, its cleanup runs) before it is dropped. Without
    /// one (the default) a cancelled handler is dropped at its current
    /// `.await`, as with `tokio::time::timeout` — except under
    /// [`DisconnectMode::Notify`], whose default grace is 1 s. The layer's answer for
    /// the cancellation is sent when the handler ends or the grace runs
    /// out — what the handler returns within the grace is dropped.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config().grace = Some(grace);
        self
    }

    /// The HTTP status answered for `cause`.
    pub fn status(mut self, cause: CancelCause, status: StatusCode) -> Self {
        self.config().statuses[cause.index()] = status;
        self
    }

    /// The gRPC status code (`grpc-status`) answered for `cause` to gRPC
    /// requests.
    pub fn grpc_code(mut self, cause: CancelCause, code: i32) -> Self {
        self.config().grpc_codes[cause.index()] = code;
        self
    }

    /// With `true`, every request's scope joins the process-wide
    /// [`registry::global`](crate::registry::global) while it runs (see
    /// [`register_in`](Self::register_in)); `false` (the default) leaves
    /// requests out of every registry.
    #[cfg(feature = "registry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
    pub fn register(self, register: bool) -> Self {
        match register {
            true => self.register_in(crate::registry::global()),
            false => self.unregistered(),
        }
    }

    /// Every request's scope joins `registry` while it runs: a live
    /// operation named after its route (`GET /users/{id}`, axum's matched
    /// path, else the request path) with the metadata `method` (`GET`) and
    /// `path` (the request's path, `/users/42`), and the parent of the
    /// registered operations its handler starts (`#[cancellable(register
    /// = true)]` functions). The [`admin_router`](super::admin_router)
    /// lists it under `GET /operations`, and `POST
    /// /operations/{id}/cancel` (or
    /// [`Registry::cancel`](crate::registry::Registry::cancel)) cancels
    /// it: the handler is cancelled like any other scope (dropped, or run
    /// for the layer's [`grace`](Self::grace)), and the client gets the
    /// status for [`CancelCause::Cancelled`] — `503` unless configured
    /// otherwise — with the reason and the operator's message in the body.
    /// A cancel with reason `timeout` counts as a passed deadline (`504`).
    ///
    /// Off by default: an unregistered request scope pays nothing for the
    /// registry; a registered one pays a registration at its start and
    /// exit, and a copy of its path when the path is not its route (the
    /// metadata `method` is not copied). The operation name is shared by
    /// the requests of a route: the process keeps the first 1,024 names
    /// (of at most 256 bytes) once, and formats any other per request.
    ///
    /// ```no_run
    /// # #[cfg(feature = "admin")]
    /// # async fn doc() -> std::io::Result<()> {
    /// use axum::{routing::get, Router};
    /// use cancelable::http::{admin_router, RequestScopeLayer};
    /// use cancelable::registry;
    ///
    /// let app = Router::new()
    ///     .route("/report", get(|| async { "done" }))
    ///     .layer(RequestScopeLayer::new().register_in(registry::global()))
    ///     // Mount it behind your own authentication.
    ///     .nest("/admin", admin_router(registry::global()));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    #[cfg(feature = "registry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "registry")))]
    pub fn register_in(mut self, registry: &crate::registry::Registry) -> Self {
        self.config().registry = Some(registry.clone());
        self
    }

    #[cfg(feature = "registry")]
    fn unregistered(mut self) -> Self {
        self.config().registry = None;
        self
    }
}

impl Config {
    /// The grace a cancelled handler gets: the one set, else
    /// [`DEFAULT_NOTIFY_GRACE`] in [`DisconnectMode::Notify`] (which would
    /// otherwise behave as `Drop`), else none.
    pub(super) fn grace(&self) -> Duration {
        match (self.grace, self.disconnect) {
            (Some(grace), _) => grace,
            (None, DisconnectMode::Notify) => DEFAULT_NOTIFY_GRACE,
            (None, _) => Duration::ZERO,
        }
    }

    /// The earliest deadline the request asks for, or a malformed header.
    pub(super) fn deadline_source(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<DeadlineSource>, TimeoutHeaderError> {
        let mut earliest = self.timeout.map(DeadlineSource::Server);
        let mut consider = |candidate: DeadlineSource| {
            if earliest
                .as_ref()
                .is_none_or(|current| candidate.timeout() < current.timeout())
            {
                earliest = Some(candidate);
            }
        };
        // Every value of a repeated header counts: the earliest wins.
        if self.grpc_timeout {
            for value in headers.get_all(GRPC_TIMEOUT) {
                consider(DeadlineSource::GrpcTimeout(parse_grpc_timeout(
                    value.as_bytes(),
                )?));
            }
        }
        if let Some(name) = &self.header {
            for value in headers.get_all(name) {
                let timeout = parse_http_timeout_named(name, value.as_bytes())?;
                consider(DeadlineSource::Header(name.clone(), timeout));
            }
        }
        Ok(earliest)
    }
}
