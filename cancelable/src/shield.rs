//! Shielding: cleanup that cancellation from outside cannot interrupt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::current;
use crate::scope::ScopeShared;
use crate::sync::Ordering;

/// Runs `future` shielded from the scopes around it (trio's shielded
/// scope): while it runs, a cancelled scope keeps polling its body until
/// the shielded part finishes, and only then ends with its reason.
///
/// Inside the shield no scope is current, so checkpoints there never fail
/// (start a new [`CancelScope`](crate::CancelScope) inside it to bound the
/// cleanup with its own timeout).
///
/// Nothing can protect against the whole scope future being *dropped* from
/// outside (an enclosing `select!` that picks another branch, a task that
/// is aborted): a shield only defers cancellation coming from sources.
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
///         std::future::pending::<()>().await
///     })
///     .await;
/// assert!(FLUSHED.load(Ordering::SeqCst));
/// assert!(outcome.unwrap_err().is_timeout());
/// # });
/// ```
pub fn shield<F: Future>(future: F) -> Shielded<F> {
    Shielded {
        future,
        scopes: None,
    }
}

pin_project! {
    /// The future returned by [`shield`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Shielded<F> {
        #[pin]
        future: F,
        // The scopes this shield holds open, from the innermost outwards.
        scopes: Option<Vec<Arc<ScopeShared>>>,
    }

    impl<F> PinnedDrop for Shielded<F> {
        fn drop(this: Pin<&mut Self>) {
            release(this.project().scopes);
        }
    }
}

fn release(scopes: &mut Option<Vec<Arc<ScopeShared>>>) {
    for scope in scopes.take().unwrap_or_default() {
        scope.shields.fetch_sub(1, Ordering::AcqRel);
        // A scope that was cancelled meanwhile can end now.
        scope.token.wake_owner();
    }
}

impl<F: Future> Future for Shielded<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.scopes.is_none() {
            let chain = current::current_chain();
            for scope in &chain {
                scope.shields.fetch_add(1, Ordering::AcqRel);
            }
            *this.scopes = Some(chain);
        }
        let future = this.future;
        let polled = current::enter(&mut None, || future.poll(cx));
        if polled.is_ready() {
            release(this.scopes);
        }
        polled
    }
}

impl<F> fmt::Debug for Shielded<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shielded").finish_non_exhaustive()
    }
}
