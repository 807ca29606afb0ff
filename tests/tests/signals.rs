//! Signals: real signals raised at this process cancel the scopes that
//! listen for them, on every backend; what can only be seen from outside
//! (a signal still killing the program once nobody listens, a burst of a
//! thousand signals, a process without file descriptors) runs in a child
//! process, `src/bin/signal-child.rs`.
//!
//! A signal raised while no scope listens for it kills this test binary,
//! and so does a second one while a scope the first one cancelled still
//! runs, so every in-process test holds [`LOCK`] for its whole run and
//! raises a signal only once per listening scope, from inside a body
//! whose scope (or whose sibling scope) is armed: sources are armed at a
//! scope's first poll, before its body is polled, so that is race-free.
#![cfg(unix)]

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cancelable::{cancellable, CancelReason, CancelScope, Cancelled, Signal};
use cancelable_tests::child_output::{
    assert_killed_by, assert_lines_in_order, assert_no_line, describe, stdout_lines,
};

/// Serialises the in-process tests of this binary.
static LOCK: Mutex<()> = Mutex::new(());

/// A scope that waits for a signal gives up after this long, so that a
/// lost signal fails the test with a `Timeout` reason instead of hanging.
const BACKSTOP: Duration = Duration::from_secs(10);

fn lock() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the others must still run.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises `signal` at the calling thread: its handlers have run when
/// this returns.
fn raise(signal: Signal) {
    signal_hook::low_level::raise(signal.number()).expect("raise");
}

/// Sends `signal` to the whole process, as `kill` from a shell does: any
/// thread may run the handler, at any time after this call.
fn kill_self(signal: Signal) {
    // SAFETY: kill(2) on our own pid with a valid signal number.
    let status = unsafe { libc::kill(libc::getpid(), signal.number()) };
    assert_eq!(status, 0, "kill({signal}) failed");
}

async fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        cancelable_tests::sleep(Duration::from_millis(1)).await;
    }
}

fn reason(outcome: &Result<(), Cancelled>) -> Option<&CancelReason> {
    outcome.as_ref().err().map(Cancelled::reason)
}

/// A scope listening for `signal` whose body raises it and then waits.
async fn cancelled_by(signal: Signal) -> Result<(), Cancelled> {
    CancelScope::new()
        .on_signal(signal)
        .timeout(BACKSTOP)
        .run(async move {
            raise(signal);
            std::future::pending::<()>().await
        })
        .await
}

/// An annotated function listening for Ctrl-C (and for SIGTERM, to check
/// that the list form names both); it raises SIGINT itself and waits.
#[cancellable(on_signal = ["SIGINT", "SIGTERM"], timeout = "10s")]
async fn interrupted_job() -> Result<(), Cancelled> {
    raise(Signal::Interrupt);
    std::future::pending::<()>().await;
    Ok(())
}

/// Names its signal as `Signal::from_str` reads it (lower case, spaces around);
/// it raises SIGTERM itself and waits.
#[cancellable(on_signal = " sigterm ", timeout = "10s")]
async fn terminated_job() -> Result<(), Cancelled> {
    raise(Signal::Terminate);
    std::future::pending::<()>().await;
    Ok(())
}

// Every in-process test holds [`LOCK`] around its run.
cancelable_tests::on_every_backend_with! {
    guard = lock();

    /// `#[cancellable(on_signal = ...)]`: a real SIGINT (Ctrl-C) ends the
    /// annotated function with reason `Signal(Interrupt)`.
    async fn ctrl_c_cancels_an_annotated_function() {
        let cancelled = interrupted_job().await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Signal(Signal::Interrupt));
        assert_eq!(cancelled.operation_name(), Some("interrupted_job"));
    }

    /// `on_signal = " sigterm "` listens for the signal that
    /// `" sigterm ".parse::<Signal>()` names: a real SIGTERM cancels it.
    async fn a_signal_named_in_lower_case_in_the_attribute_cancels_the_function() {
        assert_eq!(" sigterm ".parse::<Signal>(), Ok(Signal::Terminate));
        let cancelled = terminated_job().await.unwrap_err();
        assert_eq!(cancelled.reason(), &CancelReason::Signal(Signal::Terminate));
    }

    /// A real SIGINT cancels a scope listening for it, with reason
    /// `Signal(Interrupt)`.
    async fn sigint_cancels_a_listening_scope() {
        let outcome = cancelled_by(Signal::Interrupt).await;
        assert_eq!(
            reason(&outcome),
            Some(&CancelReason::Signal(Signal::Interrupt)),
            "{outcome:?}"
        );
        let cancelled = outcome.unwrap_err();
        assert_eq!(cancelled.reason().signal(), Some(Signal::Interrupt));
        assert!(cancelled.to_string().contains("SIGINT"), "{cancelled}");
    }

    /// A SIGTERM sent to the whole process (as `kill` does, handled on
    /// whichever thread the kernel picks) cancels a listening scope.
    async fn sigterm_sent_to_the_process_cancels_a_listening_scope() {
        let outcome = CancelScope::new()
            .on_signal(Signal::Terminate)
            .timeout(BACKSTOP)
            .run(async {
                kill_self(Signal::Terminate);
                std::future::pending::<()>().await
            })
            .await;
        assert_eq!(
            reason(&outcome),
            Some(&CancelReason::Signal(Signal::Terminate)),
            "{outcome:?}"
        );
    }

    /// Every signal that can be named can cancel a scope, and is reported
    /// as itself.
    async fn every_signal_cancels_a_scope_listening_for_it() {
        for signal in Signal::ALL {
            let outcome = cancelled_by(signal).await;
            assert_eq!(reason(&outcome), Some(&CancelReason::Signal(signal)), "{signal}");
        }
    }

    /// Two scopes listening for the same signal at the same time are both
    /// cancelled by one SIGINT.
    async fn two_scopes_listening_to_one_signal_are_both_cancelled() {
        let second_armed = AtomicBool::new(false);
        let first = CancelScope::new()
            .on_signal(Signal::Interrupt)
            .timeout(BACKSTOP)
            .run(async {
                wait_for(&second_armed).await;
                raise(Signal::Interrupt);
                std::future::pending::<()>().await
            });
        let second = CancelScope::new()
            .on_signal(Signal::Interrupt)
            .timeout(BACKSTOP)
            .run(async {
                second_armed.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await
            });
        let (first, second) = futures::join!(first, second);
        let interrupted = Some(&CancelReason::Signal(Signal::Interrupt));
        assert_eq!(reason(&first), interrupted, "first: {first:?}");
        assert_eq!(reason(&second), interrupted, "second: {second:?}");
    }

    /// With one scope listening for SIGUSR1 and one for SIGUSR2, each
    /// signal cancels only its own listener (both ways round).
    async fn a_signal_cancels_only_the_scopes_listening_for_it() {
        for (raised, other) in [
            (Signal::User2, Signal::User1),
            (Signal::User1, Signal::User2),
        ] {
            let bystander_armed = AtomicBool::new(false);
            let listener_done = AtomicBool::new(false);
            let listener = async {
                let outcome = CancelScope::new()
                    .on_signal(raised)
                    .timeout(BACKSTOP)
                    .run(async {
                        wait_for(&bystander_armed).await;
                        raise(raised);
                        std::future::pending::<()>().await
                    })
                    .await;
                listener_done.store(true, Ordering::SeqCst);
                outcome
            };
            // Listens for the other signal (so raising `raised` is never
            // fatal while it runs) and finishes on its own a little after
            // the listener was cancelled.
            let bystander = CancelScope::new()
                .on_signal(other)
                .timeout(BACKSTOP)
                .run(async {
                    bystander_armed.store(true, Ordering::SeqCst);
                    wait_for(&listener_done).await;
                    cancelable_tests::sleep(Duration::from_millis(30)).await;
                });
            let (listener, bystander) = futures::join!(listener, bystander);
            assert_eq!(
                reason(&listener),
                Some(&CancelReason::Signal(raised)),
                "listener of {raised}: {listener:?}"
            );
            assert!(bystander.is_ok(), "listener of {other} after {raised}: {bystander:?}");
        }
    }

    /// A scope listening for several signals reports the one that arrived.
    async fn a_scope_listening_for_several_signals_reports_the_one_raised() {
        let outcome = CancelScope::new()
            .on_signal(Signal::User1)
            .on_signal(Signal::User2)
            .on_signal(Signal::Hangup)
            .timeout(BACKSTOP)
            .run(async {
                raise(Signal::User2);
                std::future::pending::<()>().await
            })
            .await;
        assert_eq!(reason(&outcome), Some(&CancelReason::Signal(Signal::User2)), "{outcome:?}");
    }

    /// A nested scope listens, the outer one does not: the inner scope
    /// reports `Signal`, the outer one goes on and completes.
    async fn nested_inner_listener_reports_the_signal() {
        let outer = CancelScope::new()
            .timeout(BACKSTOP)
            .run(async {
                let inner = cancelled_by(Signal::Interrupt).await;
                // The outer scope was not cancelled: it can still wait.
                cancelable_tests::sleep(Duration::from_millis(5)).await;
                inner
            })
            .await;
        let inner = outer.expect("the outer scope does not listen for SIGINT");
        assert_eq!(
            reason(&inner),
            Some(&CancelReason::Signal(Signal::Interrupt)),
            "{inner:?}"
        );
    }

    /// The outer scope listens, the nested one does not: the inner scope
    /// is cancelled with `Parent(Signal)`, the outer one with `Signal`.
    ///
    /// The outer scope ends as soon as it sees its own cancellation after
    /// polling its body, and drops the body. The signal thread marks the
    /// outer token cancelled and wakes its scope *before* it cancels the
    /// token's children, so whether the inner scope got to *return* its
    /// error first is a race. Both outcomes are checked: a returned error
    /// must say `Parent(Signal)`, and the inner scope's own record must
    /// say so in every case.
    async fn nested_outer_listener_reaches_the_inner_scope_as_parent() {
        let expected = CancelReason::Parent(Box::new(CancelReason::Signal(Signal::Interrupt)));
        let inner_scope = CancelScope::new();
        let inner_handle = inner_scope.handle();
        let mut inner = None;
        let outer = CancelScope::new()
            .on_signal(Signal::Interrupt)
            .timeout(BACKSTOP)
            .run(async {
                inner = Some(
                    inner_scope
                        .run(async {
                            raise(Signal::Interrupt);
                            std::future::pending::<()>().await
                        })
                        .await,
                );
                std::future::pending::<()>().await
            })
            .await;
        assert_eq!(
            reason(&outer),
            Some(&CancelReason::Signal(Signal::Interrupt)),
            "{outer:?}"
        );
        // A cancelled token has its subtree cancelled before it reads as
        // cancelled, so the inner scope always ends, with Parent(Signal),
        // before the outer one.
        let inner = inner.expect("the inner scope ended before the outer one");
        assert_eq!(reason(&inner), Some(&expected), "{inner:?}");
        assert_eq!(inner.unwrap_err().reason().signal(), Some(Signal::Interrupt));
        assert_eq!(inner_handle.cancel_token().reason(), Some(expected));
    }
}

// ---- child processes ------------------------------------------------------

/// Runs `signal-child` with `args` (it arms `alarm(20)` on itself, so a
/// hung child dies of SIGALRM).
fn child(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signal-child"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn signal-child")
}

/// Runs `signal-child` with `args` and SIGINT ignored from before `exec`,
/// as a shell's background job or a program under `nohup` starts.
fn child_with_sigint_ignored(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_signal-child"));
    command.args(args).stdin(Stdio::null());
    // SAFETY: between fork and exec the closure only calls signal(2),
    // which is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("spawn signal-child")
}

#[track_caller]
fn assert_exited_normally(output: &Output, expected: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "the child should have lived and exited normally\n{}",
        describe(output)
    );
    assert_lines_in_order(output, expected);
}

/// Baseline: Ctrl-C kills a program that never listened for it (it used
/// a scope, but without signals).
#[test]
fn child_sigint_kills_a_program_that_never_listened() {
    let output = child(&["baseline"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "used a scope without signals",
            "raising SIGINT with no listening scope",
        ],
    );
}

/// Ctrl-C kills a program while its only scope listens for another signal.
#[test]
fn child_sigint_kills_while_only_another_signal_is_listened_for() {
    let output = child(&["other-signal"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "listening for SIGUSR1",
            "raising SIGINT with no listening scope",
        ],
    );
}

/// Scopes were cancelled by SIGINT and ended; then SIGINT kills again.
#[test]
fn child_default_behaviour_returns_after_the_last_listener_ends() {
    let output = child(&["restored"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "scope 1 ended: cancelled: Signal(Interrupt)",
            "scope 2 ended: cancelled: Signal(Interrupt)",
            "SIGINT disposition: default",
            "raising SIGINT with no listening scope",
        ],
    );
}

/// A listening scope dropped mid-run stops listening: SIGINT kills again.
#[test]
fn child_dropping_a_listening_scope_restores_the_default() {
    let output = child(&["dropped"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "scope armed, status Running",
            "scope dropped mid-run",
            "SIGINT disposition: default",
            "raising SIGINT with no listening scope",
        ],
    );
}

/// A signal ignored before the first listener (as `nohup` does) still
/// cancels a listening scope, and stays ignored once nobody listens.
#[test]
fn child_an_ignored_signal_stays_ignored() {
    let output = child(&["ignored"]);
    assert_exited_normally(
        &output,
        &[
            "scope ended: cancelled: Signal(Interrupt)",
            "SIGINT disposition: ignored",
            "sending SIGINT with no listening scope",
            "survived SIGINT: it stayed ignored",
        ],
    );
}

/// SIGINT ignored from before `exec` (a shell's background job): a scope
/// listening for it is still cancelled by it, and afterwards SIGINT is
/// ignored again — the disposition itself, which children inherit.
#[test]
fn child_an_inherited_sig_ign_stays_ignored() {
    let output = child_with_sigint_ignored(&["inherited-ignore"]);
    assert_exited_normally(
        &output,
        &[
            "SIGINT ignored at start",
            "scope ended: cancelled: Signal(Interrupt)",
            "SIGINT disposition: ignored",
            "sending SIGINT with no listening scope",
            "survived SIGINT: it stayed ignored",
        ],
    );
}

/// The application's own handler for `signal`, installed `before` or
/// `after` a `#[cancellable(timeout = "50ms", on_signal = ..)]` function
/// ran and finished, sees `signal` afterwards, and the process lives.
fn app_handler_sees_the_signal_after_a_finished_scope(handler: &str, order: &str, signal: Signal) {
    let output = child(&["after-scope", handler, order, signal.name()]);
    let sending = format!("sending {signal} with no listening scope");
    let seen = format!("the app's handler saw {signal}");
    assert_exited_normally(
        &output,
        &[
            "the annotated function finished: cancelled: Timeout",
            &sending,
            &seen,
            "exiting normally",
        ],
    );
}

/// `tokio::signal::ctrl_c()` waiting since before a finished SIGINT scope
/// returns at Ctrl-C; the process is not killed.
#[test]
fn child_tokio_ctrl_c_installed_before_a_finished_sigint_scope_returns_at_sigint() {
    app_handler_sees_the_signal_after_a_finished_scope("tokio", "before", Signal::Interrupt);
}

/// `tokio::signal::ctrl_c()` installed after a finished SIGINT scope
/// returns at Ctrl-C; the process is not killed.
#[test]
fn child_tokio_ctrl_c_installed_after_a_finished_sigint_scope_returns_at_sigint() {
    app_handler_sees_the_signal_after_a_finished_scope("tokio", "after", Signal::Interrupt);
}

/// `signal_hook::flag::register(SIGTERM, ..)` before a finished SIGTERM
/// scope: SIGTERM sets the flag; the process is not killed.
#[test]
fn child_signal_hook_flag_registered_before_a_finished_sigterm_scope_sees_sigterm() {
    app_handler_sees_the_signal_after_a_finished_scope("signal-hook", "before", Signal::Terminate);
}

/// `signal_hook::flag::register(SIGTERM, ..)` after a finished SIGTERM
/// scope: SIGTERM sets the flag; the process is not killed.
#[test]
fn child_signal_hook_flag_registered_after_a_finished_sigterm_scope_sees_sigterm() {
    app_handler_sees_the_signal_after_a_finished_scope("signal-hook", "after", Signal::Terminate);
}

/// A plain `sigaction` handler installed before a finished SIGINT scope
/// catches SIGINT; the process is not killed.
#[test]
fn child_a_sigaction_handler_installed_before_a_finished_sigint_scope_catches_sigint() {
    app_handler_sees_the_signal_after_a_finished_scope("sigaction", "before", Signal::Interrupt);
}

/// A plain `sigaction` handler installed after a finished SIGINT scope
/// catches SIGINT; the process is not killed.
#[test]
fn child_a_sigaction_handler_installed_after_a_finished_sigint_scope_catches_sigint() {
    app_handler_sees_the_signal_after_a_finished_scope("sigaction", "after", Signal::Interrupt);
}

/// No handler of the application's own: after a finished SIGINT scope,
/// Ctrl-C kills the process (the default action).
#[test]
fn child_sigint_kills_after_a_finished_sigint_scope_without_an_app_handler() {
    let output = child(&["after-scope", "none", "before", "SIGINT"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "the annotated function finished: cancelled: Timeout",
            "sending SIGINT with no listening scope",
        ],
    );
}

/// The CLI convention: the first Ctrl-C cancels the listening scope, a
/// second one while its shielded cleanup still runs kills the process
/// (the default action, as without cancelable).
#[test]
fn child_second_sigint_during_shielded_cleanup_kills() {
    let output = child(&["second-signal", "shielded", "none"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "raising the first SIGINT",
            "shielded cleanup started: Some(Signal(Interrupt))",
            "raising a second SIGINT",
        ],
    );
    assert_no_line(
        &output,
        "shielded cleanup finished",
        "the second SIGINT did not kill",
    );
}

/// Two threads take a signal at once while a scope listens, the
/// application's handler for it being one-shot (`SA_RESETHAND`): that
/// handler runs exactly once, as the kernel would run it, and the other
/// arrival takes the default action it left behind.
#[test]
fn child_a_one_shot_handler_runs_once_when_two_threads_take_the_signal() {
    let output = child(&["one-shot-race"]);
    assert_killed_by(
        &output,
        Signal::User2,
        &[
            "installed a one-shot handler",
            "two threads raise SIGUSR2 at once",
        ],
    );
    let calls = stdout_lines(&output)
        .iter()
        .filter(|line| *line == "one-shot handler called")
        .count();
    assert_eq!(calls, 1, "{}", describe(&output));
}

/// A second Ctrl-C while the cancelled scope's `on_cancel` callback runs
/// kills the process too.
#[test]
fn child_second_sigint_during_on_cancel_kills() {
    let output = child(&["second-signal", "on-cancel", "none"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "raising the first SIGINT",
            "on_cancel started: Signal(Interrupt)",
            "raising a second SIGINT",
        ],
    );
    assert_no_line(
        &output,
        "on_cancel finished",
        "the second SIGINT did not kill",
    );
}

/// A second Ctrl-C during the `on_cancel` callback kills the process
/// even when another scope started listening in the meantime: the
/// cancelled scope still cleans up.
#[test]
fn child_second_sigint_during_on_cancel_kills_while_another_scope_listens() {
    let output = child(&["second-signal", "on-cancel-beside-a-listener", "none"]);
    assert_killed_by(
        &output,
        Signal::Interrupt,
        &[
            "raising the first SIGINT",
            "on_cancel started: Signal(Interrupt)",
            "another scope listens for SIGINT",
            "raising a second SIGINT",
        ],
    );
    assert_no_line(
        &output,
        "on_cancel finished",
        "the second SIGINT did not kill",
    );
}

/// With the application's own Ctrl-C handler, a second SIGINT during the
/// cleanup reaches that handler instead, and the process lives.
fn second_sigint_during_cleanup_reaches_the_app_handler(cleanup: &str, handler: &str) {
    let output = child(&["second-signal", cleanup, handler]);
    let finished = match cleanup {
        "shielded" => "shielded cleanup finished",
        _ => "on_cancel finished",
    };
    assert_exited_normally(
        &output,
        &[
            "raising the first SIGINT",
            "raising a second SIGINT",
            finished,
            "scope ended: cancelled: Signal(Interrupt)",
            "the app's handler saw SIGINT",
            "exiting normally",
        ],
    );
}

#[test]
fn child_second_sigint_during_shielded_cleanup_reaches_tokio_ctrl_c() {
    second_sigint_during_cleanup_reaches_the_app_handler("shielded", "tokio");
}

#[test]
fn child_second_sigint_during_on_cancel_reaches_tokio_ctrl_c() {
    second_sigint_during_cleanup_reaches_the_app_handler("on-cancel", "tokio");
}

#[test]
fn child_second_sigint_during_shielded_cleanup_reaches_a_sigaction_handler() {
    second_sigint_during_cleanup_reaches_the_app_handler("shielded", "sigaction");
}

#[test]
fn child_second_sigint_during_on_cancel_reaches_a_sigaction_handler() {
    second_sigint_during_cleanup_reaches_the_app_handler("on-cancel", "sigaction");
}

/// Listening fails when no file descriptor is left: the scope ends at
/// once with `CancelReason::Error` carrying EMFILE, nothing panics, and
/// listening works again once descriptors are free.
#[test]
fn child_a_signal_that_cannot_be_registered_ends_the_scope_with_the_os_error() {
    let output = child(&["emfile"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_lines_in_order(
        &output,
        &[
            "os error: EMFILE",
            "recovered: cancelled: Signal(Interrupt)",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("caused by: Too many open files"),
        "{}",
        describe(&output)
    );
}

/// A burst of 1,000 SIGINTs, in a program with its own SIGINT handler,
/// while one listener stays alive and other listening scopes start and
/// finish: no crash, every scope that waited for a signal got one, the
/// long-lived listener ends with `Signal(Interrupt)`, the app's handler
/// caught the signals; once the last listener ended, the app's handler is
/// the disposition again and catches SIGINT.
mod child_burst_of_1000_sigints {
    use super::*;

    fn burst(backend: &str) {
        let output = child(&["burst", backend]);
        assert_exited_normally(
            &output,
            &[
                "long-lived listener cancelled: Signal(Interrupt)",
                "burst of 1000 SIGINTs survived",
                "SIGINT disposition: the app's handler",
                "raising SIGINT with no listening scope",
                "the app's handler caught it",
            ],
        );
    }

    #[test]
    fn tokio_current_thread() {
        burst("tokio-current-thread");
    }

    #[test]
    fn tokio_multi_thread() {
        burst("tokio-multi-thread");
    }

    #[test]
    fn async_std() {
        burst("async-std");
    }

    #[test]
    fn smol() {
        burst("smol");
    }

    #[test]
    fn block_on() {
        burst("block-on");
    }
}
