//! Shielding: cleanup that cancellation from outside cannot interrupt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::current;
use crate::scope::hold::{Hold, HoldKind};

/// Runs `future` shielded from the cancellation of the scopes around it
/// (trio's shielded cancel scope): cleanup that must run to its end.
///
/// A shield stops outer cancellation from becoming visible inside it; it
/// does not detach the code inside from its scope:
///
/// * Checkpoints and `cancel_point!()` inside the shield do not report the
///   cancellation of the scopes around it, nor enforce their deadlines.
/// * The enclosing scope stays the current scope: [`current_scope`],
///   [`current_token`] and [`report_progress`] reach it (its context,
///   progress and `on_progress` callbacks), and
///   `current_scope().is_cancelled()` tells whether it was cancelled.
/// * A scope started inside the shield has the enclosing scope as its
///   parent (the `parent_id` of its context) but is neither cancelled with
///   it nor bound by its deadlines. Its own sources, deadline and handle
///   cancel it, and checkpoints inside it report that: start one to bound
///   the cleanup with a timeout of its own.
/// * [`current_token`] inside the shield is the enclosing scope's token,
///   which the shield does not keep from being cancelled: work linked to
///   it (a spawned task) is not shielded.
///
/// A scope that finds itself cancelled while a shield inside its body runs
/// (it looks each time it is polled):
///
/// * keeps polling its *whole* body until the shield is done: the other
///   branches of the body, such as the siblings of the shield in a `join!`,
///   keep running too, until they reach a checkpoint, which reports the
///   cancellation to them;
/// * then ends with its reason: `Err(Cancelled)`, status
///   [`Cancelled`](crate::OperationStatus::Cancelled), its `on_cancel`
///   callbacks run once. This holds even if the body completes right after
///   the shield (its value is then dropped) and if the shield is dropped
///   before it finishes. trio differs here: there a cancelled scope whose
///   body ends without reaching another checkpoint returns normally.
///
/// Otherwise the usual poll order holds: a body that completes in the very
/// poll during which its scope is cancelled returns its value, shield or not.
///
/// Nothing can protect against the whole scope future being *dropped* from
/// outside (an enclosing `select!` that picks another branch, a task that
/// is aborted): a shield only defers cancellation coming from sources.
///
/// [`current_scope`]: crate::current_scope
/// [`current_token`]: crate::current_token
/// [`report_progress`]: crate::report_progress
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use cancelable::{shield, CancelScope};
///
/// # futures::executor::block_on(async {
/// static FLUSHED: AtomicBool = AtomicBool::new(false);
/// let outcome = CancelScope::new()
///     .timeout(Duration::from_millis(5))
///     .run(async {
///         // The flush outlives the timeout, yet runs to its end.
///         shield(async {
///             async_io::Timer::after(Duration::from_millis(20)).await;
///             FLUSHED.store(true, Ordering::SeqCst);
///         })
///         .await;
///         // The scope timed out while the shield ran: this value is dropped.
///         "done"
///     })
///     .await;
/// assert!(FLUSHED.load(Ordering::SeqCst));
/// assert!(outcome.unwrap_err().is_timeout());
/// # });
/// ```
pub fn shield<F: Future>(future: F) -> Shielded<F> {
    Shielded { future, hold: None }
}

pin_project! {
    /// The future returned by [`shield`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Shielded<F> {
        #[pin]
        future: F,
        // Holds the scopes whose cancellation this shield hides open, from
        // its first poll until it is done or dropped.
        hold: Option<Hold>,
    }
}

impl<F: Future> Future for Shielded<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.hold.is_none() {
            *this.hold = Some(Hold::chain(HoldKind::Shield));
        }
        let future = this.future;
        let polled = current::enter_shield(|| future.poll(cx));
        if polled.is_ready() {
            // Released: a scope cancelled meanwhile can end now.
            *this.hold = None;
        }
        polled
    }
}

impl<F> fmt::Debug for Shielded<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shielded").finish_non_exhaustive()
    }
}
