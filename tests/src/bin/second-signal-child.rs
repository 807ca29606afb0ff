//! Child process of the second-signal tests (`tests/tests/second_signal.rs`):
//! what a second Ctrl-C during a grace period does, as set with
//! `on_second_signal`, can only be seen from outside (whether it kills the
//! program).
//!
//! Usage: `second-signal-child scope|group end-grace|exit BACKEND`. The
//! child resets SIGINT to its default action, arms `alarm(20)`, runs a
//! scope (or a task group) listening for SIGINT with a grace period of
//! 8 s, raises a first SIGINT, and in its cleanup (4 s, shielded) a second
//! one. With `end-grace` the second SIGINT ends the grace at once: the
//! program goes on, prints `summary written`, then raises a third SIGINT,
//! which — nobody listening any more — kills it. With `exit` (the
//! default) the second SIGINT kills it. Exit codes: `1` a check failed,
//! `2` bad usage, `3` survived a signal that should have killed it.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("second-signal-child: signals are supported on Unix only");
    std::process::exit(2);
}

#[cfg(unix)]
mod unix {
    use std::future::Future;
    use std::process::exit;
    use std::time::{Duration, Instant};

    use cancelable::group::TaskGroup;
    use cancelable::{checkpoint, shield, CancelScope, Cancelled, SecondSignal, Signal};
    use cancelable_tests::child_output::{fail, say};

    const GRACE: Duration = Duration::from_secs(8);
    const CLEANUP: Duration = Duration::from_secs(4);
    const BACKSTOP: Duration = Duration::from_secs(10);

    fn raise(signal: Signal) {
        if let Err(error) = signal_hook::low_level::raise(signal.number()) {
            fail(format_args!("raise({signal}) failed: {error}"));
        }
    }

    pub(super) fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let [what, action, backend] = args[..] else {
            eprintln!("usage: second-signal-child scope|group end-grace|exit BACKEND");
            exit(2);
        };
        let action = match action {
            "end-grace" => SecondSignal::EndGrace,
            "exit" => SecondSignal::Exit,
            _ => {
                eprintln!("unknown action `{action}`");
                exit(2);
            }
        };
        // SAFETY: plain libc calls with valid arguments, made before this
        // program starts any thread or installs any handler of its own.
        unsafe {
            libc::alarm(20);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        let started = Instant::now();
        match what {
            "scope" => on(backend, scope(action)),
            "group" => on(backend, group(action)),
            _ => {
                eprintln!("unknown mode `{what}`");
                exit(2);
            }
        }
        if started.elapsed() < CLEANUP {
            say("ended before the cleanup did");
        }
        // The program goes on after its scope: writes what it must.
        say("summary written");
        say("raising SIGINT with no listening scope");
        raise(Signal::SIGINT);
        std::thread::sleep(Duration::from_secs(2));
        say("survived SIGINT");
        exit(3);
    }

    fn on<F: Future<Output = ()> + Send + 'static>(backend: &str, body: F) {
        match backend {
            "tokio-current-thread" => cancelable::testing::tokio_current_thread(body),
            "tokio-multi-thread" => cancelable::testing::tokio_multi_thread(body),
            "async-std" => cancelable::testing::async_std(body),
            "smol" => cancelable::testing::smol(body),
            "block-on" => cancelable::testing::block_on(body),
            other => {
                eprintln!("unknown backend `{other}`");
                exit(2);
            }
        }
    }

    /// Waits for the first SIGINT (raised here), then cleans up, shielded,
    /// raising the second one at its start.
    async fn work_then_clean_up() -> Result<(), Cancelled> {
        checkpoint().await?;
        say("raising the first SIGINT");
        raise(Signal::SIGINT);
        let Err(cancelled) = cancelable::sleep(BACKSTOP).await else {
            fail("the sleep was not cut short by the first SIGINT");
        };
        say(format_args!("cleanup started: {:?}", cancelled.reason()));
        shield(async {
            say("raising a second SIGINT");
            raise(Signal::SIGINT);
            cancelable::testing::sleep(CLEANUP).await;
            say("cleanup finished");
        })
        .await;
        Err(cancelled)
    }

    async fn scope(action: SecondSignal) {
        let outcome = CancelScope::new()
            .on_signal(Signal::SIGINT)
            .on_second_signal(action)
            .timeout(BACKSTOP)
            .grace(GRACE)
            .try_run(work_then_clean_up())
            .await;
        match outcome {
            Err(cancelled) => say(format_args!(
                "scope ended: {:?}, {:?}",
                cancelled.reason(),
                cancelled.grace_outcome()
            )),
            Ok(()) => fail("the scope completed"),
        }
    }

    async fn group(action: SecondSignal) {
        let outcome = TaskGroup::new()
            .on_signal(Signal::SIGINT)
            .on_second_signal(action)
            .timeout(BACKSTOP)
            .grace(GRACE)
            .run(|group| async move {
                group.start_soon(work_then_clean_up());
                Ok::<_, Cancelled>(())
            })
            .with_summary()
            .await;
        match outcome {
            (Err(error), summary) if error.is_cancelled() => say(format_args!(
                "group ended: {:?}; {summary}",
                error.cancelled().map(Cancelled::reason)
            )),
            (other, _) => fail(format_args!("the group ended {other:?}")),
        }
    }
}
