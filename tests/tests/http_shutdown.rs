//! `GracefulShutdown` stopped by real signals, in a child process
//! (`src/bin/http-shutdown-child.rs`): stop accepting, the grace, 503 for
//! what is cancelled after it (even a handler returning in the very poll
//! it is cancelled), the hard deadline, and a second Ctrl-C.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cancelable::Signal;
use cancelable_tests::http::{fetch, get, run, text, Version};
use http::StatusCode;
use tokio::io::AsyncWriteExt;

/// A running child server.
struct Server {
    child: Child,
    addr: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(grace_ms: u64, hard_ms: u64) -> Server {
        Server::start_with(grace_ms, hard_ms, "exit")
    }

    /// With `second_signal` the child's `SECOND_SIGNAL`: `exit` or `end-grace`.
    fn start_with(grace_ms: u64, hard_ms: u64, second_signal: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_http-shutdown-child"))
            .args([grace_ms.to_string(), hard_ms.to_string()])
            .env("SECOND_SIGNAL", second_signal)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn http-shutdown-child");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("first line");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stdout,
        }
    }

    /// Reads the child's output up to the line `expected`.
    fn expect_line(&mut self, expected: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).expect("a line");
            assert!(read > 0, "the child exited before printing {expected:?}");
            if line.trim() == expected {
                return;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: Signal) {
        // SAFETY: kill(2) on our own child with a valid signal number.
        let status = unsafe { libc::kill(self.child.id() as libc::pid_t, signal.number()) };
        assert_eq!(status, 0, "kill({signal})");
    }

    /// Sends `GET path` on a connection of its own, waits until the
    /// handler printed `<path> started`, then closes the connection: a
    /// client that went away.
    async fn leave_after_start(&mut self, path: &str) {
        let mut connection = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        connection
            .write_all(format!("GET /{path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
            .await
            .expect("send the request");
        let started = format!("{path} started");
        tokio::task::block_in_place(|| self.expect_line(&started));
        drop(connection);
        // Let the server see the closed connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Waits (on a blocking thread) for the child to exit; its exit
    /// status and the rest of its output.
    async fn exited(self) -> (std::process::ExitStatus, String) {
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .expect("wait")
    }

    /// [`exited`](Self::exited), asserting the exit was a success; the
    /// rest of its output.
    async fn exited_well(self) -> String {
        let (status, output) = self.exited().await;
        assert!(status.success(), "{status:?}: {output}");
        output
    }

    /// Waits for the child to exit; its exit status and the rest of its
    /// output.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let mut output = String::new();
        self.stdout.read_to_string(&mut output).expect("output");
        let status = self.child.wait().expect("wait");
        (status, output)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Starts `path` on its own connection.
fn in_flight(
    server: &Server,
    path: &str,
) -> tokio::task::JoinHandle<(http::Response<bytes::Bytes>, Instant)> {
    let addr = server.addr;
    let request = get(&server.url(path), &[]);
    tokio::spawn(async move {
        let response = fetch(addr, Version::Http1, request).await;
        (response, Instant::now())
    })
}

#[test]
fn sigterm_stops_accepting_lets_requests_finish_in_the_grace_and_cancels_the_rest_with_503() {
    run("shutdown_grace", async {
        let server = Server::start(600, 10_000);
        let quick = in_flight(&server, "/quick");
        let stuck = in_flight(&server, "/stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.signal(Signal::Terminate);
        let signalled = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            tokio::net::TcpStream::connect(server.addr).await.is_err(),
            "still accepting connections after SIGTERM"
        );
        let (quick, _) = quick.await.expect("quick");
        assert_eq!(text(&quick), "quick done");
        let (stuck, answered) = stuck.await.expect("stuck");
        assert_eq!(stuck.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = text(&stuck);
        assert!(body.contains("server shutting down"), "{body}");
        assert!(body.contains("SIGTERM"), "{body}");
        assert!(body.contains("grace of 600ms ran out"), "{body}");
        assert!(answered - signalled >= Duration::from_millis(600));
        let output = server.exited_well().await;
        assert!(
            output.contains(
                "shut down on SIGTERM: the grace ran out; requests in flight were cancelled"
            ),
            "{output}"
        );
        assert!(signalled.elapsed() < Duration::from_secs(8), "{output}");
    });
}

#[test]
fn a_request_returning_its_error_in_the_poll_the_grace_runs_out_is_answered_503_not_with_its_own_answer(
) {
    run("shutdown_racing", async {
        let mut server = Server::start(100, 10_000);
        let racing = in_flight(&server, "/racing");
        tokio::task::block_in_place(|| server.expect_line("racing in flight"));
        server.signal(Signal::Terminate);
        let (racing, _) = racing.await.expect("racing");
        let body = text(&racing);
        assert_eq!(racing.status(), StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("server shutting down"), "{body}");
        assert!(body.contains("SIGTERM"), "{body}");
        assert!(!body.contains("the handler's own answer"), "{body}");
        let output = server.exited_well().await;
        assert!(
            output.contains(
                "shut down on SIGTERM: the grace ran out; requests in flight were cancelled"
            ),
            "{output}"
        );
    });
}

#[test]
fn requests_done_within_the_grace_let_the_server_drain_before_it() {
    run("shutdown_drain", async {
        let server = Server::start(5_000, 10_000);
        let quick = in_flight(&server, "/quick");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.signal(Signal::Interrupt);
        let signalled = Instant::now();
        let (quick, _) = quick.await.expect("quick");
        assert_eq!(text(&quick), "quick done");
        let output = server.exited_well().await;
        assert!(
            output.contains("shut down on SIGINT: every request finished within the grace"),
            "{output}"
        );
        assert!(signalled.elapsed() < Duration::from_secs(4), "{output}");
    });
}

#[test]
fn the_hard_deadline_ends_the_shutdown_with_a_request_still_running() {
    run("shutdown_hard", async {
        let server = Server::start(200, 1_000);
        let _unscoped = in_flight(&server, "/unscoped");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.signal(Signal::Terminate);
        let signalled = Instant::now();
        let (status, output) = server.exited().await;
        let took = signalled.elapsed();
        assert!(status.success(), "{status:?}: {output}");
        assert!(output.contains("the hard deadline passed"), "{output}");
        assert!(
            took >= Duration::from_millis(1_000) && took < Duration::from_secs(8),
            "{took:?}"
        );
    });
}

#[test]
fn a_second_sigint_ends_the_shutdown_at_once() {
    run("shutdown_second_signal", async {
        let server = Server::start(200, 20_000);
        let _unscoped = in_flight(&server, "/unscoped");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.signal(Signal::Interrupt);
        // Past the grace: the server waits for the hard deadline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.signal(Signal::Interrupt);
        let signalled = Instant::now();
        let output = server.exited_well().await;
        assert!(
            output.contains("a second SIGINT ended it at once"),
            "{output}"
        );
        assert!(signalled.elapsed() < Duration::from_secs(5), "{output}");
    });
}

/// The position of the first line of `output` containing `needle`.
fn line_of(output: &str, needle: &str) -> Option<usize> {
    output.lines().position(|line| line.contains(needle))
}

/// Asserts `output` has a line with `needle` before the shutdown's
/// report; `what` says what that line shows.
#[track_caller]
fn assert_before_the_report(output: &str, needle: &str, what: &str) {
    let line = line_of(output, needle);
    let report = line_of(output, "shut down on SIGTERM");
    assert!(
        line.is_some() && line < report,
        "{what} before the report: {output}"
    );
}

#[test]
fn a_detached_handler_whose_client_left_runs_to_completion_before_the_shutdown_reports() {
    run("shutdown_detached_finishes", async {
        let mut server = Server::start(5_000, 10_000);
        server.leave_after_start("detach").await;
        server.signal(Signal::Terminate);
        let output = server.exited_well().await;
        assert_before_the_report(
            &output,
            "detach finished",
            "the detached handler must finish",
        );
        assert!(
            output.contains("every request finished within the grace")
                && output.contains("1 handler finished"),
            "{output}"
        );
    });
}

#[test]
fn a_notified_handler_whose_client_left_cleans_up_in_its_grace_before_the_shutdown_reports() {
    run("shutdown_notified_cleans_up", async {
        let mut server = Server::start(5_000, 10_000);
        server.leave_after_start("notify").await;
        server.signal(Signal::Terminate);
        let output = server.exited_well().await;
        assert_before_the_report(
            &output,
            "notify cleaned up after: ",
            "the notified handler must clean up",
        );
        assert!(output.contains("client disconnected"), "{output}");
    });
}

#[test]
fn a_detached_handler_still_running_when_the_grace_ends_is_cancelled_cleans_up_and_is_counted() {
    run("shutdown_detached_cancelled", async {
        let mut server = Server::start(300, 10_000);
        server.leave_after_start("detach-long").await;
        server.signal(Signal::Terminate);
        let output = server.exited_well().await;
        assert_before_the_report(
            &output,
            "detach-long cleaned up after: ",
            "the detached handler must be cancelled and clean up",
        );
        assert!(output.contains("grace of 300ms ran out"), "{output}");
        assert!(
            output.contains("the grace ran out; requests in flight were cancelled")
                && output.contains("1 handler cancelled"),
            "{output}"
        );
    });
}

#[test]
fn two_sigterms_at_once_end_the_shutdown_with_its_report_never_with_the_default_action() {
    run("shutdown_two_signals_at_once", async {
        let mut seen_twice = 0;
        for attempt in 0..10 {
            let server = Server::start(500, 10_000);
            let _stuck = in_flight(&server, "/stuck");
            tokio::time::sleep(Duration::from_millis(100)).await;
            server.signal(Signal::Terminate);
            server.signal(Signal::Terminate);
            let (status, output) = server.exited().await;
            assert!(
                status.success()
                    && output.contains("shut down on SIGTERM")
                    && output.contains("exit"),
                "attempt {attempt}: {status:?} (a SIGTERM took its default action): {output}"
            );
            // The kernel merges a signal sent while the same one is still
            // pending: then there was one arrival, and the grace runs out.
            if output.contains("a second SIGTERM ended it at once") {
                seen_twice += 1;
            } else {
                assert!(
                    output.contains("the grace ran out"),
                    "attempt {attempt}: {output}"
                );
            }
        }
        eprintln!("the second SIGTERM arrived on its own in {seen_twice} of 10 attempts");
    });
}

/// `on_second_signal(SecondSignal::EndGrace)`: a second SIGTERM during a
/// long grace ends only the grace: the request in flight is cancelled and
/// answered `503` at once, and the server then drains and returns.
#[test]
fn a_second_sigterm_set_to_end_the_grace_answers_the_requests_in_flight_with_503() {
    run("shutdown_second_signal_ends_grace", async {
        let server = Server::start_with(20_000, 30_000, "end-grace");
        let stuck = in_flight(&server, "/stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.signal(Signal::SIGTERM);
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.signal(Signal::SIGTERM);
        let signalled = Instant::now();
        let (stuck, _) = stuck.await.expect("stuck");
        assert_eq!(stuck.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = text(&stuck);
        assert!(body.contains("server shutting down"), "{body}");
        assert!(body.contains("a second SIGTERM ended the grace"), "{body}");
        let output = server.exited_well().await;
        assert!(
            output.contains(
                "shut down on SIGTERM: a second SIGTERM ended the grace; requests in flight were cancelled"
            ),
            "{output}"
        );
        // Well before the 20 s grace.
        assert!(signalled.elapsed() < Duration::from_secs(8), "{output}");
    });
}
