//! Cancellation across services: request scopes for tower servers,
//! deadline propagation to outgoing calls, client-disconnect modes and
//! graceful shutdown (features `tower`, `axum`, `tonic`; tokio only).
//!
//! * [`RequestScopeLayer`] runs every request in a [`CancelScope`](crate::CancelScope)
//!   whose deadline is the earliest of a server default, an incoming
//!   `grpc-timeout` and an HTTP timeout header (`x-request-timeout`). The
//!   handler reaches it as the current scope ([`current_scope`](crate::current_scope),
//!   `cancel_point!()`, `#[cancellable]` functions nest under it) and as
//!   a [`RequestScope`] in the request extensions (an axum extractor with
//!   feature `axum`). When the deadline passes the answer is `504 Gateway
//!   Timeout`, or `grpc-status: 4` (`DEADLINE_EXCEEDED`) for gRPC, with a
//!   short message naming the deadline that fired; a malformed timeout
//!   header is a `400 Bad Request` saying what is expected. Once the scope
//!   is cancelled the answer is the layer's, whatever the handler returns
//!   afterwards; only a response returned before the cancellation is sent
//!   as it is.
//! * [`DisconnectMode`] says what happens to a handler whose client went
//!   away: dropped ([`Drop`](DisconnectMode::Drop), hyper's own
//!   behaviour), run to completion ([`Detach`](DisconnectMode::Detach)),
//!   or told through its token and given the layer's grace period
//!   ([`Notify`](DisconnectMode::Notify)).
//! * [`PropagateDeadlineLayer`] (any tower HTTP client: hyper, reqwest
//!   through tower, tonic channels) and, with feature `tonic`,
//!   [`DeadlineInterceptor`] send the current scope's remaining time, less
//!   a margin, as `grpc-timeout` or `x-request-timeout`; a call with less
//!   than the margin left is refused with a [`Cancelled`](crate::Cancelled)
//!   whose reason is [`Timeout`](crate::CancelReason::Timeout).
//! * [`GracefulShutdown`] (feature `axum`) serves an axum router until
//!   SIGINT or SIGTERM, then stops accepting, gives in-flight requests a
//!   grace, cancels them (`503 Service Unavailable`), and gives up at a
//!   hard deadline; a second signal ends it at once. It accounts for every
//!   handler it started, including those whose client left.
//! * [`admin_router`] (feature `admin`) shows and cancels the operations of
//!   a [`registry`](crate::registry) over HTTP, as JSON and as an operator's
//!   console in the browser — mounted behind your own authentication.
//!
//! Status codes and gRPC codes per cause (configurable with
//! [`RequestScopeLayer::status`] and [`RequestScopeLayer::grpc_code`]):
//!
//! | cause ([`CancelCause`]) | HTTP | gRPC |
//! |---|---|---|
//! | deadline passed | 504 | 4 `DEADLINE_EXCEEDED` |
//! | server shutting down ([`SERVER_SHUTTING_DOWN`], the server token, or a signal) | 503 | 14 `UNAVAILABLE` |
//! | client disconnected (logged only: nobody is listening) | 499 | 1 `CANCELLED` |
//! | the scope cancelled otherwise | 503 | 1 `CANCELLED` |
//! | malformed timeout header | 400 | 3 `INVALID_ARGUMENT` |
//!
//! The plain-text body is one line naming the cause (control characters
//! escaped); `grpc-message` is percent-encoded and at most 8 KiB. A
//! handler that panics is recorded as a failure with the panic's message
//! (the connection closes without an answer, as hyper does).
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn doc() -> std::io::Result<()> {
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use cancelable::http::{DisconnectMode, GracefulShutdown, RequestScope};
//!
//! async fn report(scope: RequestScope) -> String {
//!     format!("{:?} left", scope.remaining())
//! }
//!
//! let shutdown = GracefulShutdown::new().grace(Duration::from_secs(10));
//! let app = Router::new().route("/report", get(report)).layer(
//!     shutdown
//!         .layer()
//!         .timeout(Duration::from_secs(30))
//!         .on_disconnect(DisconnectMode::Notify)
//!         .grace(Duration::from_secs(1)),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let report = shutdown.serve(listener, app).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod body;
mod future;
mod handler;
mod layer;
mod names;
mod propagate;
mod request;
mod service;
mod timeout_header;
mod tracker;

#[cfg(feature = "admin")]
mod admin;
#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "axum")]
mod shutdown;
#[cfg(feature = "tonic")]
mod tonic;

pub use body::ScopedBody;
pub use future::ResponseFuture;
pub use layer::{CancelCause, DisconnectMode, RequestScopeLayer};
pub use propagate::{PropagateDeadline, PropagateDeadlineFuture, PropagateDeadlineLayer};
pub use request::{DeadlineSource, RequestScope};
pub use service::RequestScopeService;
pub use timeout_header::{
    format_grpc_timeout, format_http_timeout, parse_grpc_timeout, parse_http_timeout,
    TimeoutHeaderError, GRPC_TIMEOUT, X_REQUEST_TIMEOUT,
};

#[cfg(feature = "axum")]
pub use self::axum::MissingRequestScope;
#[cfg(feature = "tonic")]
pub use self::tonic::DeadlineInterceptor;
#[cfg(all(feature = "admin", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "admin", feature = "redis"))))]
pub use admin::cluster_admin_router;
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub use admin::{admin_router, ADMIN_CANCEL_MESSAGE};
#[cfg(feature = "axum")]
pub use shutdown::{GracefulShutdown, ShutdownOutcome, ShutdownReport};

/// The error type of the outgoing layers: the inner service's error, or a
/// [`Cancelled`](crate::Cancelled) (downcast to read its reason).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The message a scope is cancelled with when its client went away, beside
/// its reason [`CancelReason::ClientDisconnected`](crate::CancelReason::ClientDisconnected)
/// (match on the reason; the message is kept for code that read it).
pub const CLIENT_DISCONNECTED: &str = "client disconnected";

/// How the message of a server shutdown's cancellation starts
/// (`GracefulShutdown` cancels its server token with it): a
/// cancellation whose message starts so is a shutdown, answered `503` /
/// gRPC `UNAVAILABLE` by the layer and by `From<Cancelled> for
/// tonic::Status` alike.
pub const SERVER_SHUTTING_DOWN: &str = "server shutting down";
