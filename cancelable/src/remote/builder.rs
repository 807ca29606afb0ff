//! The settings of a node and joining the cluster.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::Names;
use super::{driver, tombstones, Handle, Oneshot, RemoteError, RemoteRegistry, Shared};
use crate::registry::{global, JoinObserver, Registry};
use crate::CancellationToken;

/// Settings of a node joining a cluster; see [`RemoteRegistry::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `connect`"]
pub struct RemoteRegistryBuilder {
    pub(crate) url: String,
    pub(crate) node: String,
    pub(crate) namespace: String,
    pub(crate) registry: Option<Registry>,
    pub(crate) tombstone_ttl: Duration,
    pub(crate) max_tombstones: usize,
    pub(crate) heartbeat: Duration,
    pub(crate) node_ttl: Duration,
    pub(crate) answer_within: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff: (Duration, Duration),
    pub(crate) clock_offset_ms: i64,
    pub(crate) signer: super::signing::Signer,
    pub(crate) replay_window: Duration,
    pub(crate) allow_duplicate_name: bool,
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

    /// Authenticates every message of the node with HMAC-SHA256 under
    /// `key`, a secret shared by every node of the cluster (at least 32
    /// random bytes): requests, acks (bound to their request), tombstones
    /// and snapshots are signed, and unsigned or badly signed ones are
    /// ignored and counted ([`RemoteRegistry::rejected_messages`]).
    /// Without a key, any client the broker lets `PUBLISH` or write the
    /// cluster's keys can cancel any operation: see the module docs' trust
    /// model.
    pub fn signing_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.signer = super::signing::Signer::new(key.as_ref());
        self
    }

    /// With a [`signing_key`](Self::signing_key): how far a cancel
    /// request's issue time may be from this node's reading of the
    /// broker's clock (default [`DEFAULT_REPLAY_WINDOW`](super::DEFAULT_REPLAY_WINDOW), at least 1 ms).
    /// Older requests, and any request id seen before within the window,
    /// are refused and counted in
    /// [`rejected_messages`](super::RemoteRegistry::rejected_messages): a
    /// signed cancel recorded off the broker cannot be sent again later.
    /// Without a key nothing is checked.
    pub fn replay_window(mut self, window: Duration) -> Self {
        self.replay_window = window.max(Duration::from_millis(1));
        self
    }

    /// Lets this node join while another live node has the same name
    /// (default: refused with [`RemoteError::NodeNameTaken`]). Both then
    /// act on `NODE/ID` targets without an instance, and `list()` shows
    /// whichever snapshot was written last: only for a deliberate
    /// takeover.
    pub fn allow_duplicate_name(mut self) -> Self {
        self.allow_duplicate_name = true;
        self
    }

    /// Not public API: shifts this node's reading of the wall clock by
    /// `offset_ms`, to emulate a host whose clock is wrong (tests only).
    #[doc(hidden)]
    pub fn clock_offset(mut self, offset_ms: i64) -> Self {
        self.clock_offset_ms = offset_ms;
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
        let instance = new_instance();
        let cache = Arc::new(tombstones::Cache::new(
            self.node.clone(),
            instance.clone(),
            self.max_tombstones,
        ));
        let changed = Arc::new(tombstones::Changed::default());
        let observer: Arc<dyn JoinObserver> = Arc::new(tombstones::Observer {
            cache: cache.clone(),
            changed: changed.clone(),
        });
        if !registry.set_join_observer(observer.clone()) {
            return Err(RemoteError::AlreadyJoined);
        }
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
            started_ms: AtomicU64::new(0),
            tombstones_high: AtomicBool::new(false),
            durable: AtomicU8::new(0),
            signer: self.signer.clone(),
            rejected: AtomicU64::new(0),
            broker_clock: Default::default(),
            seen: super::replay::SeenRequests::new(self.replay_window),
            notices: super::util::Notices::default(),
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

/// A new instance id: lowercase hex digits, unique to this process (its
/// id, the time it started in ns and a counter of nodes in the process).
fn new_instance() -> String {
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    format!(
        "{:x}{:012x}{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        INSTANCES.fetch_add(1, Ordering::Relaxed)
    )
}
