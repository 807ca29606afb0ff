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
//! SIGINT ignored, and that is inherited) — except `inherited-ignore`,
//! whose parent ignores SIGINT on purpose — and arms `alarm(20)` so that a
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
    use std::future::Future;
    use std::pin::Pin;
    use std::process::exit;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Context;
    use std::time::Duration;

    use cancelable::{
        cancellable, checkpoint, shield, CancelReason, CancelScope, Cancelled, Signal,
    };
    use cancelable_tests::child_output::{fail, say};

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
            ["inherited-ignore"] => inherited_ignore(),
            ["burst", backend] => burst(backend),
            ["emfile"] => emfile(),
            ["after-scope", handler, order, signal] => after_scope(handler, order, signal),
            ["second-signal", cleanup, handler] => second_signal(cleanup, handler),
            ["grace-second-signal", handler] => grace_second_signal(handler),
            ["fast-second-signal", handler] => fast_second_signal(handler),
            ["one-shot-race"] => one_shot_race(),
            _ => {
                eprintln!(
                    "usage: signal-child baseline | other-signal | restored | dropped | ignored \
                     | inherited-ignore | burst BACKEND | emfile \
                     | after-scope none|tokio|signal-hook|sigaction before|after SIGNAL \
                     | second-signal shielded|on-cancel|on-cancel-beside-a-listener \
                       none|tokio|sigaction \
                     | grace-second-signal none|tokio|sigaction \
                     | fast-second-signal none|sigaction | one-shot-race"
                );
                exit(2);
            }
        }
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

    /// Sends `signal` to the whole process, as Ctrl-C or `kill` does: any
    /// thread may run the handler.
    fn kill_self(signal: Signal) {
        // SAFETY: kill(2) on our own pid with a valid signal number.
        if unsafe { libc::kill(libc::getpid(), signal.number()) } != 0 {
            fail(format_args!("kill({signal}) failed"));
        }
    }

    /// The handler of `signal`'s disposition right now: `SIG_DFL`,
    /// `SIG_IGN` or the address of a function.
    fn disposition(signal: Signal) -> libc::sighandler_t {
        // SAFETY: sigaction(2) only reads the disposition into a live,
        // zero-initialised `sigaction`.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal.number(), std::ptr::null(), &mut current) != 0 {
                fail(format_args!("cannot read the disposition of {signal}"));
            }
            current.sa_sigaction
        }
    }

    /// Checks that `signal`'s disposition is `expected` (named `what`), as
    /// it was before cancelable first listened: a scope that ended leaves
    /// no trace in the process (children spawned later inherit an ignored
    /// signal, but not a handler).
    fn expect_disposition(signal: Signal, expected: libc::sighandler_t, what: &str) {
        let current = disposition(signal);
        if current != expected {
            fail(format_args!(
                "the disposition of {signal} is {current:#x}, not {what} ({expected:#x})"
            ));
        }
        say(format_args!("{signal} disposition: {what}"));
    }

    /// How many signals [`count_signal`] caught.
    static CAUGHT: AtomicUsize = AtomicUsize::new(0);

    /// A plain `sigaction` handler, as a C-style program installs.
    extern "C" fn count_signal(_: libc::c_int) {
        CAUGHT.fetch_add(1, Ordering::SeqCst);
    }

    fn count_signal_address() -> libc::sighandler_t {
        count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
    }

    /// Installs [`count_signal`] for `signal` with `sigaction`.
    fn install_counting_handler(signal: Signal) {
        // SAFETY: sigaction(2) with a zero-initialised action whose handler
        // is an `extern "C" fn(c_int)` that only touches an atomic
        // (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_signal_address();
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal.number(), &action, std::ptr::null_mut()) != 0 {
                fail(format_args!("cannot install a handler for {signal}"));
            }
        }
    }

    /// An application's own handler for a signal, of the kinds programs
    /// install to shut down gracefully.
    enum AppHandler {
        /// No handler: the signal's default action.
        None,
        /// `tokio::signal::ctrl_c()` (or `tokio::signal::unix::signal`).
        Tokio(Pin<Box<dyn Future<Output = std::io::Result<()>>>>),
        /// `signal_hook::flag::register`.
        SignalHook(Arc<AtomicBool>),
        /// A plain `sigaction` handler, [`count_signal`].
        Sigaction,
    }

    impl AppHandler {
        /// Installs a handler of `kind` for `signal` (call it inside a
        /// tokio runtime: tokio's handler is installed at the first poll of
        /// its future, which this does).
        fn install(kind: &str, signal: Signal) -> AppHandler {
            let handler = match kind {
                "none" => AppHandler::None,
                "tokio" => {
                    let mut wait: Pin<Box<dyn Future<Output = std::io::Result<()>>>> = match signal
                    {
                        Signal::Interrupt => Box::pin(tokio::signal::ctrl_c()),
                        other => Box::pin(async move {
                            let kind = tokio::signal::unix::SignalKind::from_raw(other.number());
                            tokio::signal::unix::signal(kind)?.recv().await;
                            Ok(())
                        }),
                    };
                    let waker = futures::task::noop_waker();
                    if wait
                        .as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_ready()
                    {
                        fail("tokio's signal future ended at its first poll");
                    }
                    AppHandler::Tokio(wait)
                }
                "signal-hook" => {
                    let flag = Arc::new(AtomicBool::new(false));
                    if let Err(error) = signal_hook::flag::register(signal.number(), flag.clone()) {
                        fail(format_args!("signal_hook::flag::register failed: {error}"));
                    }
                    AppHandler::SignalHook(flag)
                }
                "sigaction" => {
                    install_counting_handler(signal);
                    AppHandler::Sigaction
                }
                other => {
                    eprintln!("unknown handler `{other}`");
                    exit(2);
                }
            };
            say(format_args!("installed the app's handler: {kind}"));
            handler
        }

        /// Waits (5 s at most) until the app's handler saw `signal`, and
        /// says so. With no handler the signal should have killed the
        /// process: says that it survived and exits with 3.
        async fn expect_seen(self, signal: Signal) {
            const PATIENCE: Duration = Duration::from_secs(5);
            let seen = match self {
                AppHandler::None => {
                    std::thread::sleep(Duration::from_millis(500));
                    say(format_args!("survived {signal}"));
                    exit(3);
                }
                AppHandler::Tokio(wait) => match tokio::time::timeout(PATIENCE, wait).await {
                    Ok(Ok(())) => true,
                    Ok(Err(error)) => fail(format_args!("tokio's signal future failed: {error}")),
                    Err(_) => false,
                },
                AppHandler::SignalHook(flag) => {
                    poll_until(PATIENCE, || flag.load(Ordering::SeqCst)).await
                }
                AppHandler::Sigaction => {
                    poll_until(PATIENCE, || CAUGHT.load(Ordering::SeqCst) > 0).await
                }
            };
            if !seen {
                fail(format_args!("the app's handler never saw {signal}"));
            }
            say(format_args!("the app's handler saw {signal}"));
        }
    }

    async fn poll_until(patience: Duration, done: impl Fn() -> bool) -> bool {
        let start = std::time::Instant::now();
        while !done() {
            if start.elapsed() > patience {
                return false;
            }
            cancelable_tests::sleep(Duration::from_millis(5)).await;
        }
        true
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
        expect_disposition(Signal::Interrupt, libc::SIG_DFL, "default");
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
        expect_disposition(Signal::Interrupt, libc::SIG_DFL, "default");
        raise_expecting_death(Signal::Interrupt)
    }

    /// A signal that was ignored before cancelable first listened for it
    /// still cancels a listening scope, and stays ignored afterwards.
    fn ignored() -> ! {
        set_disposition(Signal::Interrupt, libc::SIG_IGN);
        ignored_after_a_scope()
    }

    /// Like [`ignored`], with SIGINT ignored by the parent before `exec`
    /// (as a non-interactive shell does for background jobs, or `nohup`
    /// for SIGHUP): the child does not touch the disposition itself.
    fn inherited_ignore() -> ! {
        if disposition(Signal::Interrupt) != libc::SIG_IGN {
            fail("SIGINT is not ignored at start: the parent must ignore it before exec");
        }
        say("SIGINT ignored at start");
        ignored_after_a_scope()
    }

    fn ignored_after_a_scope() -> ! {
        let outcome = futures::executor::block_on(cancelled_by_own_signal(Signal::Interrupt));
        match &outcome {
            Err(cancelled) if cancelled.reason() == &CancelReason::Signal(Signal::Interrupt) => {
                say(format_args!("scope ended: {}", describe(&outcome)));
            }
            other => fail(format_args!("the scope ended {}", describe(other))),
        }
        expect_disposition(Signal::Interrupt, libc::SIG_IGN, "ignored");
        say("sending SIGINT with no listening scope");
        kill_self(Signal::Interrupt);
        std::thread::sleep(Duration::from_millis(100));
        say("survived SIGINT: it stayed ignored");
        exit(0);
    }

    /// Starts a scope listening for `signal` on another thread, and
    /// returns once it listens.
    fn start_a_listener_beside(signal: Signal) {
        let armed = Arc::new(AtomicBool::new(false));
        let listening = armed.clone();
        std::thread::spawn(move || {
            let outcome = futures::executor::block_on(
                CancelScope::new()
                    .on_signal(signal)
                    .timeout(BACKSTOP)
                    .run(async move {
                        listening.store(true, Ordering::SeqCst);
                        std::future::pending::<()>().await
                    }),
            );
            say(format_args!(
                "the scope beside ended: {}",
                describe(&outcome)
            ));
        });
        while !armed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        say(format_args!("another scope listens for {signal}"));
    }

    /// A `#[cancellable]` function listening for SIGINT that runs and
    /// finishes (by its timeout).
    #[cancellable(timeout = "50ms", on_signal = "SIGINT")]
    async fn sigint_job() -> Result<(), Cancelled> {
        std::future::pending::<()>().await;
        Ok(())
    }

    /// The same, listening for SIGTERM.
    #[cancellable(timeout = "50ms", on_signal = "SIGTERM")]
    async fn sigterm_job() -> Result<(), Cancelled> {
        std::future::pending::<()>().await;
        Ok(())
    }

    /// The application installs its own handler for `signal` (`before` or
    /// `after` a `#[cancellable]` function listening for it runs and
    /// finishes); then `signal` arrives. The app's handler must see it and
    /// the process live; with no handler (`none`), the signal must kill.
    fn after_scope(handler: &str, order: &str, signal: &str) -> ! {
        let signal: Signal = signal.parse().unwrap_or_else(|error| {
            eprintln!("{error}");
            exit(2)
        });
        let before = match order {
            "before" => true,
            "after" => false,
            other => {
                eprintln!("expected `before` or `after`, not `{other}`");
                exit(2);
            }
        };
        reset_to_default(signal);
        cancelable_tests::tokio_current_thread(async {
            let mut app = before.then(|| AppHandler::install(handler, signal));
            let outcome = match signal {
                Signal::Interrupt => sigint_job().await,
                Signal::Terminate => sigterm_job().await,
                other => fail(format_args!("no annotated function listens for {other}")),
            };
            match &outcome {
                Err(cancelled) if cancelled.is_timeout() => {}
                other => fail(format_args!(
                    "the annotated function ended {}",
                    describe(other)
                )),
            }
            say(format_args!(
                "the annotated function finished: {}",
                describe(&outcome)
            ));
            let app = app
                .take()
                .unwrap_or_else(|| AppHandler::install(handler, signal));
            say(format_args!("sending {signal} with no listening scope"));
            kill_self(signal);
            app.expect_seen(signal).await;
        });
        say("exiting normally");
        exit(0);
    }

    /// The first SIGINT cancels a listening scope; a second one arrives
    /// while the scope still cleans up (`shielded`: in a shielded part of
    /// its body; `on-cancel`: in its `on_cancel` callback). It must take
    /// the action the process takes without cancelable: the app's
    /// handler, or (`none`) the default action, which kills.
    fn second_signal(cleanup: &str, handler: &str) -> ! {
        let signal = Signal::Interrupt;
        // `on-cancel-beside-a-listener`: another scope starts listening
        // during the callback, before the second SIGINT arrives.
        let (shielded, beside) = match cleanup {
            "shielded" => (true, false),
            "on-cancel" => (false, false),
            "on-cancel-beside-a-listener" => (false, true),
            other => {
                eprintln!(
                    "expected `shielded`, `on-cancel` or `on-cancel-beside-a-listener`, \
                     not `{other}`"
                );
                exit(2);
            }
        };
        reset_to_default(signal);
        cancelable_tests::tokio_current_thread(async move {
            let app = AppHandler::install(handler, signal);
            let scope = CancelScope::new()
                .on_signal(signal)
                .timeout(BACKSTOP)
                .on_cancel(move |cancelled| {
                    if !shielded {
                        say(format_args!("on_cancel started: {:?}", cancelled.reason()));
                        if beside {
                            start_a_listener_beside(signal);
                        }
                        say("raising a second SIGINT");
                        raise(signal);
                        std::thread::sleep(Duration::from_millis(300));
                        say("on_cancel finished");
                    }
                });
            let token = scope.handle().cancel_token();
            let outcome = scope
                .run(async move {
                    if let Err(cancelled) = checkpoint().await {
                        fail(format_args!("the scope failed to arm: {cancelled}"));
                    }
                    say("raising the first SIGINT");
                    raise(signal);
                    if shielded {
                        shield(async {
                            token.cancelled().await;
                            say(format_args!(
                                "shielded cleanup started: {:?}",
                                token.reason()
                            ));
                            say("raising a second SIGINT");
                            raise(signal);
                            cancelable_tests::sleep(Duration::from_millis(300)).await;
                            say("shielded cleanup finished");
                        })
                        .await;
                    }
                    std::future::pending::<()>().await
                })
                .await;
            say(format_args!("scope ended: {}", describe(&outcome)));
            app.expect_seen(signal).await;
        });
        say("exiting normally");
        exit(0);
    }

    /// Sets its flag when dropped: shows that a scope dropped its body.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The first SIGINT cancels a listening scope with a long grace period;
    /// its body notices (a cancellation-aware sleep returns `Err`) and
    /// starts a shielded cleanup, during which a second SIGINT arrives. It
    /// must end the grace period at once (the body is dropped) and take the
    /// action the process takes without cancelable: the app's handler, or
    /// (`none`) the default action, which kills.
    fn grace_second_signal(handler: &str) -> ! {
        const GRACE: Duration = Duration::from_secs(8);
        const CLEANUP: Duration = Duration::from_secs(4);
        let signal = Signal::Interrupt;
        reset_to_default(signal);
        cancelable_tests::tokio_current_thread(async move {
            let app = AppHandler::install(handler, signal);
            let dropped = Arc::new(AtomicBool::new(false));
            let guard = DropFlag(dropped.clone());
            let started = std::time::Instant::now();
            let outcome = CancelScope::new()
                .on_signal(signal)
                .timeout(BACKSTOP)
                .grace(GRACE)
                .try_run(async move {
                    let _guard = guard;
                    if let Err(cancelled) = checkpoint().await {
                        fail(format_args!("the scope failed to arm: {cancelled}"));
                    }
                    say("raising the first SIGINT");
                    raise(signal);
                    let Err(cancelled) = cancelable::sleep(BACKSTOP).await else {
                        fail("the sleep was not cut short by the first SIGINT");
                    };
                    say(format_args!("cleanup started: {:?}", cancelled.reason()));
                    shield(async {
                        say("raising a second SIGINT");
                        raise(signal);
                        cancelable_tests::sleep(CLEANUP).await;
                        say("cleanup finished");
                    })
                    .await;
                    Err::<(), _>(cancelled)
                })
                .await;
            let Err(cancelled) = outcome else {
                fail("the scope completed");
            };
            say(format_args!(
                "scope ended: {:?}, {:?}, body {}",
                cancelled.reason(),
                cancelled.grace_outcome(),
                if dropped.load(Ordering::SeqCst) {
                    "dropped"
                } else {
                    "kept"
                }
            ));
            if started.elapsed() < CLEANUP {
                say("ended well before the grace period");
            }
            app.expect_seen(signal).await;
        });
        say("exiting normally");
        exit(0);
    }

    /// The delivery thread is held in a token callback (`fast-second-signal`).
    static STALLED: AtomicBool = AtomicBool::new(false);
    /// Lets the held delivery thread go on.
    static RELEASE: AtomicBool = AtomicBool::new(false);

    /// As `grace-second-signal`, but the two SIGINTs arrive back to back
    /// while cancelable's delivery thread is busy (held in the `on_cancel`
    /// callback of a scope SIGUSR1 cancelled), so that it sees both at
    /// once. They must still count as a first and a second signal: the
    /// grace ends at once, and the second takes the process's own action
    /// (the app's handler, or, with `none`, the default action: killed).
    fn fast_second_signal(handler: &str) -> ! {
        const GRACE: Duration = Duration::from_secs(8);
        const CLEANUP: Duration = Duration::from_secs(4);
        let signal = Signal::Interrupt;
        reset_to_default(signal);
        reset_to_default(Signal::User1);
        cancelable_tests::tokio_current_thread(async move {
            let app = AppHandler::install(handler, signal);
            // The staller: listens for SIGUSR1 and is never polled again.
            let staller = CancelScope::new().on_signal(Signal::User1);
            let _hold = staller.handle().cancel_token().on_cancel(|_| {
                STALLED.store(true, Ordering::SeqCst);
                while !RELEASE.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let mut staller = Box::pin(staller.run(std::future::pending::<()>()));
            let waker = futures::task::noop_waker();
            if staller
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                fail("the SIGUSR1 scope ended at its first poll");
            }
            let dropped = Arc::new(AtomicBool::new(false));
            let guard = DropFlag(dropped.clone());
            let started = std::time::Instant::now();
            let outcome = CancelScope::new()
                .on_signal(signal)
                .timeout(BACKSTOP)
                .grace(GRACE)
                .try_run(async move {
                    let _guard = guard;
                    if let Err(cancelled) = checkpoint().await {
                        fail(format_args!("the scope failed to arm: {cancelled}"));
                    }
                    say("holding the delivery thread");
                    raise(Signal::User1);
                    while !STALLED.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    say("raising two SIGINTs back to back");
                    raise(signal);
                    raise(signal);
                    RELEASE.store(true, Ordering::SeqCst);
                    let Err(cancelled) = cancelable::sleep(BACKSTOP).await else {
                        fail("the sleep was not cut short by the SIGINTs");
                    };
                    say(format_args!("cleanup started: {:?}", cancelled.reason()));
                    shield(async {
                        cancelable_tests::sleep(CLEANUP).await;
                        say("cleanup finished");
                    })
                    .await;
                    Err::<(), _>(cancelled)
                })
                .await;
            let Err(cancelled) = outcome else {
                fail("the scope completed");
            };
            say(format_args!(
                "scope ended: {:?}, {:?}, body {}",
                cancelled.reason(),
                cancelled.grace_outcome(),
                if dropped.load(Ordering::SeqCst) {
                    "dropped"
                } else {
                    "kept"
                }
            ));
            if started.elapsed() < CLEANUP {
                say("ended well before the grace period");
            }
            app.expect_seen(signal).await;
            drop(staller);
        });
        say("exiting normally");
        exit(0);
    }

    /// Calls of [`one_shot`], and threads inside it right now.
    static ONE_SHOT_CALLS: AtomicUsize = AtomicUsize::new(0);
    static ONE_SHOT_INSIDE: AtomicUsize = AtomicUsize::new(0);

    /// A one-shot (`SA_RESETHAND`) application handler: says it was called
    /// (with `write`, async-signal-safe) and lingers a little, so that a
    /// second thread taking the signal at the same time would overlap it.
    extern "C" fn one_shot(_: libc::c_int) {
        ONE_SHOT_INSIDE.fetch_add(1, Ordering::SeqCst);
        ONE_SHOT_CALLS.fetch_add(1, Ordering::SeqCst);
        let line = b"one-shot handler called\n";
        // SAFETY: write(2) of a live buffer: async-signal-safe.
        unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
        for _ in 0..5_000_000 {
            if ONE_SHOT_INSIDE.load(Ordering::SeqCst) > 1 {
                break;
            }
            std::hint::spin_loop();
        }
        ONE_SHOT_INSIDE.fetch_sub(1, Ordering::SeqCst);
    }

    /// Two threads take SIGUSR2 at the same moment while a scope listens,
    /// the application's handler for it being one-shot: that handler runs
    /// once, as the kernel would run it, and the other arrival takes the
    /// default action the one-shot left behind (killed by SIGUSR2).
    fn one_shot_race() -> ! {
        let signal = Signal::User2;
        reset_to_default(signal);
        // SAFETY: sigaction(2) with a zero-initialised action whose handler
        // is an `extern "C" fn(c_int)` doing async-signal-safe work.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = one_shot as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal.number(), &action, std::ptr::null_mut()) != 0 {
                fail("cannot install the one-shot handler");
            }
        }
        say("installed a one-shot handler");
        cancelable_tests::tokio_current_thread(async move {
            let outcome = CancelScope::new()
                .on_signal(signal)
                .timeout(BACKSTOP)
                .run(async move {
                    if let Err(cancelled) = checkpoint().await {
                        fail(format_args!("the scope failed to arm: {cancelled}"));
                    }
                    say("two threads raise SIGUSR2 at once");
                    let barrier = Arc::new(std::sync::Barrier::new(2));
                    let threads: Vec<_> = (0..2)
                        .map(|_| {
                            let barrier = barrier.clone();
                            std::thread::spawn(move || {
                                barrier.wait();
                                raise(signal);
                            })
                        })
                        .collect();
                    for thread in threads {
                        let _ = thread.join();
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    std::future::pending::<()>().await
                })
                .await;
            say(format_args!("scope ended: {}", describe(&outcome)));
        });
        say(format_args!(
            "survived, the one-shot handler called {} times",
            ONE_SHOT_CALLS.load(Ordering::SeqCst)
        ));
        exit(3);
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

    /// The application has its own SIGINT handler ([`count_signal`]): a
    /// burst of SIGINTs while a scope cancelled by SIGINT still runs is a
    /// "second Ctrl-C during cleanup", which without a handler would (and
    /// should) kill the process.
    fn burst(backend: &str) -> ! {
        reset_to_default(Signal::Interrupt);
        install_counting_handler(Signal::Interrupt);
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
        let caught = CAUGHT.load(Ordering::SeqCst);
        if caught == 0 {
            fail("the app's handler caught no SIGINT during the burst");
        }
        say(format_args!("the app's handler caught {caught} SIGINTs"));
        expect_disposition(
            Signal::Interrupt,
            count_signal_address(),
            "the app's handler",
        );
        say("raising SIGINT with no listening scope");
        raise(Signal::Interrupt);
        if CAUGHT.load(Ordering::SeqCst) == caught {
            fail("the app's handler did not catch the SIGINT after the burst");
        }
        say("the app's handler caught it");
        exit(0);
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
