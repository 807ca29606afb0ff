//! Memory returns to its baseline after a million create/drop cycles, after
//! many tokens linked to several parents, and after many conversions to and
//! from `tokio_util` tokens.
//!
//! A counting global allocator measures live heap bytes. This binary holds
//! a single test so that no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::pending;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use cancelable::{CancelScope, CancellationToken, Source};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only
// counts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::SeqCst)
}

/// Slack for allocator-internal caches of the runtimes (thread-local
/// buffers and the like); a leak of even a few bytes per cycle over a
/// million cycles would be megabytes.
const SLACK: isize = 64 * 1024;

const TOKEN_CYCLES: usize = 1_000_000;
const SCOPE_CYCLES: usize = 50_000;
const TO_TOKIO_UTIL_CYCLES: usize = 1_000_000;
const FROM_TOKIO_UTIL_CYCLES: usize = 250_000;
const LINKED_CYCLES: usize = 500_000;

/// Links a token to two long-lived parents again and again, each dropped
/// at once (at times cancelled first, or with a child of its own).
fn linked_cycles(first: &CancellationToken, second: &CancellationToken, cycles: usize) {
    for i in 0..cycles {
        let linked = CancellationToken::linked([first, second]);
        match i % 3 {
            0 => drop(linked.child()),
            1 => {
                linked.cancel();
            }
            _ => {}
        }
        drop(linked);
    }
}

/// Converts one long-lived token into a `tokio_util` token again and again,
/// each dropped at once (with, at times, a child of it, or a short-lived
/// token converted and dropped with its conversion).
fn to_tokio_util_cycles(token: &CancellationToken, cycles: usize) {
    for i in 0..cycles {
        let converted = token.to_tokio_util();
        match i % 4 {
            0 => drop(converted.child_token()),
            1 => {
                let short_lived = token.child();
                drop(short_lived.to_tokio_util());
            }
            2 => converted.cancel(),
            _ => {}
        }
        drop(converted);
    }
}

/// Converts one long-lived `tokio_util` token into ours again and again,
/// each dropped at once (with, at times, a child of it, or cancelled by
/// us, or by a short-lived `tokio_util` token it was converted from).
fn from_tokio_util_cycles(foreign: &tokio_util::sync::CancellationToken, cycles: usize) {
    for i in 0..cycles {
        let converted = CancellationToken::from(foreign.clone());
        match i % 4 {
            0 => drop(converted.child()),
            1 => {
                let short_lived = foreign.child_token();
                let linked = CancellationToken::from(short_lived.clone());
                short_lived.cancel();
                assert!(linked.is_cancelled());
            }
            2 => {
                converted.cancel();
            }
            _ => {}
        }
        drop(converted);
    }
}

fn token_cycles(parent: &CancellationToken, cycles: usize) {
    for i in 0..cycles {
        let child = parent.child();
        if i % 2 == 0 {
            let grandchild = child.child();
            grandchild.cancel();
        }
        let guard = child.on_cancel(|_| {});
        drop(guard);
    }
}

async fn scope_cycles(parent: &CancellationToken, cycles: usize) {
    for i in 0..cycles {
        let scope = CancelScope::new()
            .name("cycle")
            .timeout(Duration::from_secs(5))
            .token(parent);
        if i % 2 == 0 {
            // Pends once, then completes.
            scope.run(cancelable_tests::yield_once()).await.unwrap();
        } else {
            // Cancelled by a source that fires at once.
            let _ = scope
                .source(Source::timeout(Duration::ZERO))
                .run(pending::<()>())
                .await;
        }
    }
}

#[test]
fn memory_returns_to_baseline() {
    // Tokens: a million child create/drop cycles.
    let parent = CancellationToken::new();
    token_cycles(&parent, 1_000);
    let baseline = live();
    token_cycles(&parent, TOKEN_CYCLES);
    let grown = live() - baseline;
    assert!(grown <= SLACK, "token cycles leaked {grown} bytes");
    assert_eq!(parent.child_count(), 0);

    // Tokens linked to two parents: dropping one unlinks it from both.
    let other = CancellationToken::new();
    linked_cycles(&parent, &other, 1_000);
    let baseline = live();
    linked_cycles(&parent, &other, LINKED_CYCLES);
    let grown = live() - baseline;
    assert!(grown <= SLACK, "linked token cycles leaked {grown} bytes");
    assert_eq!(parent.child_count(), 0);
    assert_eq!(other.child_count(), 0);

    // Conversions to `tokio_util` tokens: a million, each dropped at once.
    to_tokio_util_cycles(&parent, 1_000);
    let baseline = live();
    to_tokio_util_cycles(&parent, TO_TOKIO_UTIL_CYCLES);
    let grown = live() - baseline;
    assert!(
        grown <= SLACK,
        "conversions to tokio_util tokens leaked {grown} bytes"
    );
    assert_eq!(parent.child_count(), 0);

    // Conversions from a `tokio_util` token, each dropped at once.
    let foreign = tokio_util::sync::CancellationToken::new();
    from_tokio_util_cycles(&foreign, 1_000);
    let baseline = live();
    from_tokio_util_cycles(&foreign, FROM_TOKIO_UTIL_CYCLES);
    let grown = live() - baseline;
    assert!(
        grown <= SLACK,
        "conversions from a tokio_util token leaked {grown} bytes"
    );
    assert!(!foreign.is_cancelled());

    // Scopes, on each backend in turn (sequentially: one allocation counter).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scope_cycles(&parent, 1_000));
    let baseline = live();
    runtime.block_on(scope_cycles(&parent, SCOPE_CYCLES));
    let grown = live() - baseline;
    assert!(grown <= SLACK, "scope cycles on tokio leaked {grown} bytes");
    drop(runtime);

    smol::block_on(scope_cycles(&parent, 1_000));
    let baseline = live();
    smol::block_on(scope_cycles(&parent, SCOPE_CYCLES));
    let grown = live() - baseline;
    assert!(grown <= SLACK, "scope cycles on smol leaked {grown} bytes");

    futures::executor::block_on(scope_cycles(&parent, 1_000));
    let baseline = live();
    futures::executor::block_on(scope_cycles(&parent, SCOPE_CYCLES));
    let grown = live() - baseline;
    assert!(
        grown <= SLACK,
        "scope cycles on block_on leaked {grown} bytes"
    );
    assert_eq!(parent.child_count(), 0);
}
