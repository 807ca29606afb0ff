//! Child process of the graceful-shutdown tests (`tests/http_shutdown.rs`):
//! an axum server under `GracefulShutdown`, which the tests stop with real
//! signals.
//!
//! Usage: `http-shutdown-child <grace-ms> <hard-deadline-ms>` (with
//! `SECOND_SIGNAL=end-grace` in the environment, a second signal only ends
//! the grace: `GracefulShutdown::on_second_signal`). Prints
//! `listening <port>` once it accepts connections, and the shutdown
//! report when `serve` returns, then exits 0. Routes:
//! * `/quick` — answers after 300 ms;
//! * `/stuck` — works for a minute, checking for cancellation;
//! * `/racing` — prints `racing in flight`, then returns its own answer in
//!   the very poll in which the shutdown cancels it
//!   (`cancelable_tests::http::returns_in_the_poll_it_is_cancelled`);
//! * `/unscoped` — outside the request scopes: sleeps for a minute, and
//!   is not cancelled by the shutdown;
//! * `/detach` (1 s of work) and `/detach-long` (a minute) under
//!   `DisconnectMode::Detach`, `/notify` (a minute) under
//!   `DisconnectMode::Notify`, both layers with a grace of 2 s: each
//!   prints `<route> started`, then `<route> finished` when its work is
//!   done, or, once it sees its cancellation, cleans up for 300 ms and
//!   prints `<route> cleaned up after: <cancellation>`.
//!
//! SIGINT and SIGTERM are reset to their default action and unblocked
//! first (a non-interactive shell starts background jobs with SIGINT
//! ignored), and `alarm(30)` kills a child that hangs.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("http-shutdown-child: signals are supported on Unix only");
    std::process::exit(2);
}

#[cfg(unix)]
mod unix {
    use std::io::Write;

    use cancelable_tests::child_output::say;
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use cancelable::http::{DisconnectMode, GracefulShutdown, RequestScope};
    use cancelable::{checkpoint, Cancelled, Signal};
    use cancelable_tests::http::returns_in_the_poll_it_is_cancelled;

    pub(super) fn main() {
        let args: Vec<u64> = std::env::args()
            .skip(1)
            .map(|arg| arg.parse().expect("milliseconds"))
            .collect();
        let [grace, hard] = args[..] else {
            eprintln!("usage: http-shutdown-child <grace-ms> <hard-deadline-ms>");
            std::process::exit(2);
        };
        // SAFETY: plain libc calls with valid arguments, made before this
        // program starts any thread or installs any handler.
        unsafe {
            libc::alarm(30);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [Signal::Interrupt, Signal::Terminate] {
                libc::signal(signal.number(), libc::SIG_DFL);
                libc::sigaddset(&mut set, signal.number());
            }
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(serve(
                Duration::from_millis(grace),
                Duration::from_millis(hard),
            ));
    }

    async fn stuck() -> Result<&'static str, String> {
        async {
            for _ in 0..6_000 {
                checkpoint().await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, Cancelled>("worked a minute")
        }
        .await
        .map_err(|cancelled| cancelled.to_string())
    }

    /// Works for `total` checking for cancellation; cleans up for 300 ms
    /// once cancelled.
    async fn work(name: &'static str, total: Duration) -> Result<&'static str, String> {
        say(format!("{name} started"));
        let started = std::time::Instant::now();
        while started.elapsed() < total {
            if let Err(cancelled) = checkpoint().await {
                tokio::time::sleep(Duration::from_millis(300)).await;
                say(format!("{name} cleaned up after: {cancelled}"));
                return Err(cancelled.to_string());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        say(format!("{name} finished"));
        Ok("worked")
    }

    async fn serve(grace: Duration, hard: Duration) {
        let mut shutdown = GracefulShutdown::new().grace(grace).hard_deadline(hard);
        if std::env::var("SECOND_SIGNAL").as_deref() == Ok("end-grace") {
            shutdown = shutdown.on_second_signal(cancelable::SecondSignal::EndGrace);
        }
        let scoped = Router::new()
            .route(
                "/quick",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "quick done"
                }),
            )
            .route("/stuck", get(stuck))
            .route(
                "/racing",
                get(|scope: RequestScope| async move {
                    println!("racing in flight");
                    std::io::stdout().flush().expect("flush");
                    returns_in_the_poll_it_is_cancelled(scope).await
                }),
            )
            .layer(shutdown.layer());
        let detached = Router::new()
            .route("/detach", get(|| work("detach", Duration::from_secs(1))))
            .route(
                "/detach-long",
                get(|| work("detach-long", Duration::from_secs(60))),
            )
            .layer(
                shutdown
                    .layer()
                    .on_disconnect(DisconnectMode::Detach)
                    .grace(Duration::from_secs(2)),
            );
        let notified = Router::new()
            .route("/notify", get(|| work("notify", Duration::from_secs(60))))
            .layer(
                shutdown
                    .layer()
                    .on_disconnect(DisconnectMode::Notify)
                    .grace(Duration::from_secs(2)),
            );
        let app = scoped.merge(detached).merge(notified).route(
            "/unscoped",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "slept a minute"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        println!("listening {port}");
        std::io::stdout().flush().expect("flush");
        match shutdown.serve(listener, app).await {
            Ok(report) => println!("{report}"),
            Err(error) => println!("serve failed: {error}"),
        }
        println!("exit");
    }
}
