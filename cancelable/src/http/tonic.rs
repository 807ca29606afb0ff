//! tonic: the deadline-propagating interceptor and the status a
//! cancellation maps to.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Code, Request, Status};

use super::propagate::{outgoing, Outgoing};
use super::timeout_header::format_grpc_timeout;
use crate::Cancelled;

/// A tonic [`Interceptor`] that sends the current scope's remaining time,
/// less a margin (default 5 ms), as `grpc-timeout`, and refuses the call
/// with `DEADLINE_EXCEEDED` when no more than the margin is left (the
/// message is that of the [`Cancelled`], reason
/// [`Timeout`](crate::CancelReason::Timeout); tonic turns an interceptor's
/// status into a response, so only code and message reach the caller).
/// A request with a shorter timeout of its own keeps it.
///
/// The scope is the one current when the client call is polled, such as
/// the handler's [`RequestScope`](super::RequestScope). An interceptor
/// cannot watch the call once sent: to end it when the scope is cancelled
/// too, wrap the channel in
/// [`PropagateDeadlineLayer::grpc`](super::PropagateDeadlineLayer::grpc)
/// instead.
///
/// ```no_run
/// # fn doc<T>(channel: T) where T: Clone {
/// use tonic::service::interceptor::InterceptedService;
/// use cancelable::http::DeadlineInterceptor;
///
/// let channel = InterceptedService::new(channel, DeadlineInterceptor::new());
/// // let mut client = MyServiceClient::new(channel);
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DeadlineInterceptor {
    margin: Duration,
}

impl Default for DeadlineInterceptor {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadlineInterceptor {
    /// An interceptor with the default margin of 5 ms.
    pub fn new() -> Self {
        DeadlineInterceptor {
            margin: Duration::from_millis(5),
        }
    }

    /// The time kept back for the answer's way back.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }
}

impl Interceptor for DeadlineInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(Outgoing {
            timeout: Some(timeout),
            ..
        }) = outgoing(self.margin, std::time::Duration::from_nanos(1))?
        else {
            return Ok(request);
        };
        let own = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| super::parse_grpc_timeout(value.as_bytes()).ok());
        if own.is_none_or(|own| own > timeout) {
            if let Ok(value) = MetadataValue::try_from(format_grpc_timeout(timeout)) {
                request.metadata_mut().insert("grpc-timeout", value);
            }
        }
        Ok(request)
    }
}

/// A cancellation as a gRPC status, with the request layer's own mapping
/// (its default codes, see [`CancelCause`](super::CancelCause)):
/// `DEADLINE_EXCEEDED` for a timeout, `UNAVAILABLE` for a server shutdown
/// (a cancellation whose message starts with
/// [`SERVER_SHUTTING_DOWN`](super::SERVER_SHUTTING_DOWN), as
/// `GracefulShutdown`'s, whatever started it) or
/// a signal (the process is stopping), `CANCELLED` otherwise. The message is the cancellation's `Display`; the status's
/// source is the [`Cancelled`] itself. Lets tonic handlers use
/// `cancel_point!()` and `?` on a [`Cancelled`].
impl From<Cancelled> for Status {
    fn from(cancelled: Cancelled) -> Status {
        let code = Code::from_i32(super::CancelCause::of(&cancelled).default_grpc_code());
        let mut status = Status::new(code, cancelled.to_string());
        status.set_source(Arc::new(cancelled));
        status
    }
}
