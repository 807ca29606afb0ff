//! A process exits when its `main` returns, whatever cancelable left
//! behind: a blocking condition predicate that never returns, abandoned by
//! its timed-out scope, must not hold up a tokio runtime's shutdown or the
//! process's exit, on any backend. Each case runs in a child process
//! (`src/bin/exit-child.rs`) that must exit within a generous bound.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far beyond the child's 50 ms timeout, far below a hang.
const EXIT_BOUND: Duration = Duration::from_secs(20);

fn exits_after_stuck_predicate(backend: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exit-child"))
        .arg(backend)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exit-child");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for exit-child") {
            break status;
        }
        if start.elapsed() > EXIT_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {backend} child did not exit within {EXIT_BOUND:?} after its scope ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "{backend} child failed: {status}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ended: timeout"),
        "{backend} child printed: {stdout}"
    );
}

#[test]
fn stuck_blocking_predicate_does_not_hold_up_exit_on_tokio_current_thread() {
    exits_after_stuck_predicate("tokio-current-thread");
}

#[test]
fn stuck_blocking_predicate_does_not_hold_up_exit_on_tokio_multi_thread() {
    exits_after_stuck_predicate("tokio-multi-thread");
}

#[test]
fn stuck_blocking_predicate_does_not_hold_up_exit_on_async_std() {
    exits_after_stuck_predicate("async-std");
}

#[test]
fn stuck_blocking_predicate_does_not_hold_up_exit_on_smol() {
    exits_after_stuck_predicate("smol");
}

#[test]
fn stuck_blocking_predicate_does_not_hold_up_exit_on_block_on() {
    exits_after_stuck_predicate("block-on");
}
