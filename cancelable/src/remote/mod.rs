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
//! **tombstone** (default TTL 3 h, at most 10,000 kept). A node keeps a
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
//! # Faults
//! * Broker unreachable at start: [`connect`](RemoteRegistryBuilder::connect)
//!   returns [`RemoteError::Connect`].
//! * Broker lost while running: the local registry, and cancellation
//!   within the process, keep working; remote calls return
//!   [`RemoteError::Unavailable`]; the node reconnects with exponential
//!   backoff (50 ms to 5 s by default) and catches up on tombstones.
//! * A malformed message is logged (feature `tracing`) and ignored.
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
//! All names start with `{namespace}:v1` (namespace default
//! `cancelable`). Values are JSON objects carrying `"v": 1`; anything else
//! is ignored.
//!
//! | name | kind | content |
//! | --- | --- | --- |
//! | `{ns}:v1:requests` | channel | `{"type":"cancel", "v", "request", "reply_to", "target", "reason", "message", "expires_ms", "wait_ms"?}` and `{"type":"cancel_where", .., "filter", ..}`; every node subscribes |
//! | `{ns}:v1:replies:{node}:{instance}` | channel | `{"type":"ack", "v", "request", "node", "found":[{"id","key","name","cancelled_now","running","lag_us"}]}`: one per node and request (`found` empty: not there) |
//! | `{ns}:v1:tombstones` | sorted set | member: `{"v","target","reason","message","expires_ms"}`, score: `expires_ms` (Unix ms; TTL 3 h); trimmed of expired members and to the newest 10,000 at each write |
//! | `{ns}:v1:nodes` | sorted set | member: node name, score: expiry of its snapshot (Unix ms) |
//! | `{ns}:v1:node:{node}` | string, `PX` node TTL | `{"v","node","published_ms","operations":[..],"truncated"}` ([`NodeSnapshot`]), rewritten every heartbeat (default 2 s, TTL 10 s) |
//!
//! A target is `{"by":"id","node":..,"id":..}` or `{"by":"key","key":..}`;
//! a reason `{"kind":"manual"|"timeout"|"condition"}`,
//! `{"kind":"signal","signal":"SIGTERM"}`, `{"kind":"error","message":..}`
//! or `{"kind":"parent","reason":{..}}`. The requester counts the nodes that
//! received the request (the reply of `PUBLISH`) and waits for that many
//! acks at most. Expiry times are wall-clock: the nodes' clocks are assumed
//! to agree within much less than the TTLs.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::Backend;
use crate::registry::{global, JoinObserver, Registry};
use crate::{CancelReason, CancellationToken};

mod driver;
mod protocol;
mod tombstones;

pub use protocol::{
    EmptyTarget, NodeSnapshot, RemoteFilter, RemoteOperation, Target, PROTOCOL_VERSION,
};
use protocol::{Message, Names, Tombstone, WireAck, WireReason};

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

/// What went wrong with a remote request, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteError {
    /// The broker could not be reached when joining the cluster.
    Connect {
        /// The URL given.
        url: String,
        /// What the connection attempt said.
        error: String,
    },
    /// The URL does not parse as a Redis URL.
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        error: String,
    },
    /// The node name was empty.
    EmptyNodeName,
    /// The local registry already belongs to a node of a cluster.
    AlreadyJoined,
    /// The broker is not reachable now; the node reconnects on its own.
    Unavailable {
        /// This node's name.
        node: String,
    },
    /// The broker answered a command with an error, or did not answer in
    /// time.
    Broker(String),
    /// No node found the target: none runs it now. A cancel of a
    /// [`Target`] left a tombstone, which still cancels it if it registers
    /// before the tombstone expires.
    NotFound {
        /// The target, as text.
        target: String,
        /// How many nodes answered.
        answered: usize,
        /// How many nodes received the request.
        nodes: usize,
    },
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Connect { url, error } => write!(
                f,
                "could not reach the Redis broker at {url}: {error}; start one (`redis-server`, \
                 Debian package `redis-server`) or pass the URL of a running one"
            ),
            RemoteError::BadUrl { url, error } => write!(
                f,
                "{url:?} is not a Redis URL ({error}); write it like redis://127.0.0.1:6379"
            ),
            RemoteError::EmptyNodeName => f.write_str(
                "a node name must not be empty; name each process of the cluster uniquely, \
                 e.g. after its host and role",
            ),
            RemoteError::AlreadyJoined => f.write_str(
                "this registry already belongs to a node of a cluster; join each registry \
                 once (clone the RemoteRegistry to share it)",
            ),
            RemoteError::Unavailable { node } => write!(
                f,
                "node {node:?} has no connection to the Redis broker now (it reconnects on its \
                 own); retry later, or cancel operations of this process through its local \
                 registry"
            ),
            RemoteError::Broker(error) => write!(f, "the Redis broker failed the request: {error}"),
            RemoteError::NotFound {
                target,
                answered,
                nodes,
            } => write!(
                f,
                "no node runs {target:?} ({answered} of {nodes} nodes answered); if it starts \
                 later, the tombstone left by the cancel stops it as it registers"
            ),
        }
    }
}

impl std::error::Error for RemoteError {}

/// Whether a node's cancel took effect, or it had been cancelled already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckStatus {
    /// This request cancelled it.
    Cancelled,
    /// It was cancelled already: the request changed nothing (its first
    /// reason and message stand).
    AlreadyCancelled,
}

/// What a node did for a cancel request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ack {
    /// The node that runs the operation.
    pub node: String,
    /// Its id on that node.
    pub id: u64,
    /// Its key, if it has one.
    pub key: Option<String>,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Whether this request cancelled it.
    pub status: AckStatus,
    /// Still running when the node answered (always `true` unless the
    /// request waited for the exit).
    pub running: bool,
    /// When the request waited for the exit and it exited: the time from
    /// the cancel to the exit (the cancellation lag).
    pub lag: Option<Duration>,
}

impl Ack {
    fn of(node: &str, wire: &WireAck) -> Ack {
        Ack {
            node: node.to_owned(),
            id: wire.id,
            key: wire.key.clone(),
            name: wire.name.clone(),
            status: match wire.cancelled_now {
                true => AckStatus::Cancelled,
                false => AckStatus::AlreadyCancelled,
            },
            running: wire.running,
            lag: wire.lag_us.map(Duration::from_micros),
        }
    }

    /// The target that addresses this operation.
    pub fn target(&self) -> Target {
        Target::id(self.node.clone(), self.id)
    }
}

/// Settings of a node joining a cluster; see [`RemoteRegistry::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `connect`"]
pub struct RemoteRegistryBuilder {
    url: String,
    node: String,
    namespace: String,
    registry: Option<Registry>,
    tombstone_ttl: Duration,
    max_tombstones: usize,
    heartbeat: Duration,
    node_ttl: Duration,
    answer_within: Duration,
    connect_timeout: Duration,
    backoff: (Duration, Duration),
}

impl RemoteRegistryBuilder {
    /// The local registry to join (default: the [`global`] one).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// The prefix of every Redis name (default `cancelable`): clusters
    /// sharing a broker use different namespaces.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long tombstones last (default 3 h).
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// How many tombstones are kept at most (default 10,000; the soonest
    /// to expire leave first).
    pub fn max_tombstones(mut self, max: usize) -> Self {
        self.max_tombstones = max.max(1);
        self
    }

    /// How often the node publishes its snapshot (default 2 s), and how
    /// long a snapshot lasts without a newer one (default 10 s): a node
    /// gone for longer leaves [`list`](RemoteRegistry::list).
    pub fn heartbeat(mut self, every: Duration, ttl: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(1));
        self.node_ttl = ttl.max(self.heartbeat);
        self
    }

    /// How long a request waits for the nodes' answers (default 2 s).
    pub fn answer_within(mut self, limit: Duration) -> Self {
        self.answer_within = limit;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The first and the longest pause between reconnection attempts
    /// (default 50 ms and 5 s; doubling in between).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// Connects to the broker, subscribes, catches up on tombstones and
    /// publishes the node's first snapshot; `Err` if the broker cannot be
    /// reached (nothing is retried then), the URL or node name is bad, or
    /// the registry has joined already.
    pub async fn connect(self) -> Result<RemoteRegistry, RemoteError> {
        if self.node.is_empty() {
            return Err(RemoteError::EmptyNodeName);
        }
        let client =
            redis::Client::open(self.url.as_str()).map_err(|error| RemoteError::BadUrl {
                url: self.url.clone(),
                error: error.to_string(),
            })?;
        let registry = self.registry.clone().unwrap_or_else(|| global().clone());
        let cache = Arc::new(tombstones::Cache::new(
            self.node.clone(),
            self.max_tombstones,
        ));
        let changed = Arc::new(tombstones::Changed::default());
        let observer: Arc<dyn JoinObserver> = Arc::new(tombstones::Observer {
            cache: cache.clone(),
            changed: changed.clone(),
        });
        {
            let mut slot = registry
                .inner
                .join_observer
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if slot.is_some() {
                return Err(RemoteError::AlreadyJoined);
            }
            *slot = Some(observer.clone());
        }
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let instance = format!(
            "{}-{}-{}",
            std::process::id(),
            unix_ms(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let names = Names::new(&self.namespace);
        let shared = Arc::new(Shared {
            replies: names.replies(&self.node, &instance),
            names,
            instance,
            client,
            registry,
            cache,
            changed,
            observer,
            connection: Mutex::new(None),
            connected: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            reconnects: AtomicU64::new(0),
            settings: self,
        });
        let ready = Arc::new(Oneshot::default());
        let finished = Arc::new(Oneshot::default());
        let handle = Arc::new(Handle {
            shared: shared.clone(),
            finished: finished.clone(),
        });
        driver::spawn(shared.clone(), ready.clone(), finished).map_err(|error| {
            RemoteError::Broker(format!("could not start the node's thread: {error}"))
        })?;
        ready.wait().await?;
        Ok(RemoteRegistry { handle })
    }
}

/// A node of a cluster: the local registry joined to the others over
/// Redis. Node names must be unique in the cluster (two live nodes of one
/// name overwrite each other's snapshot, and both act on `NODE/ID`
/// targets of that name). Cheap to clone (clones share the node); the node leaves the
/// cluster when the last clone is dropped, or with
/// [`close`](Self::close).
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
}

impl Shared {
    pub(crate) fn node(&self) -> &str {
        &self.settings.node
    }

    fn leave(&self) {
        self.shutdown.cancel();
        let mut slot = self
            .registry
            .inner
            .join_observer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot
            .as_ref()
            .is_some_and(|ours| Arc::ptr_eq(ours, &self.observer))
        {
            *slot = None;
        }
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
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        self.handle.shared.node()
    }

    /// The local registry this node joined.
    pub fn local(&self) -> &Registry {
        &self.handle.shared.registry
    }

    /// Whether the node is connected to the broker now.
    pub fn is_connected(&self) -> bool {
        self.handle.shared.connected.load(Ordering::Acquire)
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
        let tombstone = Tombstone {
            v: PROTOCOL_VERSION,
            target: target.clone(),
            reason: reason.clone(),
            message: message.clone(),
            expires_ms: unix_ms().saturating_add(millis(shared.settings.tombstone_ttl)),
        };
        let expires_ms = tombstone.expires_ms;
        let (answers, nodes) = self
            .request(
                |request, reply_to| Message::Cancel {
                    v: PROTOCOL_VERSION,
                    request,
                    reply_to,
                    target: target.clone(),
                    reason,
                    message,
                    expires_ms,
                    wait_ms: wait.map(millis),
                },
                Some(tombstone),
                wait,
                true,
            )
            .await?;
        answers
            .iter()
            .find_map(|(node, found)| found.first().map(|wire| Ack::of(node, wire)))
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
                    wait_ms: None,
                },
                None,
                None,
                false,
            )
            .await?;
        Ok(answers
            .iter()
            .flat_map(|(node, found)| found.iter().map(|wire| Ack::of(node, wire)))
            .collect())
    }

    /// Publishes `message` (with `tombstone` written first, atomically) and
    /// gathers the nodes' answers: until one found something (if
    /// `first_found`), every node that received it answered, or the answer
    /// limit (plus `wait`) passed. Returns the answers and how many nodes
    /// received the request.
    async fn request(
        &self,
        message: impl FnOnce(String, String) -> Message,
        tombstone: Option<Tombstone>,
        wait: Option<Duration>,
        first_found: bool,
    ) -> Result<(Vec<(String, Vec<WireAck>)>, usize), RemoteError> {
        let shared = &self.handle.shared;
        let mut connection = shared.connection()?;
        let request = format!(
            "{}-{}",
            shared.instance,
            shared.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let replies = Arc::new(Replies::default());
        let _pending = PendingGuard::new(shared, &request, replies.clone());
        let payload = message(request, shared.replies.clone()).encode();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let now = unix_ms();
        if let Some(tombstone) = &tombstone {
            driver::add_tombstones(
                &mut pipe,
                shared,
                [(tombstone.expires_ms, tombstone.encode())],
                now,
            );
        }
        pipe.cmd("PUBLISH").arg(&shared.names.requests).arg(payload);
        let limit = shared.settings.answer_within;
        let sent: Result<Vec<redis::Value>, _> = within(limit, pipe.query_async(&mut connection))
            .await
            .ok_or_else(|| {
                RemoteError::Broker(format!("no answer from the broker within {limit:?}"))
            })?;
        let nodes = match sent.map_err(|error| broker_error(shared, &error))?.last() {
            Some(redis::Value::Int(receivers)) => usize::try_from(*receivers).unwrap_or(0),
            other => {
                return Err(RemoteError::Broker(format!(
                    "unexpected answer to PUBLISH: {other:?}"
                )))
            }
        };
        if let Some(tombstone) = tombstone {
            let member = tombstone.encode();
            shared.cache.insert(tombstone, member, now);
        }
        let deadline = limit + wait.unwrap_or_default();
        let answers = within(
            deadline,
            std::future::poll_fn(|cx| {
                let mut state = crate::sync::lock(&replies.state);
                let found = state.answers.iter().any(|(_, found)| !found.is_empty());
                if (first_found && found) || state.answers.len() >= nodes {
                    return Poll::Ready(std::mem::take(&mut state.answers));
                }
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }),
        )
        .await
        .unwrap_or_else(|| std::mem::take(&mut crate::sync::lock(&replies.state).answers));
        Ok((answers, nodes))
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
        within(limit, driver::read_snapshots(shared))
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

pub(crate) fn broker_error(shared: &Shared, error: &redis::RedisError) -> RemoteError {
    if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
        RemoteError::Unavailable {
            node: shared.node().to_owned(),
        }
    } else {
        RemoteError::Broker(error.to_string())
    }
}

/// The answers to one request of this node.
#[derive(Default)]
pub(crate) struct Replies {
    pub(crate) state: Mutex<ReplyState>,
}

#[derive(Default)]
pub(crate) struct ReplyState {
    /// Per answering node: what it found.
    pub(crate) answers: Vec<(String, Vec<WireAck>)>,
    pub(crate) waker: Option<Waker>,
}

impl Replies {
    pub(crate) fn push(&self, node: String, found: Vec<WireAck>) {
        let mut state = crate::sync::lock(&self.state);
        state.answers.push((node, found));
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// Keeps a request's entry in the pending map while it waits.
struct PendingGuard<'a> {
    shared: &'a Shared,
    request: String,
}

impl<'a> PendingGuard<'a> {
    fn new(shared: &'a Shared, request: &str, replies: Arc<Replies>) -> Self {
        crate::sync::lock(&shared.pending).insert(request.to_owned(), replies);
        PendingGuard {
            shared,
            request: request.to_owned(),
        }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        crate::sync::lock(&self.shared.pending).remove(&self.request);
    }
}

/// A value set once and awaited by anyone.
pub(crate) struct Oneshot<T> {
    state: Mutex<(Option<T>, Vec<Waker>)>,
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot {
            state: Mutex::new((None, Vec::new())),
        }
    }
}

impl<T: Clone> Oneshot<T> {
    /// Sets the value unless set already.
    pub(crate) fn set(&self, value: T) {
        let mut state = crate::sync::lock(&self.state);
        if state.0.is_none() {
            state.0 = Some(value);
            for waker in state.1.drain(..) {
                waker.wake();
            }
        }
    }

    pub(crate) async fn wait(&self) -> T {
        std::future::poll_fn(|cx| {
            let mut state = crate::sync::lock(&self.state);
            match &state.0 {
                Some(value) => Poll::Ready(value.clone()),
                None => {
                    state.1.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// `future`'s output, or `None` if `limit` passes first (on the timer of
/// the backend detected here).
pub(crate) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let backend = Backend::detect();
    let mut timer = backend.timer(backend.now() + limit);
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.poll_fired(cx).map(|()| None)
    })
    .await
}
