//! axum: `RequestScope` as an extractor.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use super::RequestScope;

/// The rejection of the [`RequestScope`] extractor on a route that
/// [`RequestScopeLayer`](super::RequestScopeLayer) does not cover: a `500`
/// saying how to fix it. Extract `Option<RequestScope>` to accept both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingRequestScope;

impl std::fmt::Display for MissingRequestScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no request scope: this route is not covered by `RequestScopeLayer`; \
             add `.layer(cancelable::http::RequestScopeLayer::new())` to the router \
             (or extract `Option<RequestScope>`)",
        )
    }
}

impl std::error::Error for MissingRequestScope {}

impl IntoResponse for MissingRequestScope {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Extracts the request's scope, set by [`RequestScopeLayer`](super::RequestScopeLayer).
///
/// ```no_run
/// use cancelable::http::RequestScope;
///
/// async fn handler(scope: RequestScope) -> String {
///     format!("{:?} left", scope.remaining())
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
impl<S: Send + Sync> FromRequestParts<S> for RequestScope {
    type Rejection = MissingRequestScope;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestScope>()
            .cloned()
            .ok_or(MissingRequestScope)
    }
}

/// `Option<RequestScope>`: `None` on routes without the layer.
impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestScope {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<RequestScope>().cloned())
    }
}

/// A cancellation as an axum response, so that handlers can return
/// `Result<T, Cancelled>` (and use `cancel_point!()` and `?`): `504` for a
/// timeout, `499` for a client that went away, `503` otherwise (a signal,
/// the server shutting down), with the cancellation's `Display` as a
/// plain-text body.
///
/// When a request's deadline passes, a handler that runs `#[cancellable]`
/// functions (scopes nested in the request's scope) gets one more poll to
/// end with their error: this is then the answer, not the layer's own.
///
/// ```no_run
/// use cancelable::{cancel_point, Cancelled};
///
/// async fn handler() -> Result<&'static str, Cancelled> {
///     for _ in 0..100 {
///         cancel_point!();
///         tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     }
///     Ok("done")
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// ```
impl IntoResponse for crate::Cancelled {
    fn into_response(self) -> Response {
        let status = if self.is_timeout() {
            StatusCode::GATEWAY_TIMEOUT
        } else if matches!(
            self.reason().root(),
            crate::CancelReason::ClientDisconnected
        ) {
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, format!("{self}\n")).into_response()
    }
}
