//! The node's snapshot: what it publishes of its live operations, and
//! reading every node's.

use std::borrow::Cow;

use redis::aio::MultiplexedConnection;
use redis::RedisResult;

use super::protocol::{NodeSnapshot, RemoteOperation};
use super::signing::Kind;
use super::{broker, broker_error, millis, within, RemoteError, Shared, PROTOCOL_VERSION};
use crate::registry::Filter;

/// At most this many operations go into a node's snapshot.
const MAX_SNAPSHOT_OPERATIONS: usize = 10_000;

fn snapshot(shared: &Shared) -> NodeSnapshot {
    let node = shared.node();
    let live = shared.registry.list(&Filter::new());
    let truncated = live.len().saturating_sub(MAX_SNAPSHOT_OPERATIONS);
    let operations = live
        .into_iter()
        .take(MAX_SNAPSHOT_OPERATIONS)
        .map(|info| RemoteOperation {
            node: node.to_owned(),
            instance: shared.instance.clone(),
            id: info.id,
            key: info.key,
            name: info.name.map(Cow::into_owned),
            status: info.status.to_string(),
            elapsed_ms: millis(info.elapsed),
            metadata: info.metadata,
            reason: info.reason.map(|reason| reason.to_string()),
            message: info.message,
            stuck: info.stuck,
        })
        .collect();
    NodeSnapshot {
        v: PROTOCOL_VERSION,
        node: node.to_owned(),
        instance: shared.instance.clone(),
        published_ms: shared.wall_ms(),
        operations,
        truncated,
    }
}

pub(crate) async fn publish_snapshot(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> RedisResult<()> {
    let json = serde_json::to_string(&snapshot(shared)).expect("snapshots serialise");
    let json = shared.signer.seal(Kind::Snapshot, json);
    let ttl = millis(shared.settings.node_ttl).max(1).to_string();
    let names = &shared.names;
    let key = names.node(shared.node());
    let keys = [key.as_str(), names.nodes.as_str()];
    let args = [json.as_bytes(), ttl.as_bytes(), shared.node().as_bytes()];
    broker::SNAPSHOT
        .run::<i64>(connection, &keys, &args)
        .await?;
    Ok(())
}

/// Leaves the cluster's list of nodes (best effort: the TTL covers a
/// failure).
pub(crate) async fn deregister(shared: &Shared, mut connection: MultiplexedConnection) {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("DEL")
        .arg(shared.names.node(shared.node()))
        .ignore()
        .cmd("ZREM")
        .arg(&shared.names.nodes)
        .arg(shared.node())
        .ignore();
    let _ = within(
        shared.settings.answer_within,
        pipe.query_async::<()>(&mut connection),
    )
    .await;
}

/// The last snapshot of every live node, ordered by node name.
pub(crate) async fn read_snapshots(shared: &Shared) -> Result<Vec<NodeSnapshot>, RemoteError> {
    let mut connection = shared.connection()?;
    // No clock here: a node whose snapshot expired (`PX`, on the broker)
    // has no value in the `MGET` below.
    let nodes: Vec<String> = redis::cmd("ZRANGE")
        .arg(&shared.names.nodes)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .map_err(|error| broker_error(shared, &error))?;
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
                Ok(snapshot) => Some(snapshot),
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
