//! Child process of the signal tests (`tests/tests/signals.rs`).
//!
//! Some signal behaviour can only be observed from outside: whether a
//! signal still *kills* a program, what a burst of a thousand signals does
//! to it, what happens when the process has no file descriptor left. The
//! test binary runs this program with a mode argument and checks how it
//! ended (`ExitStatusExt::signal()`) and the lines it printed.
//!
//! Every mode first resets the signals it raises to their default action
//! and unblocks them (a non-interactive shell starts background jobs with
//! SIGINT ignored, and that is inherited), and arms `alarm(20)` so that a
//! child that hangs is killed by SIGALRM instead of hanging the tests.
//!
//! Exit codes: `0` the mode's checks passed and it was meant to exit;
//! `1` a check failed (the reason is printed); `2` bad usage; `3` the
//! child survived a signal that should have killed it.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("signal-child: signals are supported on Unix only");
    std::process::exit(2);
}

#[cfg(unix)]
mod unix {
    use std::fs::File;
    use std::io::Write;
    use std::process::exit;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use cancelable::{checkpoint, shield, CancelReason, CancelScope, Cancelled, Signal};

    /// How many SIGINTs the burst raises.
    const BURST: usize = 1_000;

    /// A scope that waits for a signal gives up after this long, so that a
    /// lost signal shows up as a `Timeout` instead of a hang.
    const BACKSTOP: Duration = Duration::from_secs(10);

    pub(super) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // SAFETY: `alarm` only arms a timer; SIGALRM keeps its default
        // action (terminate), which is what ends a hung child.
        unsafe { libc::alarm(20) };
        match args.as_slice() {
            ["baseline"] => baseline(),
            ["other-signal"] => other_signal(),
            ["restored"] => restored(),
            ["dropped"] => dropped(),
            ["ignored"] => ignored(),
            ["burst", backend] => burst(backend),
            ["emfile"] => emfile(),
            _ => {
                eprintln!(
                    "usage: signal-child baseline | other-signal | restored | dropped | ignored \
                     | burst BACKEND | emfile"
                );
                exit(2);
            }
        }
    }

    /// Prints a line and flushes it, so that the parent sees it even if
    /// the next thing that happens is a signal killing this process.
    fn say(line: impl std::fmt::Display) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    fn fail(line: impl std::fmt::Display) -> ! {
        say(format_args!("FAILED: {line}"));
        exit(1);
    }

    /// Gives `signal` its default action and unblocks it in this thread
    /// (threads started later inherit the mask).
    fn reset_to_default(signal: Signal) {
        set_disposition(signal, libc::SIG_DFL);
    }

    fn set_disposition(signal: Signal, handler: libc::sighandler_t) {
        // SAFETY: plain libc calls with valid arguments, made before this
        // program starts any thread or installs any handler of its own.
        unsafe {
            if libc::signal(signal.number(), handler) == libc::SIG_ERR {
                fail(format_args!("cannot set the disposition of {signal}"));
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal.number());
            if libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
                fail(format_args!("cannot unblock {signal}"));
            }
        }
    }

    fn raise(signal: Signal) {
        if let Err(error) = signal_hook::low_level::raise(signal.number()) {
            fail(format_args!("raise({signal}) failed: {error}"));
        }
    }

    /// Raises `signal` at a moment nobody listens for it: the process must
    /// die of it. If it does not, says so and exits with 3.
    fn raise_expecting_death(signal: Signal) -> ! {
        say(format_args!("raising {signal} with no listening scope"));
        raise(signal);
        // A process-directed copy too, in case the thread-directed one was
        // swallowed by something thread-specific.
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe { libc::kill(libc::getpid(), signal.number()) };
        std::thread::sleep(Duration::from_millis(500));
        say(format_args!("survived {signal}"));
        exit(3);
    }

    fn describe(outcome: &Result<(), Cancelled>) -> String {
        match outcome {
            Ok(()) => "completed".to_owned(),
            Err(cancelled) => format!("cancelled: {:?}", cancelled.reason()),
        }
    }

    /// A scope listening for `signal`, whose body raises it and then waits.
    async fn cancelled_by_own_signal(signal: Signal) -> Result<(), Cancelled> {
        CancelScope::new()
            .on_signal(signal)
            .timeout(BACKSTOP)
            .run(async move {
                // The scope armed its sources before polling the body: the
                // listener is in place. A source that failed shows here.
                if checkpoint().await.is_ok() {
                    raise(signal);
                }
                std::future::pending::<()>().await
            })
            .await
    }

    /// Ctrl-C kills a program that uses cancelable but never listened for it.
    fn baseline() -> ! {
        reset_to_default(Signal::Interrupt);
        let outcome = futures::executor::block_on(
            CancelScope::new()
                .timeout(Duration::from_millis(5))
                .run(std::future::pending::<()>()),
        );
        match &outcome {
            Err(cancelled) if cancelled.reason() == &CancelReason::Timeout => {}
            other => fail(format_args!(
                "a plain timeout scope ended {}",
                describe(other)
            )),
        }
        say("used a scope without signals");
        raise_expecting_death(Signal::Interrupt)
    }

    /// Ctrl-C kills the program while a scope listens for another signal.
    fn other_signal() -> ! {
        reset_to_default(Signal::Interrupt);
        reset_to_default(Signal::User1);
        let outcome = futures::executor::block_on(
            CancelScope::new()
                .on_signal(Signal::User1)
                .timeout(BACKSTOP)
                .run(async {
                    if let Err(cancelled) = checkpoint().await {
                        fail(format_args!("the SIGUSR1 scope failed to arm: {cancelled}"));
                    }
                    say("listening for SIGUSR1");
                    raise_expecting_death(Signal::Interrupt)
                }),
        );
        fail(format_args!(
            "the SIGUSR1 scope ended {}",
            describe(&outcome)
        ))
    }

    /// After the last listening scope ended, SIGINT kills again.
    fn restored() -> ! {
        reset_to_default(Signal::Interrupt);
        for round in 1..=2 {
            let outcome = futures::executor::block_on(cancelled_by_own_signal(Signal::Interrupt));
            match &outcome {
                Err(cancelled)
                    if cancelled.reason() == &CancelReason::Signal(Signal::Interrupt) =>
                {
                    say(format_args!("scope {round} ended: {}", describe(&outcome)));
                }
                other => fail(format_args!("scope {round} ended {}", describe(other))),
            }
        }
        raise_expecting_death(Signal::Interrupt)
    }

    /// A listening scope dropped mid-run (never polled to completion) stops
    /// listening: SIGINT kills again.
    fn dropped() -> ! {
        reset_to_default(Signal::Interrupt);
        futures::executor::block_on(async {
            let scope = CancelScope::new().on_signal(Signal::Interrupt);
            let handle = scope.handle();
            let mut run = Box::pin(scope.run(std::future::pending::<()>()));
            if futures::poll!(run.as_mut()).is_ready() {
                fail("the listening scope ended at its first poll");
            }
            say(format_args!("scope armed, status {:?}", handle.status()));
            drop(run);
            say("scope dropped mid-run");
        });
        raise_expecting_death(Signal::Interrupt)
    }

    /// A signal that was ignored before cancelable first listened for it
    /// still cancels a listening scope, and stays ignored afterwards.
    fn ignored() -> ! {
        set_disposition(Signal::Interrupt, libc::SIG_IGN);
        let outcome = futures::executor::block_on(cancelled_by_own_signal(Signal::Interrupt));
        match &outcome {
            Err(cancelled) if cancelled.reason() == &CancelReason::Signal(Signal::Interrupt) => {
                say(format_args!("scope ended: {}", describe(&outcome)));
            }
            other => fail(format_args!("the scope ended {}", describe(other))),
        }
        say("raising SIGINT with no listening scope");
        raise(Signal::Interrupt);
        std::thread::sleep(Duration::from_millis(100));
        say("survived SIGINT: it stayed ignored");
        exit(0);
    }

    #[derive(Default)]
    struct BurstState {
        /// The long-lived listener is armed: the burst may start.
        armed: AtomicBool,
        /// The raising thread has raised its last signal.
        raised_all: AtomicBool,
        /// The churning scopes are done: the long-lived listener may end.
        churn_done: AtomicBool,
    }

    #[derive(Default)]
    struct Churn {
        scopes: usize,
        cancelled: usize,
        completed: usize,
        wrong: Vec<String>,
    }

    async fn sleep_until(flag: &AtomicBool) {
        while !flag.load(Ordering::SeqCst) {
            cancelable_tests::sleep(Duration::from_millis(1)).await;
        }
    }

    /// One listener stays alive (shielded, so it keeps listening after the
    /// first SIGINT cancelled it) while scopes listening for SIGINT start
    /// and finish in a loop and another thread raises 1,000 SIGINTs.
    async fn burst_body(state: Arc<BurstState>) -> (Result<(), Cancelled>, Churn) {
        let long = {
            let state = state.clone();
            CancelScope::new()
                .name("long-lived")
                .on_signal(Signal::Interrupt)
                .timeout(BACKSTOP)
                .run(async move {
                    state.armed.store(true, Ordering::SeqCst);
                    shield(sleep_until(&state.churn_done)).await;
                    std::future::pending::<()>().await
                })
        };
        let churn = {
            let state = state.clone();
            async move {
                sleep_until(&state.armed).await;
                let mut churn = Churn::default();
                loop {
                    let last = state.raised_all.load(Ordering::SeqCst);
                    // Every other scope waits until a signal cancels it;
                    // once the burst is over it raises one itself, so each
                    // of them must end cancelled by SIGINT.
                    let waits = churn.scopes % 2 == 0;
                    let body_state = state.clone();
                    let outcome = CancelScope::new()
                        .on_signal(Signal::Interrupt)
                        .timeout(BACKSTOP)
                        .run(async move {
                            if !waits {
                                smol::future::yield_now().await;
                                return;
                            }
                            sleep_until(&body_state.raised_all).await;
                            raise(Signal::Interrupt);
                            std::future::pending::<()>().await
                        })
                        .await;
                    churn.scopes += 1;
                    match &outcome {
                        Ok(()) if !waits => churn.completed += 1,
                        Err(cancelled)
                            if cancelled.reason() == &CancelReason::Signal(Signal::Interrupt) =>
                        {
                            churn.cancelled += 1
                        }
                        other => churn.wrong.push(format!(
                            "scope {} (waits: {waits}) ended {}",
                            churn.scopes,
                            describe(other)
                        )),
                    }
                    if last {
                        break;
                    }
                }
                state.churn_done.store(true, Ordering::SeqCst);
                churn
            }
        };
        futures::join!(long, churn)
    }

    fn burst(backend: &str) -> ! {
        reset_to_default(Signal::Interrupt);
        let state = Arc::new(BurstState::default());
        let raiser = {
            let state = state.clone();
            std::thread::spawn(move || {
                while !state.armed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                for n in 0..BURST {
                    raise(Signal::Interrupt);
                    // Spread the burst over some milliseconds so that it
                    // overlaps many scopes starting and finishing.
                    if n % 10 == 9 {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                state.raised_all.store(true, Ordering::SeqCst);
            })
        };
        let body = burst_body(state);
        let (long, churn) = match backend {
            "tokio-current-thread" => cancelable_tests::tokio_current_thread(body),
            "tokio-multi-thread" => cancelable_tests::tokio_multi_thread(body),
            "async-std" => cancelable_tests::async_std(body),
            "smol" => cancelable_tests::smol(body),
            "block-on" => cancelable_tests::block_on(body),
            other => {
                eprintln!("unknown backend `{other}`");
                exit(2);
            }
        };
        if raiser.join().is_err() {
            fail("the raising thread panicked");
        }
        say(format_args!("long-lived listener {}", describe(&long)));
        say(format_args!(
            "churn: {} scopes, {} cancelled by SIGINT, {} completed",
            churn.scopes, churn.cancelled, churn.completed
        ));
        for wrong in &churn.wrong {
            say(format_args!("wrong: {wrong}"));
        }
        match &long {
            Err(cancelled) if cancelled.reason() == &CancelReason::Signal(Signal::Interrupt) => {}
            other => fail(format_args!(
                "the long-lived listener ended {}",
                describe(other)
            )),
        }
        if !churn.wrong.is_empty() || churn.cancelled == 0 {
            fail("some churning scope did not end as expected");
        }
        say(format_args!("burst of {BURST} SIGINTs survived"));
        raise_expecting_death(Signal::Interrupt)
    }

    /// With no file descriptor left, listening fails: the scope ends at
    /// once with `CancelReason::Error` carrying the OS error, nothing
    /// panics. Once descriptors are free again, listening works.
    fn emfile() -> ! {
        reset_to_default(Signal::Interrupt);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid resource and a pointer
        // to a live `rlimit`.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                fail("getrlimit failed");
            }
            limit.rlim_cur = limit.rlim_max.min(64);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                fail("setrlimit failed");
            }
        }
        let mut files = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(file) => files.push(file),
                Err(error) if error.raw_os_error() == Some(libc::EMFILE) => break,
                Err(error) => fail(format_args!("opening /dev/null failed with {error}")),
            }
            if files.len() > 4096 {
                fail("RLIMIT_NOFILE did not limit open files");
            }
        }
        say(format_args!(
            "file descriptors exhausted after {} more",
            files.len()
        ));

        let outcome = futures::executor::block_on(
            CancelScope::new()
                .on_signal(Signal::Interrupt)
                .run(std::future::pending::<()>()),
        );
        let Err(cancelled) = outcome else {
            fail("the scope completed");
        };
        say(format_args!("reason: {:?}", cancelled.reason()));
        say(format_args!("error: {cancelled}"));
        if !matches!(cancelled.reason(), CancelReason::Error(_)) {
            fail("the reason is not CancelReason::Error");
        }
        let mut os_error = None;
        let mut cause = std::error::Error::source(&cancelled);
        while let Some(error) = cause {
            say(format_args!("caused by: {error}"));
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                os_error = os_error.or(io.raw_os_error());
            }
            cause = error.source();
        }
        match os_error {
            Some(libc::EMFILE) => say("os error: EMFILE"),
            Some(other) => fail(format_args!("the OS error is {other}, not EMFILE")),
            None => fail("no OS error in the source chain"),
        }

        drop(files);
        let outcome = futures::executor::block_on(cancelled_by_own_signal(Signal::Interrupt));
        match &outcome {
            Err(cancelled) if cancelled.reason() == &CancelReason::Signal(Signal::Interrupt) => {
                say(format_args!("recovered: {}", describe(&outcome)));
            }
            other => fail(format_args!(
                "with descriptors free again, the scope ended {}",
                describe(other)
            )),
        }
        exit(0);
    }
}
