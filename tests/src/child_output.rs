//! The line protocol of the test child processes: the child prints lines
//! ([`say`], [`fail`]); the signal, grace and shutdown tests run it for
//! real and assert on its exit and its stdout lines.

use std::io::Write;
use std::process::Output;

/// In the child: prints a line and flushes it, so that the parent sees it
/// even if the next thing that happens is a signal killing the process.
pub fn say(line: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// In the child: reports a failed check (`FAILED: ...`) and exits with
/// status 1.
pub fn fail(line: impl std::fmt::Display) -> ! {
    say(format_args!("FAILED: {line}"));
    std::process::exit(1);
}

/// The child's exit status, stdout and stderr, for a failure message.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The child's stdout, a line each.
pub fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts the child printed `expected` lines in that order (other lines
/// may come between them).
#[track_caller]
pub fn assert_lines_in_order(output: &Output, expected: &[&str]) {
    let lines = stdout_lines(output);
    let mut rest = lines.iter();
    for want in expected {
        assert!(
            rest.any(|line| line == want),
            "missing line `{want}` (in this order)\n{}",
            describe(output)
        );
    }
}

/// Asserts the child was killed by `signal` and printed `expected` lines,
/// in that order (other lines may come between them).
#[track_caller]
pub fn assert_killed_by(output: &Output, signal: cancelable::Signal, expected: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(signal.number()),
        "the child should have been killed by {signal}\n{}",
        describe(output)
    );
    assert_lines_in_order(output, expected);
}

/// Asserts the child never printed the line `unwanted`; `why` leads the
/// failure message.
#[track_caller]
pub fn assert_no_line(output: &Output, unwanted: &str, why: &str) {
    assert!(
        !stdout_lines(output).iter().any(|line| line == unwanted),
        "{why}: printed `{unwanted}`\n{}",
        describe(output)
    );
}

/// A running child process whose stdout lines arrive as it prints them;
/// killed and reaped when dropped.
pub struct LineChild {
    /// The child process.
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LineChild {
    /// Spawns `command` with stdin closed and stdout piped to a reader
    /// thread.
    pub fn spawn(command: &mut std::process::Command) -> LineChild {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{command:?} starts: {error}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        LineChild { child, lines }
    }

    /// The next line; panics if none comes within 30 s.
    #[track_caller]
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the child prints a line within 30 s")
    }

    /// Every line printed within `limit`.
    pub fn lines_within(&self, limit: std::time::Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + limit;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
