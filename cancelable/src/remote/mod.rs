//! Cancel by id, key or filter across a cluster, over Redis (feature
//! `redis`).
//!
//! A [`RemoteRegistry`] joins a local [`Registry`] to a cluster under a
//! node name. From any process of the cluster,
//! [`cancel`](RemoteRegistry::cancel) stops an operation wherever it runs —
//! addressed by a cluster-unique id ([`Target::id`]: node name + local id)
//! or by the user key its scope registered under ([`Target::key`]) — and
//! answers with an [`Ack`]: on which node it was found, whether this call
//! cancelled it, and, with [`cancel_and_wait`](RemoteRegistry::cancel_and_wait),
//! how long it took to exit. [`cancel_where`](RemoteRegistry::cancel_where)
//! cancels by name pattern, key or metadata on every node;
//! [`list`](RemoteRegistry::list) shows the live operations of every node.
//! The reason and message given reach the operation's
//! [`Cancelled`](crate::Cancelled) error unchanged.
//!
//! ```no_run
//! use cancelable::remote::{RemoteRegistry, Target};
//! use cancelable::{registry, CancelReason, CancelScope};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // On every worker:
//! let remote = RemoteRegistry::builder("redis://127.0.0.1:6379", "worker-1")
//!     .connect()
//!     .await?;
//! let job = CancelScope::new().name("export").register().key("job-42")?;
//! // ... job.run(..).await
//! # drop(job);
//!
//! // Anywhere, for instance the operator CLI (examples/cancelctl.rs):
//! let ack = remote
//!     .cancel(Target::key("job-42"), CancelReason::Manual, "operator request")
//!     .await?;
//! println!("cancelled on {}", ack.node);
//! # let _ = registry::global();
//! # Ok(()) }
//! ```
//!
//! # No lost cancels
//! Redis pub/sub is at most once: a node that is reconnecting misses what
//! is published meanwhile. So every cancel of a [`Target`] also writes a
//! **tombstone** (default TTL 3 h; one per target, a repeat updates it; at
//! most 10,000). A node keeps a
//! local copy of the tombstones that its registration hook checks
//! synchronously — no network on the registration path — so an operation
//! cancelled before it started is cancelled as it registers (its body is
//! still polled once, as for any scope cancelled before its start, and
//! ends at its first await or checkpoint). After every
//! (re)connection a node subscribes first, then reads every tombstone and
//! cancels the live operations they name, then writes back the tombstones
//! it knows that the broker lacks (a broker restarted without persistence
//! lost them). A repeated cancel is a no-op: the operation keeps the reason
//! and message of the first one. A tombstone keeps cancelling operations
//! that register under its key until it expires: keys name one job.
//! [`cancel_where`](RemoteRegistry::cancel_where) reaches the live
//! operations of the nodes connected at the time and writes no tombstone.
//!
//! # Identity
//! Each node process is an incarnation of its node name, with an instance
//! id ([`RemoteRegistry::instance`]) that [`Ack`], [`RemoteOperation`] and
//! [`NodeSnapshot`] carry. A [`Target`] with an instance
//! (`NODE/ID@INSTANCE`, as `list()` prints it) reaches that process only; a
//! bare `NODE/ID` reaches the incarnations that were running when it was
//! issued (by the broker's clock), never one started later under the same
//! name. A node leases its name to its instance id (for the node TTL): a
//! second live node of that name is refused with
//! [`RemoteError::NodeNameTaken`] unless
//! [`allow_duplicate_name`](RemoteRegistryBuilder::allow_duplicate_name).
//!
//! # Clock
//! Every expiry score, trim and TTL decision is made in the broker, on its
//! clock: tombstones are written, trimmed and read by Lua scripts that call
//! `TIME`; snapshots expire by `PX`; the node set is trimmed in a script.
//! A node converts the remaining time of what it reads to its monotonic
//! clock. No decision depends on a node's wall clock (a snapshot's
//! `published_ms` is informational).
//!
//! # Limits
//! | limit | at the limit |
//! | --- | --- |
//! | [`max_tombstones`](RemoteRegistryBuilder::max_tombstones) unexpired tombstones (10,000) | [`cancel`](RemoteRegistry::cancel) returns [`RemoteError::TombstonesFull`]; nothing is written, sent or evicted; a warning once the set passes 80 % |
//! | [`MAX_MESSAGE_BYTES`] (64 KiB) per cancel | [`RemoteError::TooLarge`] before anything is sent; larger payloads on the channel are ignored |
//! | [`MAX_SNAPSHOT_BYTES`] (1 MiB) per snapshot | the operations that fit, and `truncated` says how many were left out; the node stays listed |
//! | snapshot traffic | after changes, at most 256 KiB/s of snapshots, 20 to 900 ms after a change; a heartbeat (default 2 s) otherwise |
//! | broker without persistence | a cancel of an operation not started yet is lost if the broker restarts empty while no node is connected; [`broker_keeps_tombstones`](RemoteRegistry::broker_keeps_tombstones) and a warning at connect say so (as Celery's `revoke` without a state file) |
//!
//! # Trust model
//! Redis ACLs are the boundary. Without a
//! [`signing_key`](RemoteRegistryBuilder::signing_key), any client the
//! broker lets `PUBLISH` on the namespace's channels or write its keys can
//! cancel any operation with any reason, answer requests with forged acks
//! and plant tombstones or snapshots; any client that may `SUBSCRIBE` reads
//! requests (ids, keys, messages). Give nodes a Redis user limited to the
//! namespace (`~NS:*`, `&NS:*`). With a key shared by every node, requests,
//! acks, tombstones and snapshots carry an HMAC-SHA256 over their kind and
//! content; unsigned or badly signed ones are ignored and counted
//! ([`rejected_messages`](RemoteRegistry::rejected_messages)), and an ack
//! answers only the request it names. A signed cancel recorded off the
//! broker and sent again is refused: requests carry their issue time on
//! the broker's clock under the signature, and a node refuses one outside
//! its [`replay_window`](RemoteRegistryBuilder::replay_window) or with a
//! request id it has seen; a tombstone lives its signed TTL from its
//! signed issue time, whatever score the sorted set holds or when it is
//! written back. Signing does not encrypt, and does not stop deletion by a
//! client with write access.
//!
//! # Faults
//! * Broker unreachable at start: [`connect`](RemoteRegistryBuilder::connect)
//!   returns [`RemoteError::Connect`] within
//!   [`connect_timeout`](RemoteRegistryBuilder::connect_timeout); refused
//!   credentials: [`RemoteError::Auth`]; a user that may not `PUBLISH`:
//!   [`RemoteError::Permission`]; a cluster key of another type:
//!   [`RemoteError::WrongType`] (at connect, and from calls while running;
//!   a running node warns and stays connected).
//! * Broker lost while running: the local registry, and cancellation
//!   within the process, keep working; remote calls return
//!   [`RemoteError::Unavailable`]; the node reconnects with exponential
//!   backoff (50 ms to 5 s by default) and catches up on tombstones.
//! * A malformed message is ignored and counted
//!   ([`malformed_messages`](RemoteRegistry::malformed_messages)), with a
//!   warning (feature `tracing`) at most once a second.
//! * An unknown target: [`RemoteError::NotFound`] once every connected
//!   node answered, or after [`answer_within`](RemoteRegistryBuilder::answer_within)
//!   (default 2 s).
//!
//! # Runtimes
//! The node's connection and subscription run on a thread of their own
//! (`cancelable-remote`, with the `redis` crate's async-io runtime), so a
//! node works the same under tokio, smol, async-std or
//! `futures::executor::block_on`, and keeps answering while the
//! application's executor is busy. The calls of [`RemoteRegistry`] are
//! plain futures; their bounded waits use the timer of the backend
//! detected where they are awaited.
//!
//! # Protocol (version 1)
//! All names start with `{namespace}:v2` (namespace default
//! `cancelable`). Values are JSON objects carrying `"v": 2`, or, signed,
//! `s:` + 64 hex digits of HMAC + `:` + the JSON; anything else is ignored.
//!
//! | name | kind | content |
//! | --- | --- | --- |
//! | `{ns}:v2:requests` | channel | `{"type":"cancel", "v", "request", "reply_to", "target", "reason", "message", "ttl_ms", "wait_ms"?}` and `{"type":"cancel_where", .., "filter", ..}`; every node subscribes |
//! | `{ns}:v2:replies:{node}:{instance}` | channel | `{"type":"ack", "v", "request", "node", "instance", "found":[{"id","key","name","cancelled_now","running","lag_us"}]}`: one per node and request (`found` empty: not there) |
//! | `{ns}:v2:tombstones` | sorted set | member: the target's JSON, score: its expiry (Unix ms, broker's clock); purged of expired members at each write and read |
//! | `{ns}:v2:tombstone-bodies` | hash | field: the member, value: `{"v","target","reason","message","ttl_ms"}` |
//! | `{ns}:v2:nodes` | sorted set | member: node name, score: expiry of its snapshot (broker's clock) |
//! | `{ns}:v2:node:{node}` | string, `PX` node TTL | `{"v","node","instance","published_ms","truncated","operations":[..]}` ([`NodeSnapshot`]; operations without `node`/`instance`), rewritten at each heartbeat (default 2 s, TTL 10 s) and after changes |
//! | `{ns}:v2:lease:{node}` | string, `PX` node TTL | the instance id holding the node name |
//! | `{ns}:v2:probe` | channel | nobody listens: the `PUBLISH` permission probe at connect |
//!
//! A target is `{"by":"id","node":..,"id":..,"instance"?:..}` or
//! `{"by":"key","key":..}`; a reason `{"kind":"manual"|"timeout"|"condition"}`,
//! `{"kind":"signal","signal":"SIGTERM"}`, `{"kind":"error","message":..}`
//! or `{"kind":"parent","reason":{..}}`. The requester counts the nodes that
//! received the request (the reply of `PUBLISH`) and waits for that many
//! acks at most.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::registry::{JoinObserver, Registry};
use crate::{CancelReason, CancellationToken};

mod broker;
mod builder;
mod catchup;
mod checks;
mod driver;
mod error;
mod protocol;
mod replay;
mod request;
mod signing;
mod snapshots;
mod target;
mod tombstones;
mod util;

pub use builder::RemoteRegistryBuilder;
pub(crate) use error::broker_error;
pub use error::RemoteError;
pub use replay::DEFAULT_REPLAY_WINDOW;
pub(crate) use request::Replies;
pub use request::{Ack, AckStatus};
pub(crate) use util::{within, Oneshot};

pub use protocol::{
    EmptyTarget, NodeSnapshot, RemoteFilter, RemoteOperation, Target, MAX_MESSAGE_BYTES,
    MAX_SNAPSHOT_BYTES, PROTOCOL_VERSION,
};
use protocol::{Message, Names, Tombstone, WireReason};

/// How long a tombstone lasts unless told otherwise: 3 hours.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(3 * 3600);
/// How many tombstones the cluster keeps at most unless told otherwise.
pub const DEFAULT_MAX_TOMBSTONES: usize = 10_000;

/// Logs a warning through `tracing` when enabled.
macro_rules! log_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        tracing::warn!($($arg)*);
        #[cfg(not(feature = "tracing"))]
        {
            let _ = format_args!($($arg)*);
        }
    }};
}
pub(crate) use log_warn;

/// Unix time in ms, on the wall clock.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A node of a cluster: the local registry joined to the others over
/// Redis. Node names are unique in the cluster (leased at connect; see
/// [`allow_duplicate_name`](RemoteRegistryBuilder::allow_duplicate_name)).
/// Cheap to clone (clones share the node); the node leaves the cluster
/// when the last clone is dropped, or with [`close`](Self::close).
///
/// See the [module docs](self) for the guarantees and the protocol.
#[derive(Clone)]
pub struct RemoteRegistry {
    handle: Arc<Handle>,
}

/// Ends the node when the last `RemoteRegistry` clone goes.
struct Handle {
    shared: Arc<Shared>,
    finished: Arc<Oneshot<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.leave();
    }
}

/// What the node's thread and the public calls share.
pub(crate) struct Shared {
    pub(crate) settings: RemoteRegistryBuilder,
    pub(crate) names: Names,
    /// This instance's replies channel.
    pub(crate) replies: String,
    pub(crate) instance: String,
    pub(crate) client: redis::Client,
    pub(crate) registry: Registry,
    pub(crate) cache: Arc<tombstones::Cache>,
    /// Operations joined or left since the last snapshot.
    pub(crate) changed: Arc<tombstones::Changed>,
    observer: Arc<dyn JoinObserver>,
    /// The command connection of the current session, if connected.
    pub(crate) connection: Mutex<Option<redis::aio::MultiplexedConnection>>,
    pub(crate) connected: AtomicBool,
    /// Requests of this node waiting for acks, by request id.
    pub(crate) pending: Mutex<HashMap<String, Arc<Replies>>>,
    next_request: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    pub(crate) reconnects: AtomicU64,
    /// When this incarnation first reached the broker, by the broker's
    /// clock (Unix ms; 0 before): tombstones for `NODE/ID` issued before
    /// it name an earlier incarnation.
    pub(crate) started_ms: AtomicU64,
    /// Whether the tombstone set is above 80 % of its cap (warned once
    /// per crossing).
    pub(crate) tombstones_high: AtomicBool,
    /// The broker's persistence, read at the first connection: 0 unknown,
    /// 1 none, 2 AOF or RDB.
    pub(crate) durable: AtomicU8,
    /// The cluster key, if any.
    pub(crate) signer: signing::Signer,
    /// Payloads refused for want of a valid signature, or as replays.
    pub(crate) rejected: AtomicU64,
    /// The broker's clock as this node reads it, and the request ids it
    /// accepted within the replay window (`replay.rs`).
    pub(crate) broker_clock: replay::BrokerClock,
    pub(crate) seen: replay::SeenRequests,
    /// Malformed payloads ignored, and the rate-limited warning about them.
    pub(crate) notices: util::Notices,
}

impl Shared {
    pub(crate) fn node(&self) -> &str {
        &self.settings.node
    }

    /// This node's wall clock in Unix ms (shifted by the test seam
    /// [`RemoteRegistryBuilder::clock_offset`]); informational only.
    pub(crate) fn wall_ms(&self) -> u64 {
        unix_ms().saturating_add_signed(self.settings.clock_offset_ms)
    }

    /// Counts a payload refused for its signature, and warns (rate-limited).
    pub(crate) fn refuse(&self, what: &str, refused: &dyn fmt::Display) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.notices.warn(
            self.node(),
            format_args!("refused {what}: {refused} (possibly forged)"),
        );
    }

    /// Counts a malformed payload, and warns (rate-limited).
    pub(crate) fn malformed(&self, what: fmt::Arguments<'_>) {
        self.notices
            .warn(self.node(), format_args!("ignored malformed {what}"));
    }

    /// Warns once when the cluster's tombstones pass 80 % of the cap.
    pub(crate) fn note_tombstones(&self, count: usize) {
        let max = self.settings.max_tombstones;
        let high = count.saturating_mul(5) > max.saturating_mul(4);
        if self.tombstones_high.swap(high, Ordering::Relaxed) != high && high {
            log_warn!(
                "cancelable: {} of at most {} tombstones are in use; at the cap a cancel is \
                 refused (raise `max_tombstones` or shorten `tombstone_ttl`)",
                count,
                max
            );
        }
    }

    fn leave(&self) {
        self.shutdown.cancel();
        self.registry.clear_join_observer(&self.observer);
    }

    fn connection(&self) -> Result<redis::aio::MultiplexedConnection, RemoteError> {
        crate::sync::lock(&self.connection)
            .clone()
            .ok_or_else(|| RemoteError::Unavailable {
                node: self.node().to_owned(),
            })
    }
}

impl fmt::Debug for RemoteRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRegistry")
            .field("node", &self.node())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RemoteRegistry {
    /// Settings for joining the cluster of the broker at `url` (like
    /// `redis://127.0.0.1:6379`) as the node `node`, a name unique in the
    /// cluster.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cancelable::remote::{RemoteError, RemoteRegistry};
    ///
    /// # futures::executor::block_on(async {
    /// // Nothing listens on port 1: a clear error, no retry.
    /// let error = RemoteRegistry::builder("redis://127.0.0.1:1", "worker-1")
    ///     .registry(&cancelable::registry::Registry::new())
    ///     .connect_timeout(Duration::from_millis(500))
    ///     .connect()
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(error, RemoteError::Connect { .. }));
    /// # });
    /// ```
    pub fn builder(url: impl Into<String>, node: impl Into<String>) -> RemoteRegistryBuilder {
        RemoteRegistryBuilder {
            url: url.into(),
            node: node.into(),
            namespace: "cancelable".to_owned(),
            registry: None,
            tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            max_tombstones: DEFAULT_MAX_TOMBSTONES,
            heartbeat: Duration::from_secs(2),
            node_ttl: Duration::from_secs(10),
            answer_within: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            clock_offset_ms: 0,
            signer: signing::Signer::default(),
            replay_window: DEFAULT_REPLAY_WINDOW,
            allow_duplicate_name: false,
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        self.handle.shared.node()
    }

    /// The instance id of this node process: its incarnation of the node
    /// name, carried by [`Target`], [`Ack`] and [`RemoteOperation`].
    pub fn instance(&self) -> &str {
        &self.handle.shared.instance
    }

    /// The local registry this node joined.
    pub fn local(&self) -> &Registry {
        &self.handle.shared.registry
    }

    /// Whether the node is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        self.handle.shared.connected.load(Ordering::Acquire)
    }

    /// Whether the broker keeps its data across a restart (AOF, or RDB
    /// save points), as read when the node first connected; `None` if the
    /// broker would not say (`CONFIG GET` not allowed to this user).
    ///
    /// Without persistence, a cancel issued before its operation starts
    /// lives only in the broker and in the connected nodes' memory: if the
    /// broker restarts empty while no node is connected, nothing can
    /// remember it (the same limit as Celery's `revoke` without a state
    /// file). The node warns once at connect (feature `tracing`).
    pub fn broker_keeps_tombstones(&self) -> Option<bool> {
        match self.handle.shared.durable.load(Ordering::Acquire) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// How many messages, tombstones and snapshots this node refused
    /// because a [`signing_key`](RemoteRegistryBuilder::signing_key) is set
    /// and they were unsigned or badly signed (forged, or from a node with
    /// another key), or replayed (see
    /// [`replay_window`](RemoteRegistryBuilder::replay_window)).
    pub fn rejected_messages(&self) -> u64 {
        self.handle.shared.rejected.load(Ordering::Relaxed)
    }

    /// How many malformed payloads (not JSON, another protocol version, an
    /// unknown shape, too large) this node ignored. It warns about them
    /// at most once a second, with the count (feature `tracing`).
    pub fn malformed_messages(&self) -> u64 {
        self.handle.shared.notices.count()
    }

    /// How many times the node has reconnected after losing the broker.
    pub fn reconnects(&self) -> u64 {
        self.handle.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Cancels `target` on whichever node runs it, with `reason` and
    /// `message` (which reach its `Cancelled` error unchanged), and leaves
    /// a tombstone that cancels it if it registers later.
    ///
    /// `Ok` with the node's [`Ack`] once a node found it;
    /// `Err(NotFound)` once every node answered without it (or after the
    /// answer limit); `Err(Unavailable)` if the broker is not reachable now.
    pub async fn cancel(
        &self,
        target: impl Into<Target>,
        reason: CancelReason,
        message: impl Into<String>,
    ) -> Result<Ack, RemoteError> {
        self.cancel_target(target.into(), reason, message.into(), None)
            .await
    }

    /// [`cancel`](Self::cancel), and wait up to `wait` for the operation to
    /// exit: the ack then says whether it is still `running` and, if it
    /// exited, its cancellation `lag`.
    pub async fn cancel_and_wait(
        &self,
        target: impl Into<Target>,
        reason: CancelReason,
        message: impl Into<String>,
        wait: Duration,
    ) -> Result<Ack, RemoteError> {
        self.cancel_target(target.into(), reason, message.into(), Some(wait))
            .await
    }

    async fn cancel_target(
        &self,
        target: Target,
        reason: CancelReason,
        message: String,
        wait: Option<Duration>,
    ) -> Result<Ack, RemoteError> {
        let shared = &self.handle.shared;
        let reason = WireReason::from_reason(&reason);
        let ttl_ms = millis(shared.settings.tombstone_ttl).max(1);
        let issued_ms = shared.broker_clock.now_ms().unwrap_or(0);
        let tombstone = Tombstone {
            v: PROTOCOL_VERSION,
            target: target.clone(),
            reason: reason.clone(),
            message: message.clone(),
            ttl_ms,
            issued_ms,
        };
        let (answers, nodes) = self
            .request(
                |request, reply_to| Message::Cancel {
                    v: PROTOCOL_VERSION,
                    request,
                    reply_to,
                    target: target.clone(),
                    reason,
                    message,
                    ttl_ms,
                    issued_ms,
                    wait_ms: wait.map(millis),
                },
                Some(tombstone),
                wait,
                true,
            )
            .await?;
        answers
            .iter()
            .find_map(|answer| answer.found.first().map(|wire| Ack::of(answer, wire)))
            .ok_or(RemoteError::NotFound {
                target: target.to_string(),
                answered: answers.len(),
                nodes,
            })
    }

    /// Cancels every live operation that passes `filter` on every connected
    /// node; returns an [`Ack`] per operation found (empty if none). No
    /// tombstone is written: operations that start later are not affected.
    pub async fn cancel_where(
        &self,
        filter: &RemoteFilter,
        reason: CancelReason,
        message: impl Into<String>,
    ) -> Result<Vec<Ack>, RemoteError> {
        let reason = WireReason::from_reason(&reason);
        let message = message.into();
        let (answers, _) = self
            .request(
                |request, reply_to| Message::CancelWhere {
                    v: PROTOCOL_VERSION,
                    request,
                    reply_to,
                    filter: filter.clone(),
                    reason,
                    message,
                    issued_ms: self.handle.shared.broker_clock.now_ms().unwrap_or(0),
                    wait_ms: None,
                },
                None,
                None,
                false,
            )
            .await?;
        Ok(answers
            .iter()
            .flat_map(|answer| answer.found.iter().map(|wire| Ack::of(answer, wire)))
            .collect())
    }

    /// The live operations of every node, from the snapshots they
    /// published, ordered by node and id. A node publishes one every
    /// heartbeat and about 20 ms after operations join or leave it, so a
    /// new operation shows, and a finished one leaves, within tens of ms.
    pub async fn list(&self) -> Result<Vec<RemoteOperation>, RemoteError> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .flat_map(|snapshot| snapshot.operations)
            .collect())
    }

    /// The last snapshot of every live node, ordered by node name. A node
    /// that stopped publishing leaves once its snapshot's TTL passed.
    pub async fn nodes(&self) -> Result<Vec<NodeSnapshot>, RemoteError> {
        let shared = &self.handle.shared;
        let limit = shared.settings.answer_within;
        within(limit, snapshots::read_snapshots(shared))
            .await
            .ok_or_else(|| {
                RemoteError::Broker(format!("no answer from the broker within {limit:?}"))
            })?
    }

    /// Leaves the cluster now: the node's snapshot is removed and the
    /// local registry is free to join again. Other clones stop working.
    pub async fn close(self) {
        self.handle.shared.leave();
        self.handle.finished.wait().await;
    }
}
