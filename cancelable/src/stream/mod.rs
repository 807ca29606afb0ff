//! Streams that lose nothing when they are cancelled.
//!
//! [`CancellableStream`] (implemented for every [`Stream`]) binds a stream
//! to a token ([`cancellable`](CancellableStream::cancellable)), to a scope
//! ([`within`](CancellableStream::within)) or to the current scope
//! ([`within_current`](CancellableStream::within_current)). The adapter,
//! [`Cancellable`], ends (yields `None`) once the cancellation shows, and
//! can gather what the stream yields until then
//! ([`collect_until_cancelled`](Cancellable::collect_until_cancelled)).
//!
//! # The guarantee: nothing pulled is lost
//!
//! **Every item pulled from the inner stream reaches either the consumer or
//! the partial result, exactly once** — also when the consumer drives the
//! adapter through `select!` in a loop, where the `next()` future of the
//! losing branch is dropped:
//!
//! * the adapter checks the cancellation *before* it polls the inner
//!   stream, never after: once the inner stream has handed an item over,
//!   that item is returned, even if the cancellation arrived meanwhile;
//! * `next()` futures hold no item: an item exists only in the poll that
//!   returns it;
//! * a [`collect_until_cancelled`](Cancellable::collect_until_cancelled)
//!   future keeps what it gathers *in the adapter*: dropped before it
//!   finishes, it leaves its items there, and the next collect (or the
//!   next `next()`) returns them first;
//! * [`chunks_timeout`](CancellableStream::chunks_timeout) delivers the
//!   partial batch it holds when its stream ends, cancelled or not;
//! * after the cancellation, [`into_inner`](Cancellable::into_inner)
//!   gives the inner stream back, untouched, to resume it later
//!   (use [`into_parts`](Cancellable::into_parts) if a dropped collect may
//!   have left items in the adapter).
//!
//! Items are lost only with the adapter itself, if it is dropped while it
//! holds items a dropped collect left behind, or with a chunker holding a
//! partial batch. The guarantee is checked by property tests over random
//! cancellation points on every backend.
//!
//! # Which scope, which shield
//!
//! `within(&handle)` and `cancellable(&token)` watch what they are given,
//! wherever the adapter is polled, shield or not. `within_current()` binds
//! to the current scope when it is called, as a checkpoint would: inside a
//! [`shield`](crate::shield), the cancellation the shield hides does not
//! end the stream. Outside any scope it is an error, not a silent no-op.
//!
//! ```
//! use cancelable::CancellationToken;
//! use cancelable::stream::CancellableStream;
//! use futures::StreamExt;
//!
//! # futures::executor::block_on(async {
//! let token = CancellationToken::new();
//! let mut numbers = futures::stream::iter(1..=10).cancellable(&token);
//! assert_eq!(numbers.next().await, Some(1));
//! assert_eq!(numbers.next().await, Some(2));
//! token.cancel();
//! assert_eq!(numbers.next().await, None);
//! assert!(numbers.cancellation().is_some());
//!
//! // Nothing was lost: the rest is still there.
//! let rest: Vec<_> = numbers.into_inner().collect().await;
//! assert_eq!(rest, (3..=10).collect::<Vec<_>>());
//! # });
//! ```
//!
//! The adapter costs an atomic load per item over the bare stream.

use std::fmt;
use std::time::Duration;

use futures_core::Stream;

use crate::scope::ScopeHandle;
use crate::token::CancellationToken;
use crate::wait::Watch;

mod adapter;
mod chunks;
mod collect;

pub use adapter::Cancellable;
pub use chunks::ChunksTimeout;
pub use collect::{CollectLastUntilCancelled, CollectUntilCancelled, Partial, PartialTail};

/// How many items a collect gathers from an always-ready stream before it
/// yields to the executor once, so that timers and other tasks on its
/// thread run (and can cancel it).
pub(super) const YIELD_EVERY: u32 = 256;

/// Cancellation for any [`Stream`]; see the [module docs](self).
pub trait CancellableStream: Stream + Sized {
    /// Ends the stream when `token` is cancelled (with the token's reason
    /// and message).
    ///
    /// ```
    /// use cancelable::CancellationToken;
    /// use cancelable::stream::CancellableStream;
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let token = CancellationToken::new();
    /// token.cancel();
    /// let mut items = futures::stream::iter([1, 2]).cancellable(&token);
    /// assert_eq!(items.next().await, None);
    /// # });
    /// ```
    fn cancellable(self, token: &CancellationToken) -> Cancellable<Self> {
        Cancellable::new(self, Watch::token(token))
    }

    /// Ends the stream when the scope of `handle` is cancelled (reported
    /// as a checkpoint inside it reports it), wherever the stream is
    /// polled, shield or not.
    ///
    /// ```
    /// use cancelable::CancelScope;
    /// use cancelable::stream::CancellableStream;
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let scope = CancelScope::new();
    /// let mut items = futures::stream::iter([1, 2]).within(&scope.handle());
    /// scope.handle().cancel();
    /// assert_eq!(items.next().await, None);
    /// # });
    /// ```
    fn within(self, scope: &ScopeHandle) -> Cancellable<Self> {
        Cancellable::new(self, Watch::scope(scope.shared.clone()))
    }

    /// Ends the stream when the current scope is cancelled.
    ///
    /// Binds to the scope current *now*. Inside a [`shield`](crate::shield)
    /// the cancellation the shield hides does not end the stream, as it
    /// does not fail a checkpoint there.
    ///
    /// # Errors
    ///
    /// Outside any scope there is nothing to watch: [`NotInScope`], which
    /// hands the stream back.
    ///
    /// ```
    /// use cancelable::CancelScope;
    /// use cancelable::stream::CancellableStream;
    ///
    /// # futures::executor::block_on(async {
    /// let outside = futures::stream::iter([1, 2]).within_current();
    /// assert!(outside.is_err());
    ///
    /// CancelScope::new()
    ///     .run(async {
    ///         let items = futures::stream::iter([1, 2]).within_current().unwrap();
    ///         # drop(items);
    ///     })
    ///     .await
    ///     .unwrap();
    /// # });
    /// ```
    fn within_current(self) -> Result<Cancellable<Self>, NotInScope<Self>> {
        match Watch::current_now() {
            Some(watch) => Ok(Cancellable::new(self, watch)),
            None => Err(NotInScope { stream: self }),
        }
    }

    /// Groups the items in batches of `size`, or fewer when `timeout` has
    /// passed since the first item of the batch arrived, whichever comes
    /// first; when the stream ends — cancelled or not — the partial batch
    /// is delivered, not lost.
    ///
    /// A `size` of 0 counts as 1. On tokio the timeout follows tokio's
    /// clock. Apply it to a [`Cancellable`] to end the batches with the
    /// cancellation.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::CancellationToken;
    /// use cancelable::stream::CancellableStream;
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let batches: Vec<Vec<u32>> = futures::stream::iter(1..=5)
    ///     .chunks_timeout(2, Duration::from_secs(1))
    ///     .collect()
    ///     .await;
    /// assert_eq!(batches, [vec![1, 2], vec![3, 4], vec![5]]);
    /// # });
    /// ```
    fn chunks_timeout(self, size: usize, timeout: Duration) -> ChunksTimeout<Self> {
        ChunksTimeout {
            stream: self,
            size: size.max(1),
            timeout,
            batch: Vec::new(),
            timer: None,
            ended: false,
        }
    }
}

impl<S: Stream> CancellableStream for S {}

/// The error of [`within_current`](CancellableStream::within_current)
/// outside any scope; it hands the stream back.
pub struct NotInScope<S> {
    stream: S,
}

impl<S> NotInScope<S> {
    /// The stream that could not be bound.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S> fmt::Debug for NotInScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotInScope").finish_non_exhaustive()
    }
}

impl<S> fmt::Display for NotInScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "`within_current()` was called outside any cancel scope, so nothing could cancel \
             the stream: call it inside `CancelScope::run` or a `#[cancellable]` function, or \
             bind the stream with `.cancellable(&token)` or `.within(&scope_handle)`",
        )
    }
}

impl<S> std::error::Error for NotInScope<S> {}
