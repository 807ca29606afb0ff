//! What a handler sees of its request scope.

use std::fmt;
use std::time::{Duration, Instant};

use http::HeaderName;

use crate::{CancellationToken, ScopeHandle};

/// Where a request's deadline came from: the one that fires is named in
/// the `504` response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadlineSource {
    /// The layer's own timeout ([`RequestScopeLayer::timeout`](super::RequestScopeLayer::timeout)).
    Server(Duration),
    /// The request's `grpc-timeout` header.
    GrpcTimeout(Duration),
    /// The request's HTTP timeout header (`x-request-timeout` unless
    /// configured otherwise).
    Header(HeaderName, Duration),
}

impl DeadlineSource {
    /// The timeout this source asked for.
    pub fn timeout(&self) -> Duration {
        match self {
            DeadlineSource::Server(timeout)
            | DeadlineSource::GrpcTimeout(timeout)
            | DeadlineSource::Header(_, timeout) => *timeout,
        }
    }
}

impl fmt::Display for DeadlineSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadlineSource::Server(timeout) => {
                write!(f, "the server's request timeout of {timeout:?}")
            }
            DeadlineSource::GrpcTimeout(timeout) => {
                write!(f, "the request's `grpc-timeout` of {timeout:?}")
            }
            DeadlineSource::Header(name, timeout) => {
                write!(f, "the request's `{name}` of {timeout:?}")
            }
        }
    }
}

/// The scope a request runs in, put into the request's extensions by
/// [`RequestScopeLayer`](super::RequestScopeLayer): an axum extractor
/// (feature `axum`), and `request.extensions().get::<RequestScope>()` in
/// tonic handlers and plain tower services.
///
/// The handler's future also runs with this scope as the current scope, so
/// `cancel_point!()`, [`checkpoint`](crate::checkpoint),
/// [`current_token`](crate::current_token) and `#[cancellable]` functions
/// called from it see it without this value; the value is for work that
/// runs elsewhere (a spawned task) and for reading the remaining time.
///
/// ```no_run
/// # #[cfg(feature = "axum")]
/// # mod doc {
/// use cancelable::{cancel_point, http::RequestScope, Cancelled};
///
/// async fn export(scope: RequestScope) -> Result<String, String> {
///     // Work spawned onto another task is linked through the token.
///     let token = scope.token();
///     let worker = tokio::spawn(async move {
///         token.cancelled().await;
///     });
///     let mut rows = 0u64;
///     while rows < 1_000 {
///         rows += 1;
///         if rows % 100 == 0 {
///             scope.report_progress(rows as f64 / 1_000.0, format!("{rows} rows"));
///         }
///         tokio::task::yield_now().await;
///     }
///     worker.abort();
///     Ok(format!("{rows} rows, {:?} to spare", scope.remaining()))
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct RequestScope {
    pub(super) handle: ScopeHandle,
    pub(super) source: Option<DeadlineSource>,
}

impl RequestScope {
    /// The time left until the request's deadline (zero once it passed),
    /// or `None` without a deadline. Follows deadlines moved through
    /// [`handle`](Self::handle).
    pub fn remaining(&self) -> Option<Duration> {
        let deadline = self.deadline()?;
        Some(deadline.saturating_duration_since(now()))
    }

    /// The request's deadline, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.handle.effective_deadline()
    }

    /// Which deadline the request got, and from where.
    pub fn deadline_source(&self) -> Option<&DeadlineSource> {
        self.source.as_ref()
    }

    /// The scope's token: cancelled when the deadline passes, the server
    /// shuts down, or (in [`Notify`](super::DisconnectMode::Notify) and
    /// [`Drop`](super::DisconnectMode::Drop) modes) the client goes away.
    /// Hand it, or a [`child`](CancellationToken::child) of it, to work
    /// spawned onto other tasks.
    pub fn token(&self) -> CancellationToken {
        self.handle.cancel_token()
    }

    /// `true` once the request's scope is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.handle.is_cancelled()
    }

    /// Reports the request's progress to its scope (see
    /// [`report_progress`](crate::report_progress)), from anywhere.
    /// `fraction` is clamped to `0.0..=1.0`; a NaN counts as unknown.
    pub fn report_progress(&self, fraction: impl Into<Option<f64>>, message: impl Into<String>) {
        self.handle.report_progress(fraction, message);
    }

    /// The scope's handle: its id, context, status, and its deadline,
    /// which the handler may move.
    pub fn handle(&self) -> &ScopeHandle {
        &self.handle
    }
}

impl fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestScope")
            .field("id", &self.handle.id())
            .field("deadline", &self.source)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Now, on the crate's clock: tokio's on tokio (which scopes follow,
/// paused or not), the testing kit's manual clock while one is installed.
pub(super) use crate::seam::time::executor_now as now;
