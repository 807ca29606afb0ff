//! The node's snapshot: what it publishes of its live operations, and
//! reading every node's.

use std::borrow::Cow;

use redis::aio::MultiplexedConnection;
use redis::RedisResult;

use super::checks;
use super::protocol::{NodeSnapshot, RemoteOperation, MAX_SNAPSHOT_BYTES};
use super::signing::Kind;
use super::{broker, broker_error, millis, within, RemoteError, Shared, PROTOCOL_VERSION};
use crate::registry::Filter;

/// Room for the snapshot's other fields and its signature.
const HEADER: usize = 1024;

/// The node's snapshot, encoded: as many of its live operations as fit in
/// [`MAX_SNAPSHOT_BYTES`], and how many were left out. The operations'
/// `node` and `instance` are left out on the wire (the snapshot says them
/// once; [`read_snapshots`] fills them in).
fn snapshot(shared: &Shared) -> String {
    let live = shared.registry.list(&Filter::new());
    let total = live.len();
    let mut operations = String::new();
    let mut included = 0;
    for info in live {
        let operation = RemoteOperation {
            node: String::new(),
            instance: String::new(),
            id: info.id,
            key: info.key,
            name: info.name.map(Cow::into_owned),
            status: info.status.to_string(),
            elapsed_ms: millis(info.elapsed),
            metadata: info.metadata,
            reason: info.reason.map(|reason| reason.to_string()),
            message: info.message,
            stuck: info.stuck,
        };
        let json = serde_json::to_string(&operation).expect("operations serialise");
        if operations.len() + json.len() + 1 > MAX_SNAPSHOT_BYTES - HEADER {
            break;
        }
        if included > 0 {
            operations.push(',');
        }
        operations.push_str(&json);
        included += 1;
    }
    let text = |value: &str| serde_json::to_string(value).expect("strings serialise");
    format!(
        "{{\"v\":{PROTOCOL_VERSION},\"node\":{},\"instance\":{},\"published_ms\":{},\
         \"truncated\":{},\"operations\":[{operations}]}}",
        text(shared.node()),
        text(&shared.instance),
        shared.wall_ms(),
        total - included,
    )
}

pub(crate) async fn publish_snapshot(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> RedisResult<usize> {
    let json = shared.signer.seal(Kind::Snapshot, snapshot(shared));
    let ttl = millis(shared.settings.node_ttl).max(1).to_string();
    let names = &shared.names;
    let key = names.node(shared.node());
    let lease = names.lease(shared.node());
    let keys = [key.as_str(), names.nodes.as_str(), lease.as_str()];
    let instance = match shared.settings.allow_duplicate_name {
        true => "",
        false => shared.instance.as_str(),
    };
    let args = [
        json.as_bytes(),
        ttl.as_bytes(),
        shared.node().as_bytes(),
        instance.as_bytes(),
    ];
    let now = broker::SNAPSHOT
        .run::<i64>(connection, &keys, &args)
        .await?;
    shared.broker_clock.observe(u64::try_from(now).unwrap_or(0));
    Ok(json.len())
}

/// Leaves the cluster's list of nodes (best effort: the TTL covers a
/// failure).
pub(crate) async fn deregister(shared: &Shared, mut connection: MultiplexedConnection) {
    let names = &shared.names;
    let (key, lease) = (names.node(shared.node()), names.lease(shared.node()));
    let keys = [key.as_str(), names.nodes.as_str(), lease.as_str()];
    let args = [shared.node().as_bytes(), shared.instance.as_bytes()];
    let leave = broker::LEAVE.run::<i64>(&mut connection, &keys, &args);
    let _ = within(shared.settings.answer_within, leave).await;
}

/// The last snapshot of every live node, ordered by node name.
pub(crate) async fn read_snapshots(shared: &Shared) -> Result<Vec<NodeSnapshot>, RemoteError> {
    let mut connection = shared.connection()?;
    // No clock here: a node whose snapshot expired (`PX`, on the broker)
    // has no value in the `MGET` below.
    let nodes: Result<Vec<String>, _> = redis::cmd("ZRANGE")
        .arg(&shared.names.nodes)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await;
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(error) => return Err(checks::explain(shared, &mut connection, &error).await),
    };
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = nodes.iter().map(|node| shared.names.node(node)).collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .map_err(|error| broker_error(shared, &error))?;
    let mut snapshots: Vec<NodeSnapshot> = values
        .into_iter()
        .flatten()
        .filter_map(|value| {
            let json = match shared.signer.open(Kind::Snapshot, &value) {
                Ok(json) => json,
                Err(refused) => {
                    shared.refuse("a node snapshot", &refused);
                    return None;
                }
            };
            match NodeSnapshot::decode(json) {
                Ok(mut snapshot) => {
                    for operation in &mut snapshot.operations {
                        operation.node.clone_from(&snapshot.node);
                        operation.instance.clone_from(&snapshot.instance);
                    }
                    Some(snapshot)
                }
                Err(error) => {
                    shared.malformed(format_args!("a node snapshot: {error}"));
                    None
                }
            }
        })
        .collect();
    snapshots.sort_by(|a, b| a.node.cmp(&b.node));
    for snapshot in &mut snapshots {
        snapshot.operations.sort_by_key(|operation| operation.id);
    }
    Ok(snapshots)
}
