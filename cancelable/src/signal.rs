//! Operating-system signals as cancellation sources.
//!
//! A scope listening for a signal (`on_signal`, [`Source::signal`]) is
//! cancelled with [`CancelReason::Signal`] by each arrival of that signal
//! while it listens: from its first poll until its body has ended
//! (shielded parts included). Listening scopes share one handler per
//! signal, installed with `sigaction` on every backend when the first
//! scope listens (tokio's own signal driver can never be unregistered and
//! would leave Ctrl-C swallowed for the rest of the process). Cancelable
//! remembers the disposition that handler replaced — the default action,
//! "ignore", or the application's own handler — and follows three rules.
//!
//! **While no scope listens, a signal behaves exactly as if cancelable had
//! never listened.** When the last scope stops listening and cancelable's
//! handler is still the installed one, the replaced disposition is put
//! back, exactly (handler, flags, mask). If the application installed a
//! handler since (tokio's `signal`/`ctrl_c`, signal-hook and most others
//! chain to the handler they replace), cancelable's handler stays in that
//! chain and passes the signal on: to the replaced handler if there was
//! one, else nowhere — the later handler owns the signal, as it would
//! without cancelable. So the application's handler runs and the process
//! lives, whether it was installed before or after cancelable's first
//! use; with no handler the default action happens (Ctrl-C ends the
//! program); a signal the process ignores (a shell's background job,
//! `nohup`) stays ignored.
//!
//! **While a scope listens, the signal cancels it and no handler misses
//! it.** A handler that cancelable replaced is still called for every
//! arrival (handlers installed later run first anyway), so the
//! application's own Ctrl-C handling sees each Ctrl-C too. What the signal
//! no longer does is the default action: the first Ctrl-C cancels the
//! listening scopes instead of ending the program. An ignored signal
//! cancels the listening scopes and is otherwise still ignored.
//!
//! **A second signal during cleanup does what it would do without
//! cancelable** (the command-line convention: the first Ctrl-C asks to
//! stop, the second one forces). An arrival is a second signal when a
//! scope that an earlier arrival of the same signal reached has not
//! finished yet: its body still runs (a [`shield`](crate::shield)ed
//! cleanup) or its `on_cancel` callbacks do. It then takes the replaced
//! disposition's action: the default action (a second Ctrl-C ends the
//! program, killed by SIGINT), the application's handler (which every
//! arrival reaches anyway), or nothing for an ignored signal. It also
//! cancels the scopes listening for it that it reaches first.
//!
//! Arrivals are counted, not merged: two signals that come faster than
//! cancelable's delivery thread runs are a first and a second one. A
//! replaced handler installed with `SA_RESETHAND` (one-shot) is called
//! once, as the kernel would call it, even when two threads take the
//! signal at the same moment.
//!
//! A handler installed after cancelable's that does *not* chain to the one
//! it replaced (the `ctrlc` crate) takes the signal over for the whole
//! process: scopes no longer see it.
//!
//! **Platforms.** Signals are supported on Unix. The handler preserves the
//! interrupted code's `errno` on Linux, Android, the BSDs and Apple
//! platforms; on other Unix targets (Solaris and illumos, AIX, Haiku, ...)
//! it does not, so a system call interrupted by a signal a scope listens
//! for may see `errno` changed by the handler's own `write`.
//!
//! [`Source::signal`]: crate::Source::signal
//! [`CancelReason::Signal`]: crate::CancelReason::Signal

use std::fmt;
use std::str::FromStr;

/// A signal a scope can listen for.
///
/// The set is closed: only signals that can be caught and that programs
/// conventionally use to ask for a stop can be named, so an unsupported
/// signal (SIGKILL, SIGSEGV, …) is not even expressible.
///
/// One spelling works everywhere: the POSIX name. In code it is an
/// associated constant beside the variant (`Signal::SIGINT` is
/// `Signal::Interrupt`), in `#[cancellable(on_signal = "SIGINT")]` and in
/// configuration it is a string, read by [`str::parse`] (any case, `SIG`
/// optional), and `Display` prints it back.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, Signal};
///
/// assert_eq!(Signal::SIGINT, Signal::Interrupt);
/// assert_eq!("SIGTERM".parse::<Signal>(), Ok(Signal::SIGTERM));
/// assert_eq!(Signal::SIGTERM.to_string(), "SIGTERM");
/// // The variant's name is not a signal's name, but it is understood.
/// let error = "Interrupt".parse::<Signal>().unwrap_err();
/// assert_eq!(error.suggestion(), Some(Signal::SIGINT));
/// let error = "SIGTREM".parse::<Signal>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "`SIGTREM` is not a signal a scope can listen for; did you mean `SIGTERM`? \
///      expected one of SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 (any case, `SIG` optional)"
/// );
///
/// # futures::executor::block_on(async {
/// let scope = CancelScope::new()
///     .on_signal(Signal::SIGINT)
///     .on_signal(Signal::SIGTERM)
///     .timeout(Duration::from_millis(5));
/// assert!(scope.run(std::future::pending::<()>()).await.unwrap_err().is_timeout());
/// # });
/// ```
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
    /// `SIGINT`, by its POSIX name: [`Signal::Interrupt`].
    pub const SIGINT: Signal = Signal::Interrupt;
    /// `SIGTERM`, by its POSIX name: [`Signal::Terminate`].
    pub const SIGTERM: Signal = Signal::Terminate;
    /// `SIGHUP`, by its POSIX name: [`Signal::Hangup`].
    pub const SIGHUP: Signal = Signal::Hangup;
    /// `SIGQUIT`, by its POSIX name: [`Signal::Quit`].
    pub const SIGQUIT: Signal = Signal::Quit;
    /// `SIGUSR1`, by its POSIX name: [`Signal::User1`].
    pub const SIGUSR1: Signal = Signal::User1;
    /// `SIGUSR2`, by its POSIX name: [`Signal::User2`].
    pub const SIGUSR2: Signal = Signal::User2;

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
        use libc::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
        match self {
            Signal::Interrupt => SIGINT,
            Signal::Terminate => SIGTERM,
            Signal::Hangup => SIGHUP,
            Signal::Quit => SIGQUIT,
            Signal::User1 => SIGUSR1,
            Signal::User2 => SIGUSR2,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a second arrival of a signal does while the scope that its first
/// arrival cancelled is still cleaning up (in its grace period, a
/// [`shield`](crate::shield)ed cleanup): set with
/// [`CancelScope::on_second_signal`](crate::CancelScope::on_second_signal),
/// [`TaskGroup::on_second_signal`](crate::group::TaskGroup::on_second_signal) and
/// `http::GracefulShutdown::on_second_signal`.
///
/// | | the grace period | the process |
/// |---|---|---|
/// | [`Exit`](Self::Exit) (default) | ends at once | what the signal does without cancelable: the default action ends it (a second Ctrl-C quits), the application's handler runs, an ignored signal stays ignored |
/// | [`EndGrace`](Self::EndGrace) | ends at once | goes on: the scope returns its cancellation and the program finishes its work (writes its summary, flushes its logs) |
///
/// Either way the application's own handler, if cancelable replaced one,
/// sees every arrival. Once no scope listens any more, a signal does
/// again what it does without cancelable (a third Ctrl-C after the scope
/// ended quits). A scope without a grace period has none to end: with
/// `EndGrace` a second signal during its shielded cleanup is only kept
/// from ending the process.
///
/// ```
/// use std::time::Duration;
/// use cancelable::{CancelScope, SecondSignal, Signal};
///
/// # futures::executor::block_on(async {
/// // Ctrl-C starts a 5 s cleanup; a second Ctrl-C cuts it short, and the
/// // program still writes its summary instead of dying.
/// let outcome = CancelScope::new()
///     .on_signal(Signal::SIGINT)
///     .grace(Duration::from_secs(5))
///     .on_second_signal(SecondSignal::EndGrace)
///     .timeout(Duration::from_millis(5))
///     .run(std::future::pending::<()>())
///     .await;
/// assert!(outcome.unwrap_err().is_timeout());
/// assert_eq!(SecondSignal::default(), SecondSignal::Exit);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecondSignal {
    /// End the grace period, and let the signal do what it does without
    /// cancelable: by default, end the process (the command-line
    /// convention: the first Ctrl-C asks to stop, the second one forces).
    #[default]
    Exit,
    /// End the grace period at once, and nothing more: the program goes on
    /// with the scope's cancellation.
    EndGrace,
}

/// The error of parsing a [`Signal`] from a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSignalError {
    input: String,
}

impl ParseSignalError {
    /// The name of the signal the input probably meant: a variant's name
    /// (`"Interrupt"` → `SIGINT`), or a POSIX name with one letter wrong,
    /// missing, extra or two swapped (`"SIGTREM"` → `SIGTERM`).
    pub fn suggestion(&self) -> Option<Signal> {
        let upper = self.input.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        let variant = |signal: &Signal| format!("{signal:?}").to_ascii_uppercase() == bare;
        let close = |signal: &Signal| bare.len() > 2 && near(bare, &signal.name()[3..]);
        Signal::ALL
            .iter()
            .find(|signal| variant(signal))
            .or_else(|| Signal::ALL.iter().find(|signal| close(signal)))
            .copied()
    }
}

/// `true` if `a` becomes `b` by one insertion, deletion, substitution or
/// swap of neighbours (ASCII names).
fn near(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    match (a.len(), b.len()) {
        (0, 0) => true,
        (x, y) if x == y => {
            a[1..] == b[1..] || (x >= 2 && a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..])
        }
        (x, y) if x + 1 == y => a == &b[1..],
        (x, y) if x == y + 1 => &a[1..] == b,
        _ => false,
    }
}

impl fmt::Display for ParseSignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a signal a scope can listen for; ",
            self.input
        )?;
        if let Some(signal) = self.suggestion() {
            write!(f, "did you mean `{signal}`? ")?;
        }
        f.write_str(
            "expected one of SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 (any case, `SIG` optional)",
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
