//! The layer's grace period: a cancelled request scope keeps polling its
//! handler for a while, so that checkpoints report the cancellation and
//! cleanup runs, then drops it.
//!
//! A scope drops its body as soon as it is cancelled, unless a shield
//! inside the body holds it open (see [`shield`](crate::shield)). The
//! handler must *see* the cancellation, so it cannot run shielded; instead
//! [`Graced`] holds the scope open the same way a shield does — it counts
//! itself among the scope's shields — without hiding anything from the
//! code inside, and lets go when the handler ends or the grace runs out.
//! The scope then ends with its reason, as it does after a shield.
//!
//! [`Graced`] also decides whether the handler's output counts: a handler
//! that returns after its scope was cancelled — within the grace, or in
//! the very poll in which the cancel reaches the scope (its checkpoint saw
//! it and it returned its error at once) — ends with the cancellation,
//! which the layer answers with its status; only an output returned
//! before the cancellation is the answer. So does an output returned at
//! or past the request's deadline: a handler that never yielded could not
//! be cancelled by its timer, so the clock is read when it returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

use super::request::now;
use crate::scope::ScopeShared;
use crate::sync::Ordering;
use crate::{CancellationToken, Cancelled, ScopeHandle, WaitForCancellationOwned};

/// Holds a scope open after its cancellation while it lives.
struct Hold(Arc<ScopeShared>);

impl Hold {
    fn new(handle: &ScopeHandle) -> Self {
        handle.shared.shields.fetch_add(1, Ordering::AcqRel);
        Hold(handle.shared.clone())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.shields.fetch_sub(1, Ordering::AcqRel);
        // A scope cancelled meanwhile can end now.
        self.0.token.wake_owner();
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F> {
        Running { #[pin] handler: F },
        Dropped,
    }
}

pin_project! {
    /// A handler run with a grace period: `Ok(output)` if it ends before
    /// its scope is cancelled, `Err` with the cancellation if it ends after
    /// it (its output is dropped) or the grace runs out (the handler is
    /// dropped then, before this returns). Run in its scope with
    /// [`try_run`](crate::CancelScope::try_run), so that an `Err` is
    /// recorded as the scope's cancellation.
    pub(super) struct Graced<F> {
        #[pin]
        state: State<F>,
        grace: Duration,
        // The request's own deadline: an output returned at or past it
        // came too late, even if no timer could fire while the handler
        // ran (it never yielded).
        deadline: Option<Instant>,
        // The scope's token.
        token: CancellationToken,
        shared: Arc<ScopeShared>,
        // `None` without a grace: the scope then drops the handler at once.
        hold: Option<Hold>,
        cancelled: Option<WaitForCancellationOwned>,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> Graced<F> {
    /// Must be created before the scope runs (the hold has to be in place
    /// when the scope first looks at its cancellation).
    pub(super) fn new(
        handler: F,
        handle: &ScopeHandle,
        grace: Duration,
        deadline: Option<Instant>,
    ) -> Self {
        let graced = !grace.is_zero();
        let token = handle.cancel_token();
        Graced {
            state: State::Running { handler },
            grace,
            deadline,
            shared: handle.shared.clone(),
            hold: graced.then(|| Hold::new(handle)),
            cancelled: graced.then(|| token.clone().cancelled_owned()),
            token,
            timer: None,
        }
    }
}

/// The scope's cancellation, as soon as a cancel has recorded its cause —
/// possibly while it still reaches the scopes inside, as the scope itself
/// counts it when its body returns.
fn cancellation(token: &CancellationToken) -> Option<Cancelled> {
    token
        .recorded_cause()
        .map(|cause| Cancelled::new(cause.reason).with_message(cause.message))
}

/// The cancellation of a scope known to be cancelled.
fn cancelled(token: &CancellationToken) -> Cancelled {
    cancellation(token).unwrap_or_else(|| Cancelled::new(crate::CancelReason::Manual))
}

impl<F: Future> Future for Graced<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let StateProj::Running { handler } = this.state.as_mut().project() else {
            return Poll::Ready(Err(cancelled(this.token)));
        };
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.poll(cx)));
        let polled = match polled {
            Ok(polled) => polled,
            Err(payload) => {
                // A failure, not a cancellation: the operation records the
                // panic's message; the token is cancelled with it (the work
                // the handler started stops), so that the response future,
                // dropped next, does not take it for a client that left.
                let text = format!(
                    "the handler panicked: {}",
                    crate::panic::payload_message(&*payload)
                );
                this.shared.record_error_text(text.clone());
                this.token.cancel_with(
                    crate::CancelReason::Error(crate::SourceError::new(text.clone())),
                    text,
                );
                this.hold.take();
                std::panic::resume_unwind(payload);
            }
        };
        if let Poll::Ready(output) = polled {
            let outcome = match cancellation(this.token) {
                // Cancelled before the handler returned — maybe in this very
                // poll, from another thread, while a checkpoint of the
                // handler reported it: the output is the cancellation's
                // doing, and the answer is the cancellation's.
                Some(cancelled) => {
                    drop(output);
                    Err(cancelled)
                }
                // Returned at or past its deadline: too late, as if the
                // deadline had fired during its last poll.
                None if this.deadline.is_some_and(|deadline| now() >= deadline) => {
                    drop(output);
                    this.token.cancel_with(
                        crate::CancelReason::Timeout,
                        "the handler returned after its deadline",
                    );
                    Err(cancelled(this.token))
                }
                None => Ok(output),
            };
            this.hold.take();
            return Poll::Ready(outcome);
        }
        // Without a hold the scope itself drops the handler when cancelled.
        if this.hold.is_none() {
            return Poll::Pending;
        }
        if let Some(cancelled) = this.cancelled {
            // Wakes this task when the scope is cancelled, so that the grace
            // starts even if the handler waits on something else.
            if Pin::new(cancelled).poll(cx).is_pending() {
                return Poll::Pending;
            }
            *this.cancelled = None;
        }
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(*this.grace)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The grace ran out: drop the handler, then let the scope end.
        this.state.project_replace(State::Dropped);
        this.hold.take();
        Poll::Ready(Err(cancelled(this.token)))
    }
}
