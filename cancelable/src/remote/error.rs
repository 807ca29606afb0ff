//! What can go wrong, and how to fix it.

use std::fmt;

use super::Shared;

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
    /// A cancel would be larger on the wire than [`MAX_MESSAGE_BYTES`]
    /// (its message, key or reason is too long); nothing was sent.
    ///
    /// [`MAX_MESSAGE_BYTES`]: super::MAX_MESSAGE_BYTES
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The cluster holds as many unexpired tombstones as allowed
    /// ([`max_tombstones`](super::RemoteRegistryBuilder::max_tombstones));
    /// the cancel was refused (nothing was sent) rather than evict a
    /// pending one.
    TombstonesFull {
        /// The cap.
        max: usize,
    },
    /// The broker refused the credentials (no password where one is
    /// required, or a wrong user or password).
    Auth {
        /// The URL given.
        url: String,
        /// What the broker said.
        error: String,
    },
    /// The node's Redis user may not run a command the cluster needs.
    Permission {
        /// The command (or group) refused.
        command: String,
        /// What the broker said.
        error: String,
    },
    /// A key of the cluster holds a value of another type (planted by
    /// hand, or another program uses the namespace).
    WrongType {
        /// The key.
        key: String,
        /// The type it holds.
        found: String,
        /// The type the cluster needs there.
        expected: &'static str,
    },
    /// Another live node of the cluster has this name (its instance id is
    /// given); see
    /// [`allow_duplicate_name`](super::RemoteRegistryBuilder::allow_duplicate_name).
    NodeNameTaken {
        /// The name.
        node: String,
        /// The instance id of the live node holding it.
        instance: String,
    },
    /// No node found the target: none runs it now. A cancel of a
    /// [`Target`](super::Target) left a tombstone, which still cancels it if it registers
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
            RemoteError::Auth { url, error } => write!(
                f,
                "authentication failed at the Redis broker {url}: {error}; give the user and \
                 password in the URL, like redis://USER:PASSWORD@HOST:6379"
            ),
            RemoteError::Permission { command, error } => write!(
                f,
                "the broker's ACL does not let this node's Redis user run {command} ({error}); \
                 a node needs PUBLISH, SUBSCRIBE, EVALSHA/EVAL, SCRIPT LOAD, TIME, TYPE, GET, \
                 MGET, ZRANGE and DEL on the cluster's keys and channels (`~NAMESPACE:*`, \
                 `&NAMESPACE:*`)"
            ),
            RemoteError::WrongType {
                key,
                found,
                expected,
            } => write!(
                f,
                "the Redis key {key:?} holds a {found}, where the cluster keeps a {expected}; \
                 delete it (`DEL {key}`) or give this cluster its own namespace"
            ),
            RemoteError::NodeNameTaken { node, instance } => write!(
                f,
                "another live node is named {node:?} (instance {instance}); give every process \
                 its own node name, wait for the other to leave (its lease lasts the node TTL), \
                 or call `allow_duplicate_name()` for a deliberate takeover"
            ),
            RemoteError::TooLarge { what, size, limit } => write!(
                f,
                "the {what} is {size} bytes, more than the {limit} bytes a cluster message may \
                 have; nothing was sent: shorten the message or key"
            ),
            RemoteError::TombstonesFull { max } => write!(
                f,
                "the cluster already holds {max} unexpired tombstones (its cap); the cancel was \
                 refused so that no pending cancel is evicted: raise `max_tombstones`, shorten \
                 `tombstone_ttl`, or wait for tombstones to expire"
            ),
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

pub(crate) fn broker_error(shared: &Shared, error: &redis::RedisError) -> RemoteError {
    if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
        RemoteError::Unavailable {
            node: shared.node().to_owned(),
        }
    } else {
        RemoteError::Broker(error.to_string())
    }
}
