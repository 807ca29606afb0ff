//! Operating-system signals as cancellation sources.
//!
//! Every listening scope shares one OS registration per signal, made through
//! `signal-hook` on every backend (tokio's own signal driver cannot be
//! unregistered and would leave Ctrl-C swallowed for the rest of the
//! process). While no scope listens for a signal it keeps the disposition it
//! had before cancelable first listened: a Ctrl-C outside any `on_signal`
//! scope still ends the program, and a signal the process ignored (as
//! `nohup` does with SIGHUP) stays ignored.

use std::fmt;
use std::str::FromStr;

/// A signal a scope can listen for.
///
/// The set is closed: only signals that can be caught and that programs
/// conventionally use to ask for a stop can be named, so an unsupported
/// signal (SIGKILL, SIGSEGV, …) is not even expressible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
    /// `SIGTERM`: the polite request to stop sent by `kill`, systemd, Kubernetes.
    Terminate,
    /// `SIGHUP`: the terminal went away, or "reload" by convention.
    Hangup,
    /// `SIGQUIT`: Ctrl-\ in a terminal.
    Quit,
    /// `SIGUSR1`: user-defined.
    User1,
    /// `SIGUSR2`: user-defined.
    User2,
}

impl Signal {
    /// Every signal a scope can listen for.
    pub const ALL: [Signal; 6] = [
        Signal::Interrupt,
        Signal::Terminate,
        Signal::Hangup,
        Signal::Quit,
        Signal::User1,
        Signal::User2,
    ];

    /// The conventional name, such as `"SIGINT"`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
            Signal::User1 => "SIGUSR1",
            Signal::User2 => "SIGUSR2",
        }
    }

    /// The signal number on this platform.
    #[cfg(unix)]
    pub fn number(self) -> i32 {
        use signal_hook::consts::signal::*;
        match self {
            Signal::Interrupt => SIGINT,
            Signal::Terminate => SIGTERM,
            Signal::Hangup => SIGHUP,
            Signal::Quit => SIGQUIT,
            Signal::User1 => SIGUSR1,
            Signal::User2 => SIGUSR2,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Signal`] from a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSignalError {
    input: String,
}

impl fmt::Display for ParseSignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a signal a scope can listen for; expected one of SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2",
            self.input
        )
    }
}

impl std::error::Error for ParseSignalError {}

impl FromStr for Signal {
    type Err = ParseSignalError;

    /// Parses `"SIGINT"`, `"sigint"` or `"INT"` (any case, `SIG` optional).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let upper = input.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL
            .into_iter()
            .find(|signal| &signal.name()[3..] == bare)
            .ok_or_else(|| ParseSignalError {
                input: input.to_owned(),
            })
    }
}

pub(crate) use dispatch::{listen, SignalGuard};

#[cfg(unix)]
mod dispatch {
    use std::io;
    use std::sync::Arc;

    use signal_hook::iterator::{backend::Handle, Signals};
    use slab::Slab;

    use super::Signal;
    use crate::reason::SourceError;
    use crate::source::Sink;
    use crate::CancelReason;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The process-wide signal state: one OS registration per signal, made
    /// on first use and kept, and the scopes listening right now.
    struct Dispatcher {
        handle: Handle,
        signals: [SignalState; 6],
    }

    #[derive(Default)]
    struct SignalState {
        installed: bool,
        /// `true` while nobody listens: the handler then runs the signal's
        /// default action, as if cancelable had never touched it. `None`
        /// if the signal was ignored before we installed: it stays ignored.
        idle: Option<Arc<AtomicBool>>,
        listeners: Slab<Sink>,
    }

    static DISPATCHER: std::sync::Mutex<Option<Dispatcher>> = std::sync::Mutex::new(None);

    /// Keeps a scope listening for a signal; dropping it stops listening and,
    /// for the last listener, gives the signal its default behaviour back.
    pub(crate) struct SignalGuard {
        signal: Signal,
        key: usize,
    }

    impl Drop for SignalGuard {
        fn drop(&mut self) {
            let mut dispatcher = DISPATCHER.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(dispatcher) = dispatcher.as_mut() {
                let state = &mut dispatcher.signals[self.signal.index()];
                if state.listeners.contains(self.key) {
                    state.listeners.remove(self.key);
                }
                if state.listeners.is_empty() {
                    if let Some(idle) = &state.idle {
                        idle.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    /// Starts delivering `signal` to `sink`.
    pub(crate) fn listen(signal: Signal, sink: Sink) -> Result<SignalGuard, SourceError> {
        let mut guard = DISPATCHER.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(start().map_err(|error| {
                SourceError::with_cause(format!("cannot listen for {signal}"), error)
            })?);
        }
        let dispatcher = guard.as_mut().expect("dispatcher was just started");
        let state = &mut dispatcher.signals[signal.index()];
        if !state.installed {
            install(&dispatcher.handle, signal, state).map_err(|error| {
                SourceError::with_cause(format!("cannot install a handler for {signal}"), error)
            })?;
        }
        let key = state.listeners.insert(sink);
        if let Some(idle) = &state.idle {
            idle.store(false, Ordering::SeqCst);
        }
        Ok(SignalGuard { signal, key })
    }

    fn start() -> io::Result<Dispatcher> {
        let signals = Signals::new(std::iter::empty::<i32>())?;
        let handle = signals.handle();
        std::thread::Builder::new()
            .name("cancelable-signals".into())
            .spawn(move || deliver(signals))?;
        Ok(Dispatcher {
            handle,
            signals: Default::default(),
        })
    }

    fn install(handle: &Handle, signal: Signal, state: &mut SignalState) -> io::Result<()> {
        // The default-action fallback is registered first, so that with no
        // listener the signal acts before anything else sees it. It is
        // registered once: if adding the delivery below fails, the fallback
        // stays (idle, so the signal keeps its default) and a retry reuses it.
        if state.idle.is_none() && !ignored_at_start(signal) {
            let idle = Arc::new(AtomicBool::new(true));
            signal_hook::flag::register_conditional_default(signal.number(), idle.clone())?;
            state.idle = Some(idle);
        }
        handle.add_signal(signal.number())?;
        state.installed = true;
        Ok(())
    }

    /// Whether the process ignores `signal` right now (Linux: read from
    /// `/proc/self/status`; elsewhere assume it does not).
    fn ignored_at_start(signal: Signal) -> bool {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return false;
        };
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigIgn:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1u64 << (signal.number() - 1)) != 0)
    }

    fn deliver(mut signals: Signals) {
        for number in signals.forever() {
            let Some(signal) = Signal::ALL.into_iter().find(|s| s.number() == number) else {
                continue;
            };
            let sinks: Vec<Sink> = {
                let dispatcher = DISPATCHER.lock().unwrap_or_else(|p| p.into_inner());
                match dispatcher.as_ref() {
                    Some(d) => d.signals[signal.index()]
                        .listeners
                        .iter()
                        .map(|(_, sink)| sink.clone())
                        .collect(),
                    None => Vec::new(),
                }
            };
            for sink in sinks {
                sink.fire(CancelReason::Signal(signal));
            }
        }
    }
}

#[cfg(not(unix))]
mod dispatch {
    use super::Signal;
    use crate::reason::SourceError;
    use crate::source::Sink;

    /// Placeholder guard: signals are not supported on this platform.
    pub(crate) struct SignalGuard;

    pub(crate) fn listen(signal: Signal, _sink: Sink) -> Result<SignalGuard, SourceError> {
        Err(SourceError::new(format!(
            "cannot listen for {signal}: signals are supported on Unix only"
        )))
    }
}
