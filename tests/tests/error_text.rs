//! What cancellation errors say: the reason in words, when the scope was
//! cancelled and when it ended.

use std::time::{Duration, Instant};

use cancelable::{CancelReason, CancelScope, CancellationToken, Cancelled};
use cancelable_tests::{on_every_backend, sleep};

/// A bound far above any honest timing on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// A scope named `export` over a body that never ends, linked to a token
/// an operator cancelled with a message: the token, and the scope's error.
async fn export_stopped_by_operator() -> (CancellationToken, Cancelled) {
    let stop = CancellationToken::new();
    stop.cancel_with(CancelReason::Manual, "operator pressed stop");
    let cancelled = CancelScope::new()
        .name("export")
        .token(&stop)
        .run(std::future::pending::<()>())
        .await
        .unwrap_err();
    (stop, cancelled)
}

on_every_backend! {
    /// `CancelReason::Manual` reads as what it is: someone cancelled it,
    /// not "by request" (which, in a server, reads as the HTTP request).
    async fn a_manual_cancel_reads_cancelled_manually() {
        assert_eq!(CancelReason::Manual.to_string(), "cancelled manually");
        let (stop, cancelled) = export_stopped_by_operator().await;
        drop(stop);
        let text = cancelled.to_string();
        assert!(text.ends_with(": cancelled manually (operator pressed stop)"), "{text}");
        assert!(!text.contains("by request"), "{text}");
        let parent = CancelReason::Parent(Box::new(CancelReason::Manual));
        assert_eq!(parent.to_string(), "enclosing scope cancelled (cancelled manually)");
    }

    /// A cancelled scope's error is what it was when the scope ended, read
    /// later or twice: its times do not move with the clock, its clone
    /// and its `Debug` say the same, and its reason and message are the
    /// token's, kept after the token is gone.
    async fn a_scope_error_read_later_says_what_it_said_when_made() {
        let (stop, cancelled) = export_stopped_by_operator().await;
        drop(stop);
        let (at, ended, text) = (
            cancelled.cancelled_after().expect("a scope's cancellation has both times"),
            cancelled.elapsed().expect("a scope's cancellation has both times"),
            cancelled.to_string(),
        );
        sleep(Duration::from_millis(20)).await;
        assert_eq!(cancelled.cancelled_after(), Some(at));
        assert_eq!(cancelled.elapsed(), Some(ended));
        assert!(at <= ended, "cancelled at {at:?}, ended after {ended:?}");
        assert_eq!(cancelled.to_string(), text);
        assert_eq!(cancelled.reason(), &CancelReason::Manual);
        assert_eq!(cancelled.message(), Some("operator pressed stop"));
        assert_eq!(cancelled.operation_name(), Some("export"));
        assert!(cancelled.operation_id().is_some());
        let copy = cancelled.clone();
        assert_eq!(copy.to_string(), text);
        assert_eq!(format!("{copy:?}"), format!("{cancelled:?}"));
        let debug = format!("{cancelled:?}");
        let expected = format!(
            "Cancelled {{ inner: Details {{ reason: Manual, message: Some(\"operator pressed stop\"), \
             operation: Some(\"export\"), operation_id: Some({}), elapsed: Some({ended:?}), \
             cancelled_after: Some({at:?}), grace: NoGrace }} }}",
            cancelled.operation_id().unwrap(),
        );
        assert_eq!(debug, expected);
    }

    /// A scope cancelled after ~30 ms that cleans up for ~60 ms more in its
    /// grace period says both: when it was cancelled and when it ended.
    async fn a_cancelled_scope_says_when_it_was_cancelled_and_when_it_ended() {
        let stop = CancellationToken::new();
        let remote = stop.clone();
        let started = Instant::now();
        let outcome: Result<(), Cancelled> = CancelScope::new()
            .name("flush")
            .token(&stop)
            .grace(GENEROUS)
            .try_run(async move {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    remote.cancel();
                });
                let cancelled = loop {
                    if let Err(cancelled) = cancelable::sleep(Duration::from_millis(1)).await {
                        break cancelled;
                    }
                };
                // Cleanup within the grace period.
                cancelable::shield(sleep(Duration::from_millis(60))).await;
                Err(cancelled)
            })
            .await;
        let cancelled = outcome.unwrap_err();
        let at = cancelled.cancelled_after().expect("a scope's cancellation has both times");
        let ended = cancelled.elapsed().expect("a scope's cancellation has both times");
        assert!(at >= Duration::from_millis(30), "cancelled at {at:?}");
        assert!(ended >= at + Duration::from_millis(60), "cancelled at {at:?}, ended after {ended:?}");
        assert!(started.elapsed() < GENEROUS);
        let text = cancelled.to_string();
        let expected = format!("operation `flush` (#{}) cancelled at {at:.1?}, ended after {ended:.1?}: cancelled manually", cancelled.operation_id().unwrap());
        assert!(text.starts_with(&expected), "{text}\nexpected it to start with {expected}");
    }

    /// A scope already cancelled when it starts was cancelled at 0 s.
    async fn a_scope_started_under_a_cancelled_token_was_cancelled_at_zero() {
        let stop = CancellationToken::new();
        stop.cancel();
        let cancelled = CancelScope::new()
            .token(&stop)
            .run(std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(cancelled.cancelled_after(), Some(Duration::ZERO));
        assert!(cancelled.elapsed().unwrap() < GENEROUS);
    }

    /// A `Cancelled` made by hand, not by a scope, knows neither time.
    async fn a_cancellation_without_a_scope_knows_no_times() {
        let cancelled = Cancelled::new(CancelReason::Manual);
        assert_eq!((cancelled.cancelled_after(), cancelled.elapsed()), (None, None));
        assert_eq!(cancelled.to_string(), "cancelled: cancelled manually");
    }
}
