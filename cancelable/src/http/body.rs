//! The response body of a request scope: the handler's own body, or the
//! short message the layer answers with.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body of a response from [`RequestScopeService`](super::RequestScopeService):
    /// the handler's body, streamed untouched, or the layer's own short
    /// message (a `504`, `503` or `400`; empty for gRPC, whose status
    /// travels in headers).
    pub struct ScopedBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Handler { #[pin] body: B },
        Message { message: Option<Bytes> },
    }
}

impl<B> ScopedBody<B> {
    pub(super) fn handler(body: B) -> Self {
        ScopedBody {
            inner: Inner::Handler { body },
        }
    }

    pub(super) fn message(message: impl Into<Bytes>) -> Self {
        let message = message.into();
        ScopedBody {
            inner: Inner::Message {
                message: (!message.is_empty()).then_some(message),
            },
        }
    }

    /// `true` if this is the layer's own answer, not the handler's body.
    pub fn is_from_layer(&self) -> bool {
        matches!(self.inner, Inner::Message { .. })
    }
}

impl<B> Body for ScopedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Handler { body } => body.poll_frame(cx),
            InnerProj::Message { message } => {
                Poll::Ready(message.take().map(|bytes| Ok(Frame::data(bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Handler { body } => body.is_end_stream(),
            Inner::Message { message } => message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Handler { body } => body.size_hint(),
            Inner::Message { message } => {
                SizeHint::with_exact(message.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for ScopedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Handler { .. } => f.write_str("ScopedBody::Handler(..)"),
            Inner::Message { message } => {
                f.debug_tuple("ScopedBody::Message").field(message).finish()
            }
        }
    }
}
