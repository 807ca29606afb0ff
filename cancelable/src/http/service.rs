//! `RequestScopeService`: the `call` that puts each request in its scope
//! (and the `Layer` impl that makes it, so that `layer.rs` stays plain
//! configuration and the modules depend in one direction: service →
//! layer, future; future → layer).

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::body::ScopedBody;
use super::future::{bad_request, deadline_exceeded, Guard, Pending, ResponseFuture, Stage};
use super::handler::Checked;
use super::layer::{Config, DisconnectMode, RequestScopeLayer};
use super::names;
use super::request::{now, RequestScope};
#[cfg(feature = "registry")]
use crate::scope::seam;
use crate::{CancelScope, GracePolicy, GraceValue};

impl<S> Layer<S> for RequestScopeLayer {
    type Service = RequestScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestScopeService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`RequestScopeLayer`].
#[derive(Clone, Debug)]
pub struct RequestScopeService<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S> RequestScopeService<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: &RequestScopeLayer) -> Self {
        layer.layer(inner)
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequestScopeService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ScopedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = &self.config;
        let grpc = is_grpc(request.headers());
        let source = match config.deadline_source(request.headers()) {
            Ok(source) => source,
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::info!(%error, "request rejected");
                return ResponseFuture::ready(bad_request(&error, grpc));
            }
        };
        if let Some(source) = source.as_ref().filter(|source| source.timeout().is_zero()) {
            // Expired on arrival: answered without calling the handler.
            return ResponseFuture::ready(deadline_exceeded(config, Some(source), grpc));
        }
        let name = operation_name(&request);
        #[cfg(feature = "registry")]
        // The path is the route (a route without parameters, or no
        // matched path): the kept name's text, not a copy.
        let path = config.registry.as_ref().map(|_| {
            names::route_of(&name, request.method().as_str())
                .filter(|route| *route == request.uri().path())
                .map_or_else(|| request.uri().path().to_owned().into(), Cow::Borrowed)
        });
        let mut scope = CancelScope::new().name(name);
        #[cfg(feature = "registry")]
        if let (Some(registry), Some(path)) = (&config.registry, path) {
            seam::static_metadata(&mut scope, "method", method_name(request.method()));
            seam::static_metadata(&mut scope, "path", path);
            scope = scope.register_in(registry);
        }
        let deadline = source
            .as_ref()
            .and_then(|source| now().checked_add(source.timeout()));
        if let Some(deadline) = deadline {
            scope = scope.deadline(deadline);
        }
        if let Some(token) = &config.server_token {
            scope = scope.token(token);
        }
        let handle = scope.handle();
        request.extensions_mut().insert(RequestScope {
            handle: handle.clone(),
            source: source.clone(),
        });
        // The scope's grace; whatever the handler returns once its scope is
        // cancelled is replaced by the cancellation (see `handler.rs`).
        let grace = config.grace();
        if !grace.is_zero() {
            scope = scope.grace(grace);
        }
        let handler = Checked::new(self.inner.call(request), &handle, deadline);
        let run = scope
            .grace_policy(GracePolicy::new().value(GraceValue::Replace))
            .run(handler);
        let runtime = match config.disconnect {
            DisconnectMode::Drop => None,
            DisconnectMode::Detach | DisconnectMode::Notify => {
                tokio::runtime::Handle::try_current().ok()
            }
        };
        let tracked = config.tracker.as_ref().map(|tracker| tracker.start());
        let stage = match runtime {
            Some(runtime) => Stage::Spawned {
                // The task may outlive the response future (the client
                // left): it carries its place in the shutdown's count.
                task: runtime.spawn(async move {
                    let outcome = run.await;
                    if let Some(tracked) = tracked {
                        tracked.finish(outcome.is_ok());
                    }
                    outcome
                }),
            },
            None => Stage::Inline { run, tracked },
        };
        ResponseFuture {
            guard: Guard {
                request: Some(Pending {
                    handle,
                    source,
                    deadline,
                    grpc,
                    config: self.config.clone(),
                }),
            },
            stage,
        }
    }
}

/// `true` for gRPC requests (`content-type: application/grpc*`).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The operation's name: the method and the route (axum's matched path
/// when there is one, else the path), shared when it is one of the names
/// the process keeps (`names.rs`).
fn operation_name<B>(request: &Request<B>) -> Cow<'static, str> {
    #[cfg(feature = "axum")]
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| request.uri().path(), axum::extract::MatchedPath::as_str);
    #[cfg(not(feature = "axum"))]
    let route = request.uri().path();
    names::operation_name(request.method().as_str(), route)
}

/// The request method as metadata: the standard methods borrowed, with
/// nothing copied.
#[cfg(feature = "registry")]
fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    // Compared as methods (a tag each), not as text.
    let standard = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return method.as_str().to_owned().into(),
    };
    standard.into()
}
