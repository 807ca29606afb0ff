//! The replay defence of a node with a signing key: a signed cancel
//! request or tombstone recorded off the broker and sent again later
//! (by anyone who may `PUBLISH`, or write the tombstone set) is refused.
//!
//! - Every request and tombstone carries `issued_ms`, the time it was
//!   issued on the **broker's clock** as its issuer reads it, under the
//!   signature. No decision depends on a node's own wall clock: each node
//!   keeps the broker clock's offset from its process clock
//!   ([`BrokerClock`]), measured at every exchange that returns the
//!   broker's `TIME` (the start, each catch-up, each heartbeat).
//! - A node refuses a request issued more than the replay window
//!   ([`replay_window`](super::RemoteRegistryBuilder::replay_window),
//!   default [`DEFAULT_REPLAY_WINDOW`]) before or after its own reading of
//!   the broker's clock, and one whose request id it has seen within the
//!   window ([`SeenRequests`]); a tombstone lives until `issued_ms` plus its
//!   TTL on the broker's clock, whatever score the sorted set holds.
//! - A node without a key checks nothing (anyone may forge its traffic).
//!
//! # Invariants
//!
//! 1. A request id is remembered at least as long as a request with it
//!    can pass the freshness check: until `issued_ms + window` (broker ms);
//!    the set is pruned of older ids when it grows.
//! 2. The offset is only ever set from a broker reading taken by this
//!    node; before the first one (never, once connected) nothing is
//!    refused for staleness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::protocol::Tombstone;
use crate::seam::time;
use crate::sync::lock;

/// How far a signed request's issue time may be from a node's reading of
/// the broker's clock, unless set with
/// [`replay_window`](super::RemoteRegistryBuilder::replay_window): 60 s.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// Ids kept before the set is pruned of those past their window.
const PRUNE_ABOVE: usize = 4_096;

/// The broker's clock as this node reads it: its process clock plus the
/// offset measured at the last exchange that returned the broker's time.
#[derive(Default)]
pub(crate) struct BrokerClock {
    /// Broker ms minus process ms.
    offset_ms: AtomicI64,
    known: AtomicBool,
}

/// This process's clock in ms since a fixed point (the process clock of
/// `seam::time`, which the testing kit's manual clock drives).
fn process_ms() -> i64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(time::now);
    let since = time::now().saturating_duration_since(base);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl BrokerClock {
    /// The broker's clock read `broker_ms` (Unix ms) just now.
    pub(crate) fn observe(&self, broker_ms: u64) {
        let broker_ms = i64::try_from(broker_ms).unwrap_or(i64::MAX);
        self.offset_ms
            .store(broker_ms.saturating_sub(process_ms()), Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    /// Now on the broker's clock (Unix ms), if this node has read it.
    pub(crate) fn now_ms(&self) -> Option<u64> {
        if !self.known.load(Ordering::Acquire) {
            return None;
        }
        let now = process_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed));
        Some(u64::try_from(now).unwrap_or(0))
    }
}

/// Why a signed request was refused as a replay.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// It carries no issue time (sent by a build without the defence).
    NoIssueTime,
    /// Issued further from now than the window, on the broker's clock.
    Stale { issued_ms: u64, now_ms: u64 },
    /// Its request id was seen within the window.
    Repeated,
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replay::NoIssueTime => f.write_str(
                "it carries no issue time (a node of an older build, or a replay of its traffic)",
            ),
            Replay::Stale { issued_ms, now_ms } => write!(
                f,
                "issued at {issued_ms} ms and the broker's clock reads {now_ms} ms: outside the \
                 replay window (a replay, or a broker clock that jumped)"
            ),
            Replay::Repeated => f.write_str("its request id was seen before (a replay)"),
        }
    }
}

/// How much of `tombstone`'s life is left when the broker's clock reads
/// `now_ms`: its TTL from its signed issue time, never more than the TTL
/// (an issue time ahead of the clock lives no longer); `Err` if it
/// carries no issue time.
pub(crate) fn tombstone_left(tombstone: &Tombstone, now_ms: u64) -> Result<u64, Replay> {
    if tombstone.issued_ms == 0 {
        return Err(Replay::NoIssueTime);
    }
    let end = tombstone.issued_ms.saturating_add(tombstone.ttl_ms);
    Ok(end.saturating_sub(now_ms).min(tombstone.ttl_ms))
}

/// The request ids a node has accepted within the replay window.
pub(crate) struct SeenRequests {
    window_ms: u64,
    /// Request id → until when (broker ms) it is remembered.
    ids: Mutex<HashMap<String, u64>>,
}

impl SeenRequests {
    pub(crate) fn new(window: Duration) -> SeenRequests {
        SeenRequests {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1),
            ids: Mutex::new(HashMap::new()),
        }
    }

    /// Admits the request `id` issued at `issued_ms` (0: no issue time)
    /// when the broker's clock reads `now_ms` (`None`: not read yet), or
    /// says why it is refused.
    pub(crate) fn admit(
        &self,
        id: &str,
        issued_ms: u64,
        now_ms: Option<u64>,
    ) -> Result<(), Replay> {
        if issued_ms == 0 {
            return Err(Replay::NoIssueTime);
        }
        if let Some(now_ms) = now_ms {
            if issued_ms.abs_diff(now_ms) > self.window_ms {
                return Err(Replay::Stale { issued_ms, now_ms });
            }
        }
        let until = issued_ms.saturating_add(self.window_ms);
        let mut ids = lock(&self.ids);
        if ids.contains_key(id) {
            return Err(Replay::Repeated);
        }
        if ids.len() >= PRUNE_ABOVE {
            let now = now_ms.unwrap_or(issued_ms);
            ids.retain(|_, kept_until| *kept_until >= now);
        }
        ids.insert(id.to_owned(), until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{Target, WireReason, PROTOCOL_VERSION};
    use super::*;

    #[test]
    fn a_request_is_admitted_once_and_only_within_the_window() {
        let seen = SeenRequests::new(Duration::from_secs(60));
        let now = 1_000_000_000;
        assert_eq!(seen.admit("a-1", now - 1_000, Some(now)), Ok(()));
        assert_eq!(
            seen.admit("a-1", now - 1_000, Some(now)),
            Err(Replay::Repeated)
        );
        assert_eq!(seen.admit("a-2", 0, Some(now)), Err(Replay::NoIssueTime));
        assert!(matches!(
            seen.admit("a-3", now - 61_000, Some(now)),
            Err(Replay::Stale { .. })
        ));
        assert!(matches!(
            seen.admit("a-4", now + 61_000, Some(now)),
            Err(Replay::Stale { .. })
        ));
        assert_eq!(seen.admit("a-5", now + 59_000, Some(now)), Ok(()));
        // Before the broker's clock is read, only repeats are refused.
        assert_eq!(seen.admit("a-6", 1, None), Ok(()));
    }

    #[test]
    fn the_seen_set_forgets_ids_past_their_window_only() {
        let seen = SeenRequests::new(Duration::from_secs(1));
        let now = 1_000_000;
        for n in 0..PRUNE_ABOVE {
            seen.admit(&format!("old-{n}"), now, Some(now)).unwrap();
        }
        seen.admit("recent", now + 900, Some(now + 900)).unwrap();
        // Pruned when full: the old ids are past their window at now + 1,500.
        seen.admit("later", now + 1_500, Some(now + 1_500)).unwrap();
        assert!(lock(&seen.ids).len() < 10);
        assert_eq!(
            seen.admit("recent", now + 900, Some(now + 1_500)),
            Err(Replay::Repeated)
        );
    }

    #[test]
    fn a_tombstone_lives_its_ttl_from_its_issue_on_the_brokers_clock() {
        let issued = |issued_ms| Tombstone {
            v: PROTOCOL_VERSION,
            target: Target::key("k"),
            reason: WireReason::from_reason(&crate::CancelReason::Manual),
            message: String::new(),
            ttl_ms: 500,
            issued_ms,
        };
        assert_eq!(tombstone_left(&issued(1_000), 1_200), Ok(300));
        assert_eq!(tombstone_left(&issued(1_000), 9_999), Ok(0));
        // Issued ahead of this reading of the clock: never more than its TTL.
        assert_eq!(tombstone_left(&issued(5_000), 1_200), Ok(500));
        assert_eq!(tombstone_left(&issued(0), 1_200), Err(Replay::NoIssueTime));
    }

    #[test]
    fn the_broker_clock_follows_the_process_clock_from_its_last_reading() {
        let clock = BrokerClock::default();
        assert_eq!(clock.now_ms(), None);
        clock.observe(5_000_000);
        let now = clock.now_ms().unwrap();
        assert!((5_000_000..5_010_000).contains(&now), "{now}");
    }
}
