//! Reading what a child process printed: the signal and grace tests run
//! real child processes and assert on their exit and their stdout lines.

use std::process::Output;

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
