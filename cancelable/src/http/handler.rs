//! What the layer wraps around a handler inside its request scope: the
//! clock read when it returns, and its panic recorded as a failure.
//!
//! The grace is not here: a request scope has the scope's own grace
//! ([`CancelScope::grace`](crate::CancelScope::grace)) with the policy
//! [`GraceValue::Replace`](crate::GraceValue::Replace), so a handler that
//! returns after its scope was cancelled — within the grace, or in the very
//! poll in which the cancel reaches it — ends with the cancellation, which
//! the layer answers with its status; only an output returned before the
//! cancellation is the answer.
//!
//! So is an output returned at or past the request's deadline: a handler
//! that never yielded could not be cancelled by its timer, so [`Checked`]
//! reads the clock when it returns and, if the deadline passed, cancels
//! the scope with [`Timeout`](crate::CancelReason::Timeout) before handing
//! the output to the scope, which then replaces it.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;

use crate::scope::seam;
use crate::seam::time;
use crate::{CancelReason, ScopeHandle, SourceError};

pin_project! {
    /// A handler run in its request scope (see the module docs).
    pub(super) struct Checked<F> {
        #[pin]
        handler: F,
        // The request's own deadline: an output returned at or past it
        // came too late, even if no timer could fire while the handler ran.
        deadline: Option<Instant>,
        scope: ScopeHandle,
    }
}

impl<F> Checked<F> {
    pub(super) fn new(handler: F, scope: &ScopeHandle, deadline: Option<Instant>) -> Self {
        Checked {
            handler,
            deadline,
            scope: scope.clone(),
        }
    }
}

impl<F: Future> Future for Checked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let handler = this.handler;
        let output = match catch_unwind(AssertUnwindSafe(|| handler.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => output,
            Err(payload) => {
                // A failure, not a cancellation: the operation records the
                // panic's message; the scope is cancelled with it (the work
                // the handler started stops), so that the response future,
                // dropped next, does not take it for a client that left.
                let text = format!(
                    "the handler panicked: {}",
                    crate::panic::payload_message(&*payload)
                );
                seam::record_error_text(this.scope, text.clone());
                this.scope
                    .cancel_with(CancelReason::Error(SourceError::new(text.clone())), text);
                resume_unwind(payload);
            }
        };
        let late = !seam::scope_cancel_recorded(this.scope)
            && this
                .deadline
                .is_some_and(|deadline| time::executor_now() >= deadline);
        if late {
            // Too late, as if the deadline had fired during its last poll:
            // the scope replaces the output with this cancellation.
            this.scope.cancel_with(
                CancelReason::Timeout,
                "the handler returned after its deadline",
            );
        }
        Poll::Ready(output)
    }
}
