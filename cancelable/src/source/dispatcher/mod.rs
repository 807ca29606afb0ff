//! The process-wide signal dispatcher: one `sigaction` handler per signal,
//! shared by every listening scope, and the delivery thread that fires
//! them. The rules it follows for users are in the `signal` module's docs.

#[cfg(feature = "axum")]
pub(crate) use dispatch::watch;
pub(crate) use dispatch::{listen, SignalGuard};

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::signal::Signal;
use crate::{CancelReason, CancellationToken};

/// The arrivals of a set of signals, for one owner that handles every
/// arrival itself — the services layer's graceful shutdown, whose second
/// signal ends it at once. The n-th arrival of any of the watched signals
/// cancels the n-th token (reason [`CancelReason::Signal`]); later ones
/// are only counted. A watch never counts as a scope cleaning up: while
/// it lives, an arrival is the owner's, never the default action's, even
/// two arrivals delivered at once.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct Arrivals {
    tokens: Vec<CancellationToken>,
    next: AtomicUsize,
}

#[cfg_attr(not(feature = "axum"), allow(dead_code))]
impl Arrivals {
    pub(crate) fn new(tokens: Vec<CancellationToken>) -> Arrivals {
        Arrivals {
            tokens,
            next: AtomicUsize::new(0),
        }
    }

    fn arrive(&self, signal: Signal) {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        if let Some(token) = self.tokens.get(index) {
            token.cancel_with(CancelReason::Signal(signal), format!("received {signal}"));
        }
    }
}

// The one part of the crate with `unsafe`, with `dispatch` below.
#[cfg(unix)]
#[allow(unsafe_code)]
mod disposition;
#[cfg(unix)]
#[allow(unsafe_code)]
mod errno;

/// The process-wide dispatcher (Unix).
///
/// # Protocol
///
/// The handler (`handle`) runs in signal context: it touches only its
/// signal's lock-free `Slot` (atomics) and makes async-signal-safe calls
/// (`sigaction`, `raise`, `write`). Everything else runs outside signal
/// context, under the `DISPATCHER` mutex:
///
/// 1. `listen` installs the handler (on first use, and again after a
///    restore), recording the replaced disposition in the slot *before*
///    the handler can run, then registers the listener and counts it in
///    `listening`.
/// 2. The handler counts the arrival and calls the replaced handler if it
///    was a function (a one-shot one only once: see `Previous`). While
///    someone listens, it writes a byte to the wake pipe. While nobody listens, or while a
///    scope the signal reached earlier still cleans up (`cleaning`), it
///    does what the replaced disposition does: if that was the default and
///    cancelable's handler is the installed one, it resets the default and
///    raises the signal again (a later handler that chained to ours owns
///    the signal: then nothing).
/// 3. The delivery thread, woken through the pipe, fires the sinks of the
///    listeners registered before the arrival (`arrivals` tells) and
///    counts them in `cleaning` until their guard is dropped. Arrivals are
///    counted, never coalesced: a listener that two or more arrivals reach
///    before the thread runs is reached a first and a second time at once,
///    and the second takes the replaced disposition's action (step 2's
///    "cleaning" case) as if the thread had run in between.
/// 4. When the last listener leaves and cancelable's handler is still the
///    installed one, the replaced disposition is put back; otherwise the
///    handler stays in the chain and passes signals on (step 2).
#[cfg(unix)]
// The one module of the crate with `unsafe`: installing, reading and
// restoring dispositions with `sigaction`, and the handler itself. The
// child-process tests in `tests/tests/signals.rs` check every rule of the
// module docs against real handlers (tokio, signal-hook, `sigaction`).
#[allow(unsafe_code)]
mod dispatch;

#[cfg(not(unix))]
mod dispatch {
    use crate::reason::SourceError;
    use crate::signal::{SecondSignal, Signal};
    use crate::source::Sink;

    /// Placeholder guard: signals are not supported on this platform.
    pub(crate) struct SignalGuard;

    impl SignalGuard {
        pub(crate) fn stop_listening(&mut self) {}

        pub(crate) fn reached_again(&self) -> bool {
            false
        }
    }

    pub(crate) fn listen(
        signal: Signal,
        _sink: Sink,
        _second: SecondSignal,
    ) -> Result<SignalGuard, SourceError> {
        Err(SourceError::new(format!(
            "cannot listen for {signal}: signals are supported on Unix only"
        )))
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn watch(
        signal: Signal,
        _arrivals: std::sync::Arc<super::Arrivals>,
    ) -> Result<SignalGuard, SourceError> {
        Err(SourceError::new(format!(
            "cannot listen for {signal}: signals are supported on Unix only"
        )))
    }
}
