//! Dropping a scope future mid-run releases its timer, its token links and
//! its parent link (signal listeners: see `signals.rs`, child processes).

use std::future::{pending, Future};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use cancelable::{current_token, CancelScope, CancellationToken, Source};
use cancelable_tests::{on_every_backend, sleep};

/// A waker that only counts its clones (through the `Arc`'s strong count).
struct CountingWaker;

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {}
}

/// Waits (generously) until nobody but us holds `waker`: timers may hand
/// their registration back to the reactor asynchronously.
async fn released(counter: &Arc<CountingWaker>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if Arc::strong_count(counter) == 1 {
            return true;
        }
        sleep(Duration::from_millis(5)).await;
    }
    false
}

on_every_backend! {
    async fn dropping_a_running_scope_releases_its_timers() {
        let counter = Arc::new(CountingWaker);
        let waker = Waker::from(counter.clone());
        {
            let mut run = Box::pin(
                CancelScope::new()
                    .timeout(Duration::from_secs(60))
                    .source(Source::timeout(Duration::from_secs(90)))
                    .run(pending::<()>()),
            );
            let mut cx = Context::from_waker(&waker);
            assert!(run.as_mut().poll(&mut cx).is_pending());
            assert!(Arc::strong_count(&counter) > 2, "the armed timers hold the waker");
        }
        drop(waker);
        assert!(released(&counter).await, "a dropped scope left a timer armed");
    }

    async fn dropping_a_running_scope_unlinks_its_token_sources() {
        let external = CancellationToken::new();
        let scope = CancelScope::new().token(&external);
        let handle = scope.handle();
        {
            let mut run = Box::pin(scope.run(pending::<()>()));
            assert!(futures::poll!(run.as_mut()).is_pending());
        }
        external.cancel();
        assert!(!handle.is_cancelled(), "the dropped scope was still linked to the token");
    }

    async fn dropping_an_inner_scope_detaches_it_from_the_outer_one() {
        CancelScope::new()
            .run(async {
                let outer = current_token().unwrap();
                {
                    let mut inner = Box::pin(CancelScope::new().run(pending::<()>()));
                    assert!(futures::poll!(inner.as_mut()).is_pending());
                    assert_eq!(outer.child_count(), 1);
                }
                assert_eq!(outer.child_count(), 0);
                // A finished inner scope detaches too.
                CancelScope::new().run(sleep(Duration::from_millis(1))).await.unwrap();
                assert_eq!(outer.child_count(), 0);
            })
            .await
            .unwrap();
    }
}
