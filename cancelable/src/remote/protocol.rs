//! The wire format: versioned JSON messages, tombstones and node
//! snapshots, and the Redis key and channel names. See the module docs of
//! [`remote`](super) for the protocol as a whole.
//!
//! Decoding never panics on any input (checked by a property test below):
//! a payload that is too large, not JSON, of another version or of an
//! unknown shape is an `Err` that the node logs and ignores.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CancelReason, Signal, SourceError};

/// The protocol version every message and stored value carries as `"v"`.
pub const PROTOCOL_VERSION: u32 = 2;

pub use super::target::{EmptyTarget, Target};

/// The largest cancel request or tombstone, encoded: 64 KiB. A cancel
/// whose message, key or reason would make it larger is refused with
/// [`RemoteError::TooLarge`](super::RemoteError::TooLarge) before anything
/// is sent; larger messages on the channel are ignored without parsing.
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// The largest node snapshot, encoded: 1 MiB. A node with more live
/// operations than fit publishes the first ones and says how many were
/// left out (`truncated`).
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 20;

/// Room for a signature and framing on top of the limits above.
const SLACK: usize = 256;

/// The Redis names of one cluster (one namespace).
#[derive(Clone, Debug)]
pub(crate) struct Names {
    /// Channel of cancel requests, which every node subscribes to.
    pub(crate) requests: String,
    /// Sorted set of tombstones: one member per target (its encoding),
    /// score: expiry (Unix ms, the broker's clock).
    pub(crate) tombstones: String,
    /// Hash of the tombstones' bodies, by member.
    pub(crate) bodies: String,
    /// Sorted set of live node names (score: expiry, Unix ms, the
    /// broker's clock).
    pub(crate) nodes: String,
    prefix: String,
}

impl Names {
    pub(crate) fn new(namespace: &str) -> Names {
        let prefix = format!("{namespace}:v{PROTOCOL_VERSION}");
        Names {
            requests: format!("{prefix}:requests"),
            tombstones: format!("{prefix}:tombstones"),
            bodies: format!("{prefix}:tombstone-bodies"),
            nodes: format!("{prefix}:nodes"),
            prefix,
        }
    }

    /// String key holding a node's snapshot (expires with the node TTL).
    pub(crate) fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// String key holding the instance id that leases the name `node`
    /// (expires with the node TTL).
    pub(crate) fn lease(&self, node: &str) -> String {
        format!("{}:lease:{node}", self.prefix)
    }

    /// A channel nobody subscribes to: the permission probe at connect.
    pub(crate) fn probe(&self) -> String {
        format!("{}:probe", self.prefix)
    }

    /// Channel where the instance `instance` of `node` receives answers.
    pub(crate) fn replies(&self, node: &str, instance: &str) -> String {
        format!("{}:replies:{node}:{instance}", self.prefix)
    }
}

/// A cancel reason on the wire. Round-trips every [`CancelReason`] (a
/// source error keeps its message, not its cause).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireReason {
    Timeout,
    Signal { signal: String },
    Condition,
    Manual,
    ClientDisconnected,
    Parent { reason: Box<WireReason> },
    Error { message: String },
}

impl WireReason {
    pub(crate) fn from_reason(reason: &CancelReason) -> WireReason {
        match reason {
            CancelReason::Timeout => WireReason::Timeout,
            CancelReason::Signal(signal) => WireReason::Signal {
                signal: signal.name().to_owned(),
            },
            CancelReason::Condition => WireReason::Condition,
            CancelReason::Manual => WireReason::Manual,
            CancelReason::ClientDisconnected => WireReason::ClientDisconnected,
            CancelReason::Parent(inner) => WireReason::Parent {
                reason: Box::new(WireReason::from_reason(inner)),
            },
            CancelReason::Error(error) => WireReason::Error {
                message: error.message().to_owned(),
            },
        }
    }

    /// The reason, or `None` for a signal name this build does not know.
    pub(crate) fn to_reason(&self) -> Option<CancelReason> {
        Some(match self {
            WireReason::Timeout => CancelReason::Timeout,
            WireReason::Signal { signal } => CancelReason::Signal(
                Signal::ALL
                    .into_iter()
                    .find(|known| known.name() == signal)?,
            ),
            WireReason::Condition => CancelReason::Condition,
            WireReason::Manual => CancelReason::Manual,
            WireReason::ClientDisconnected => CancelReason::ClientDisconnected,
            WireReason::Parent { reason } => CancelReason::Parent(Box::new(reason.to_reason()?)),
            WireReason::Error { message } => CancelReason::Error(SourceError::new(message.clone())),
        })
    }
}

/// Which operations a [`RemoteRegistry::cancel_where`](super::RemoteRegistry::cancel_where)
/// is about: every condition given must hold. An empty filter selects
/// every live registered operation of every node.
///
/// ```
/// use cancelable::remote::RemoteFilter;
///
/// let filter = RemoteFilter::new()
///     .name("export-*")?
///     .metadata("job", "42")
///     .node("worker-1");
/// assert!(RemoteFilter::new().name("job[").is_err());
/// # let _ = filter;
/// # Ok::<(), cancelable::registry::RegistryError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) metadata: BTreeMap<String, String>,
}

impl RemoteFilter {
    /// A filter that selects every operation.
    pub fn new() -> RemoteFilter {
        RemoteFilter::default()
    }

    /// Keeps operations of the node named `node`.
    pub fn node(mut self, node: impl Into<String>) -> RemoteFilter {
        self.node = Some(node.into());
        self
    }

    /// Keeps operations whose name matches the glob `pattern` (see
    /// [`Pattern`](crate::registry::Pattern)); `Err` if it does not parse.
    pub fn name(mut self, pattern: &str) -> Result<RemoteFilter, crate::registry::RegistryError> {
        crate::registry::Pattern::new(pattern)?;
        self.name = Some(pattern.to_owned());
        Ok(self)
    }

    /// Keeps the operation holding `key`.
    pub fn key(mut self, key: impl Into<String>) -> RemoteFilter {
        self.key = Some(key.into());
        self
    }

    /// Keeps operations whose metadata has `key` set to `value`
    /// (see [`CancelScope::metadata`](crate::CancelScope::metadata)).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> RemoteFilter {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A message on a channel: a request on the requests channel, an answer on
/// a replies channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Message {
    /// Cancel one target.
    Cancel {
        v: u32,
        request: String,
        reply_to: String,
        target: Target,
        reason: WireReason,
        #[serde(default)]
        message: String,
        /// How long the tombstone written with the request lasts, in ms.
        ttl_ms: u64,
        /// When it was issued, on the broker's clock as its issuer reads
        /// it (Unix ms; 0 from a build without the replay defence, see
        /// `replay.rs`). Under the signature.
        #[serde(default)]
        issued_ms: u64,
        /// Answer once the operation exited, or after this long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Cancel every live operation passing a filter.
    CancelWhere {
        v: u32,
        request: String,
        reply_to: String,
        filter: RemoteFilter,
        reason: WireReason,
        #[serde(default)]
        message: String,
        /// As for `Cancel`.
        #[serde(default)]
        issued_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// A node's answer to a request: what it found (empty: nothing).
    Ack {
        v: u32,
        request: String,
        node: String,
        /// The answering node's instance id.
        #[serde(default)]
        instance: String,
        #[serde(default)]
        found: Vec<WireAck>,
    },
}

/// One operation a node found for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireAck {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) key: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// `false`: it was cancelled already (a repeated cancel is a no-op).
    pub(crate) cancelled_now: bool,
    /// Still running when the answer was sent.
    pub(crate) running: bool,
    /// Microseconds from the cancel to its exit, if the request waited and
    /// it exited.
    #[serde(default)]
    pub(crate) lag_us: Option<u64>,
}

/// A tombstone: a cancel that nodes apply to operations registering later
/// and re-read after every reconnect. Stored as a value of the tombstone
/// bodies hash, under the target's encoding, which is also its member in
/// the tombstones sorted set, scored by its expiry on the broker's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    pub(crate) v: u32,
    pub(crate) target: Target,
    pub(crate) reason: WireReason,
    #[serde(default)]
    pub(crate) message: String,
    /// Its time to live when issued, in ms: issued at its expiry minus this.
    pub(crate) ttl_ms: u64,
    /// When it was issued, on the broker's clock (Unix ms; 0 from a build
    /// without the replay defence): it lives until this plus `ttl_ms`,
    /// whatever score the sorted set holds (`replay.rs`).
    #[serde(default)]
    pub(crate) issued_ms: u64,
}

/// Why a payload was ignored.
#[derive(Debug)]
pub(crate) enum DecodeError {
    TooLarge(usize, usize),
    Version(u32),
    Json(serde_json::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge(size, limit) => {
                write!(f, "payload of {size} bytes exceeds {limit} bytes")
            }
            DecodeError::Version(v) => {
                write!(
                    f,
                    "protocol version {v}, this node speaks {PROTOCOL_VERSION}"
                )
            }
            DecodeError::Json(error) => write!(f, "not a valid message: {error}"),
        }
    }
}

#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

fn decode_versioned<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if payload.len() > limit + SLACK {
        return Err(DecodeError::TooLarge(payload.len(), limit));
    }
    let versioned: Versioned = serde_json::from_slice(payload).map_err(DecodeError::Json)?;
    if versioned.v != PROTOCOL_VERSION {
        return Err(DecodeError::Version(versioned.v));
    }
    serde_json::from_slice(payload).map_err(DecodeError::Json)
}

impl Message {
    pub(crate) fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
        decode_versioned(payload, MAX_MESSAGE_BYTES)
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).expect("messages serialise: no maps with non-string keys")
    }
}

impl Tombstone {
    pub(crate) fn decode(payload: &[u8]) -> Result<Tombstone, DecodeError> {
        decode_versioned(payload, MAX_MESSAGE_BYTES)
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).expect("tombstones serialise")
    }

    /// Its member in the tombstones sorted set: one per target.
    pub(crate) fn member(&self) -> String {
        target_member(&self.target)
    }
}

/// The member of the tombstones sorted set for `target`.
pub(crate) fn target_member(target: &Target) -> String {
    serde_json::to_string(target).expect("targets serialise")
}

/// A live operation of some node, as [`RemoteRegistry::list`](super::RemoteRegistry::list)
/// shows it: what the node published in its last snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteOperation {
    /// The node running it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The instance id of the node process running it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// Its id on that node: [`target`](Self::target) addresses it.
    pub id: u64,
    /// The user key it registered under, if any.
    #[serde(default)]
    pub key: Option<String>,
    /// Its name, if it has one.
    #[serde(default)]
    pub name: Option<String>,
    /// Its status (`"running"` while live).
    pub status: String,
    /// How long it had run when the snapshot was taken, in ms.
    pub elapsed_ms: u64,
    /// Its metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Why it was cancelled, if it was (in words).
    #[serde(default)]
    pub reason: Option<String>,
    /// The message of its cancellation, if any.
    #[serde(default)]
    pub message: Option<String>,
    /// Cancelled and not exited for longer than the node's stuck threshold.
    #[serde(default)]
    pub stuck: bool,
}

impl RemoteOperation {
    /// The target that addresses this operation: its node, id and node
    /// incarnation (`NODE/ID@INSTANCE`).
    pub fn target(&self) -> Target {
        Target::id(self.node.clone(), self.id).in_instance(self.instance.clone())
    }
}

/// What one node published: its live registered operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// Always [`PROTOCOL_VERSION`].
    pub v: u32,
    /// The node's name.
    pub node: String,
    /// The instance id of the node process.
    #[serde(default)]
    pub instance: String,
    /// When it was taken, Unix time in ms, by the node's clock
    /// (informational: no expiry depends on it).
    pub published_ms: u64,
    /// Its live operations (as many as fit in [`MAX_SNAPSHOT_BYTES`]; see
    /// `truncated`).
    pub operations: Vec<RemoteOperation>,
    /// How many live operations did not fit in the snapshot.
    #[serde(default)]
    pub truncated: usize,
}

impl NodeSnapshot {
    pub(crate) fn decode(payload: &[u8]) -> Result<NodeSnapshot, DecodeError> {
        decode_versioned(payload, MAX_SNAPSHOT_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cancel() -> Message {
        Message::Cancel {
            v: PROTOCOL_VERSION,
            request: "r1".into(),
            reply_to: "ns:v2:replies:a:1".into(),
            target: Target::key("job-42"),
            reason: WireReason::from_reason(&CancelReason::Parent(Box::new(CancelReason::Signal(
                Signal::Terminate,
            )))),
            message: "operator".into(),
            ttl_ms: 1_000,
            issued_ms: 1_700_000_000_000,
            wait_ms: Some(100),
        }
    }

    #[test]
    fn messages_round_trip() {
        let message = cancel();
        assert_eq!(
            Message::decode(message.encode().as_bytes()).unwrap(),
            message
        );
    }

    #[test]
    fn every_reason_round_trips() {
        let reasons = [
            CancelReason::Timeout,
            CancelReason::Condition,
            CancelReason::Manual,
            CancelReason::Signal(Signal::Hangup),
            CancelReason::Error(SourceError::new("disk full")),
            CancelReason::Parent(Box::new(CancelReason::Timeout)),
        ];
        for reason in reasons {
            assert_eq!(WireReason::from_reason(&reason).to_reason(), Some(reason));
        }
    }

    #[test]
    fn another_version_is_refused() {
        let ours = format!("\"v\":{PROTOCOL_VERSION}");
        let encoded = cancel().encode();
        assert!(encoded.contains(&ours), "{encoded}");
        for other in [1, PROTOCOL_VERSION + 1] {
            let text = encoded.replace(&ours, &format!("\"v\":{other}"));
            assert!(matches!(
                Message::decode(text.as_bytes()),
                Err(DecodeError::Version(v)) if v == other
            ));
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut text = String::new();
        for _ in 0..100_000 {
            text.push_str("{\"kind\":\"parent\",\"reason\":");
        }
        assert!(Message::decode(text.as_bytes()).is_err());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            prop_oneof![
                Just("cancel".to_owned()),
                Just("cancel_where".to_owned()),
                Just("ack".to_owned()),
                Just("key".to_owned()),
                Just("id".to_owned()),
                ".*"
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("v".to_owned()),
                        Just("type".to_owned()),
                        Just("by".to_owned()),
                        Just("kind".to_owned()),
                        Just("target".to_owned()),
                        Just("reason".to_owned()),
                        Just("found".to_owned()),
                        "[a-z_]{1,10}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
            let _ = Tombstone::decode(&bytes);
            let _ = NodeSnapshot::decode(&bytes);
        }

        #[test]
        fn decoding_random_json_never_panics(value in json_value(), v in 0u32..3) {
            let mut value = value;
            if let serde_json::Value::Object(map) = &mut value {
                map.insert("v".into(), v.into());
            }
            let bytes = serde_json::to_vec(&value).unwrap();
            if let Ok(Message::Cancel { reason, .. } | Message::CancelWhere { reason, .. }) =
                Message::decode(&bytes)
            {
                let _ = reason.to_reason();
            }
            let _ = Tombstone::decode(&bytes);
            let _ = NodeSnapshot::decode(&bytes);
        }

        #[test]
        fn mutated_valid_messages_never_panic(index in 0usize..400, byte in any::<u8>()) {
            let mut bytes = cancel().encode().into_bytes();
            let index = index % bytes.len();
            bytes[index] = byte;
            let _ = Message::decode(&bytes);
        }
    }
}
