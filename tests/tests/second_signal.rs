//! What a second Ctrl-C during a grace period does, as set with
//! `on_second_signal` on a scope or a task group: seen from outside, in a
//! child process (`src/bin/second-signal-child.rs`) on every backend.
//! With `SecondSignal::EndGrace` the second SIGINT ends the grace at once
//! and the program goes on (it writes its summary; a third SIGINT, once
//! nobody listens, kills it as usual); with `SecondSignal::Exit`, the
//! default, the second SIGINT kills it.
#![cfg(unix)]

use std::process::{Command, Output, Stdio};

use cancelable::Signal;
use cancelable_tests::child_output::{assert_killed_by, assert_no_line, describe, stdout_lines};

const BACKENDS: [&str; 5] = [
    "tokio-current-thread",
    "tokio-multi-thread",
    "async-std",
    "smol",
    "block-on",
];

fn child(what: &str, action: &str, backend: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_second-signal-child"))
        .args([what, action, backend])
        .stdin(Stdio::null())
        .output()
        .expect("spawn second-signal-child")
}

#[test]
fn a_second_sigint_set_to_end_the_grace_lets_the_program_finish() {
    for backend in BACKENDS {
        let output = child("scope", "end-grace", backend);
        // Killed at last by the third SIGINT, raised once the scope ended.
        assert_killed_by(
            &output,
            Signal::Interrupt,
            &[
                "raising the first SIGINT",
                "cleanup started: Signal(Interrupt)",
                "raising a second SIGINT",
                "scope ended: Signal(Interrupt), DroppedAfterGrace",
                "ended before the cleanup did",
                "summary written",
                "raising SIGINT with no listening scope",
            ],
        );
        assert_no_line(&output, "cleanup finished", backend);
    }
}

#[test]
fn a_second_sigint_set_to_end_the_grace_ends_a_groups_grace_and_the_program_goes_on() {
    for backend in BACKENDS {
        let output = child("group", "end-grace", backend);
        assert_killed_by(
            &output,
            Signal::Interrupt,
            &[
                "raising the first SIGINT",
                "cleanup started: Parent(Signal(Interrupt))",
                "raising a second SIGINT",
                "group ended: Some(Signal(Interrupt)); 1 children: 0 ok, 0 failed, 0 timed out, 1 cancelled; cancelled: #1",
                "ended before the cleanup did",
                "summary written",
                "raising SIGINT with no listening scope",
            ],
        );
        assert_no_line(&output, "cleanup finished", backend);
    }
}

#[test]
fn a_second_sigint_set_to_exit_ends_the_program_as_by_default() {
    for (what, backend) in [
        ("scope", "tokio-current-thread"),
        ("group", "block-on"),
        ("scope", "smol"),
    ] {
        let output = child(what, "exit", backend);
        assert_killed_by(
            &output,
            Signal::Interrupt,
            &["raising the first SIGINT", "raising a second SIGINT"],
        );
        let lines = stdout_lines(&output);
        assert!(
            !lines.iter().any(
                |line| line.ends_with("ended: Signal(Interrupt), DroppedAfterGrace")
                    || line.starts_with("group ended")
                    || line == "summary written"
            ),
            "{what} on {backend}: {}",
            describe(&output)
        );
    }
}
