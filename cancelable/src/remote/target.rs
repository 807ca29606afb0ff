//! What a remote cancel addresses: one operation of one node incarnation,
//! or a user key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which operation a remote cancel is about: one operation of one node
/// incarnation (the node's name, the operation's id there and, optionally,
/// the node process's instance id) or a user key the scope registered
/// under with [`CancelScope::key`](crate::CancelScope::key).
///
/// A node process is an *incarnation* of its node name, with an instance id
/// of its own ([`RemoteRegistry::instance`](super::RemoteRegistry::instance));
/// operation ids start again at 1 in a new process. A target with an
/// instance reaches that incarnation only. A target without one (`NODE/ID`
/// typed by hand) reaches the incarnations of `NODE` that were running when
/// the cancel was issued — by the broker's clock — never one started
/// later, so a tombstone for a previous incarnation never touches a new one.
///
/// Text: `NODE/ID@INSTANCE` or `NODE/ID` (the id is digits after the last
/// `/`, the instance lowercase hex digits), or a key otherwise;
/// [`Target::key`] takes any text as a key (and `cancelctl` takes `--id`
/// and `--key` apart).
///
/// ```
/// use cancelable::remote::Target;
///
/// assert_eq!("worker-1/17".parse::<Target>(), Ok(Target::id("worker-1", 17)));
/// let exact = Target::id("worker-1", 17).in_instance("1f2e");
/// assert_eq!(exact.to_string(), "worker-1/17@1f2e");
/// assert_eq!("worker-1/17@1f2e".parse::<Target>(), Ok(exact));
/// assert_eq!("job-42".parse::<Target>(), Ok(Target::key("job-42")));
/// assert_eq!(Target::id("worker-1", 17).to_string(), "worker-1/17");
/// assert!("".parse::<Target>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Target {
    /// The operation `id` of node `node` (of its incarnation `instance`,
    /// if given).
    Id {
        /// The node's name.
        node: String,
        /// The operation's id on that node
        /// ([`ScopeHandle::id`](crate::ScopeHandle::id)).
        id: u64,
        /// The instance id of the node process; `None`: the incarnations
        /// running when the cancel is issued.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// The operation holding this key, on whichever node.
    Key {
        /// The key.
        key: String,
    },
}

impl Target {
    /// The operation `id` on node `node`, in whichever incarnation of the
    /// node was running when the cancel is issued.
    pub fn id(node: impl Into<String>, id: u64) -> Target {
        Target::Id {
            node: node.into(),
            id,
            instance: None,
        }
    }

    /// The operation holding `key`.
    pub fn key(key: impl Into<String>) -> Target {
        Target::Key { key: key.into() }
    }

    /// This id target, narrowed to the node incarnation `instance` (a key
    /// target is returned unchanged).
    pub fn in_instance(self, instance: impl Into<String>) -> Target {
        match self {
            Target::Id { node, id, .. } => Target::Id {
                node,
                id,
                instance: Some(instance.into()),
            },
            key => key,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Id {
                node,
                id,
                instance: None,
            } => write!(f, "{node}/{id}"),
            Target::Id {
                node,
                id,
                instance: Some(instance),
            } => write!(f, "{node}/{id}@{instance}"),
            Target::Key { key } => f.write_str(key),
        }
    }
}

/// An empty target text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmptyTarget;

impl fmt::Display for EmptyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an operation target must not be empty: give NODE/ID or a key like \"job-42\"")
    }
}

impl std::error::Error for EmptyTarget {}

/// `NODE/ID` as a node name and an id, if it is one.
fn node_and_id(text: &str) -> Option<(&str, u64)> {
    let (node, id) = text.rsplit_once('/')?;
    if node.is_empty() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((node, id.parse().ok()?))
}

impl FromStr for Target {
    type Err = EmptyTarget;

    fn from_str(text: &str) -> Result<Target, EmptyTarget> {
        if text.is_empty() {
            return Err(EmptyTarget);
        }
        if let Some((rest, instance)) = text.rsplit_once('@') {
            let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            if !instance.is_empty() && instance.bytes().all(hex) {
                if let Some((node, id)) = node_and_id(rest) {
                    return Ok(Target::id(node, id).in_instance(instance));
                }
            }
        }
        Ok(match node_and_id(text) {
            Some((node, id)) => Target::id(node, id),
            None => Target::key(text),
        })
    }
}
