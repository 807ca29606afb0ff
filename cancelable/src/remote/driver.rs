//! The node's thread: connects, subscribes, catches up on tombstones,
//! answers requests, publishes heartbeats, and reconnects with backoff
//! when the broker is lost.

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::RedisResult;

use super::protocol::{Message, NodeSnapshot, RemoteOperation, Target, Tombstone, WireAck};
use super::tombstones::Cached;
use super::{
    broker_error, log_warn, millis, unix_ms, within, Oneshot, RemoteError, Shared, PROTOCOL_VERSION,
};
use crate::registry::{Filter, OperationInfo};
use crate::CancelReason;

/// At most this many operations go into a node's snapshot.
const MAX_SNAPSHOT_OPERATIONS: usize = 10_000;
/// How often a request that waits for an exit looks at the registry.
const EXIT_POLL: Duration = Duration::from_millis(1);

type Tasks = FuturesUnordered<Pin<Box<dyn Future<Output = ()>>>>;

/// Starts the node's thread. `ready` gets the outcome of the first
/// connection; `finished`, a value once the thread ends.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    ready: Arc<Oneshot<Result<(), RemoteError>>>,
    finished: Arc<Oneshot<()>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cancelable-remote".to_owned())
        .spawn(move || {
            /// Whatever way the thread ends, `connect` and `close` return.
            struct Ended(Arc<Oneshot<Result<(), RemoteError>>>, Arc<Oneshot<()>>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    self.0.set(Err(RemoteError::Broker(
                        "the node's thread ended before connecting".to_owned(),
                    )));
                    self.1.set(());
                }
            }
            let _ended = Ended(ready.clone(), finished);
            async_io::block_on(drive(&shared, &ready));
        })
        .map(drop)
}

async fn drive(shared: &Arc<Shared>, ready: &Oneshot<Result<(), RemoteError>>) {
    let (first, longest) = shared.settings.backoff;
    let mut pause = first;
    let mut ever_connected = false;
    loop {
        let mut established = false;
        let outcome = session(shared, ready, ever_connected, &mut established).await;
        *crate::sync::lock(&shared.connection) = None;
        shared.connected.store(false, Ordering::Release);
        match outcome {
            Ok(()) => return,
            Err(error) if !ever_connected && !established => {
                ready.set(Err(RemoteError::Connect {
                    url: shared.settings.url.clone(),
                    error,
                }));
                return;
            }
            Err(error) => log_warn!(
                "cancelable node {:?} lost the Redis broker ({}); reconnecting in {:?}",
                shared.node(),
                error,
                pause
            ),
        }
        ever_connected |= established;
        if established {
            pause = first;
        }
        let stop = within(pause, shared.shutdown.cancelled()).await;
        if stop.is_some() {
            return;
        }
        pause = (pause * 2).min(longest);
    }
}

/// How long after an operation joins or leaves the node publishes its
/// snapshot (changes in between share it).
const CHANGE_DEBOUNCE: Duration = Duration::from_millis(20);

enum Event {
    Shutdown,
    Message(Option<redis::Msg>),
    Heartbeat,
    Changed,
}

/// One connection: set up, then serve until the broker is lost (`Err`) or
/// the node leaves (`Ok`).
async fn session(
    shared: &Arc<Shared>,
    ready: &Oneshot<Result<(), RemoteError>>,
    reconnecting: bool,
    established: &mut bool,
) -> Result<(), String> {
    let settings = &shared.settings;
    let setup = async {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(None);
        // Subscribe before reading the tombstones: a cancel sent meanwhile
        // arrives on the channel, one sent before is in the sorted set.
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub.subscribe(&shared.names.requests).await?;
        pubsub.subscribe(&shared.replies).await?;
        let mut connection = shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        catch_up(shared, &mut connection).await?;
        publish_snapshot(shared, &mut connection).await?;
        Ok::<_, redis::RedisError>((pubsub, connection))
    };
    let limit = settings.connect_timeout + settings.answer_within;
    let (pubsub, connection) = match within(limit, setup).await {
        None => return Err(format!("no answer within {limit:?}")),
        Some(Err(error)) => return Err(error.to_string()),
        Some(Ok(connected)) => connected,
    };
    *crate::sync::lock(&shared.connection) = Some(connection.clone());
    shared.connected.store(true, Ordering::Release);
    if reconnecting {
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    *established = true;
    ready.set(Ok(()));

    let mut messages = std::pin::pin!(pubsub.into_on_message());
    let mut heartbeat = async_io::Timer::interval(settings.heartbeat);
    let mut soon: Option<async_io::Timer> = None;
    let mut tasks = Tasks::new();
    let shutdown = shared.shutdown.clone();
    let mut stop = std::pin::pin!(shutdown.cancelled());
    loop {
        let event = std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Shutdown);
            }
            while let Poll::Ready(Some(())) = tasks.poll_next_unpin(cx) {}
            if let Poll::Ready(message) = messages.poll_next_unpin(cx) {
                return Poll::Ready(Event::Message(message));
            }
            if let Poll::Ready(Some(_)) = heartbeat.poll_next_unpin(cx) {
                return Poll::Ready(Event::Heartbeat);
            }
            match &mut soon {
                Some(timer) => {
                    if timer.poll_next_unpin(cx).is_ready() {
                        soon = None;
                        return Poll::Ready(Event::Heartbeat);
                    }
                }
                None => {
                    if shared.changed.poll_take(cx).is_ready() {
                        return Poll::Ready(Event::Changed);
                    }
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Shutdown => {
                // Answers being sent (or waiting for an exit) go out first.
                let drain = async { while tasks.next().await.is_some() {} };
                let _ = within(settings.answer_within, drain).await;
                deregister(shared, connection).await;
                return Ok(());
            }
            Event::Message(None) => return Err("the subscription connection closed".to_owned()),
            Event::Message(Some(message)) => handle(shared, &message, &connection, &mut tasks),
            Event::Changed => soon = Some(async_io::Timer::after(CHANGE_DEBOUNCE)),
            Event::Heartbeat => {
                shared.cache.live(unix_ms());
                // Awaited here, bounded: a broker that stopped answering
                // (but kept the connection open) is a lost broker.
                let mut connection = connection.clone();
                let limit = settings.answer_within;
                match within(limit, publish_snapshot(shared, &mut connection)).await {
                    Some(Ok(())) => {}
                    Some(Err(error)) => {
                        return Err(format!("publishing the snapshot failed: {error}"))
                    }
                    None => return Err(format!("the broker did not answer within {limit:?}")),
                }
            }
        }
    }
}

/// Adds the commands writing `tombstones` (expiry, member) and trimming
/// the set to `pipe`, their replies ignored.
pub(crate) fn add_tombstones(
    pipe: &mut redis::Pipeline,
    shared: &Shared,
    tombstones: impl IntoIterator<Item = (u64, String)>,
    now_ms: u64,
) {
    let key = &shared.names.tombstones;
    let mut add = redis::cmd("ZADD");
    add.arg(key);
    for (expires_ms, member) in tombstones {
        add.arg(expires_ms).arg(member);
    }
    pipe.add_command(add).ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(key)
        .arg("-inf")
        .arg(now_ms)
        .ignore();
    let keep = i64::try_from(shared.settings.max_tombstones).unwrap_or(i64::MAX);
    pipe.cmd("ZREMRANGEBYRANK")
        .arg(key)
        .arg(0)
        .arg(-keep - 1)
        .ignore();
}

/// Reads every tombstone, writes back those the broker lacks, and applies
/// them all to the live operations.
async fn catch_up(shared: &Shared, connection: &mut MultiplexedConnection) -> RedisResult<()> {
    let now = unix_ms();
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
        .arg(&shared.names.tombstones)
        .arg(now)
        .arg("+inf")
        .query_async(connection)
        .await?;
    let mut stored = HashSet::new();
    for member in members {
        match Tombstone::decode(&member) {
            Ok(tombstone) => {
                let text = String::from_utf8_lossy(&member).into_owned();
                shared.cache.insert(tombstone, text.clone(), now);
                stored.insert(text);
            }
            Err(error) => log_warn!("cancelable ignored a malformed tombstone: {}", error),
        }
    }
    let live = shared.cache.live(now);
    let missing: Vec<(u64, String)> = live
        .iter()
        .filter(|cached| !stored.contains(&cached.member))
        .map(|cached| (cached.expires_ms, cached.member.clone()))
        .collect();
    if !missing.is_empty() {
        let mut pipe = redis::pipe();
        pipe.atomic();
        add_tombstones(&mut pipe, shared, missing, now);
        pipe.query_async::<()>(connection).await?;
    }
    for cached in &live {
        apply(shared, cached);
    }
    Ok(())
}

/// Cancels the live operation a tombstone names, if it runs here.
fn apply(shared: &Shared, cached: &Cached) {
    let registry = &shared.registry;
    match &cached.target {
        Target::Key { key } => {
            let _ = registry.cancel_by_key(key, cached.reason.clone(), cached.message.clone());
        }
        Target::Id { node, id } if node == shared.node() => {
            let _ = registry.cancel(*id, cached.reason.clone(), cached.message.clone());
        }
        Target::Id { .. } => {}
    }
}

/// An operation a request found, and when it was cancelled.
struct Found {
    ack: WireAck,
    at: Instant,
}

fn cancel_found(
    shared: &Shared,
    info: OperationInfo,
    reason: &CancelReason,
    message: &str,
) -> Found {
    let at = Instant::now();
    let cancelled_now = shared
        .registry
        .cancel(info.id, reason.clone(), message)
        .is_ok_and(|answer| answer.is_requested());
    Found {
        ack: WireAck {
            id: info.id,
            key: info.key,
            name: info.name.map(Cow::into_owned),
            cancelled_now,
            running: true,
            lag_us: None,
        },
        at,
    }
}

fn handle(
    shared: &Arc<Shared>,
    message: &redis::Msg,
    connection: &MultiplexedConnection,
    tasks: &mut Tasks,
) {
    let decoded = match Message::decode(message.get_payload_bytes()) {
        Ok(decoded) => decoded,
        Err(error) => {
            log_warn!(
                "cancelable node {:?} ignored a malformed message on {}: {}",
                shared.node(),
                message.get_channel_name(),
                error
            );
            return;
        }
    };
    match decoded {
        Message::Ack {
            request,
            node,
            found,
            ..
        } => {
            let replies = crate::sync::lock(&shared.pending).get(&request).cloned();
            if let Some(replies) = replies {
                replies.push(node, found);
            }
        }
        Message::Cancel {
            request,
            reply_to,
            target,
            reason,
            message,
            expires_ms,
            wait_ms,
            ..
        } => {
            let tombstone = Tombstone {
                v: PROTOCOL_VERSION,
                target: target.clone(),
                reason: reason.clone(),
                message: message.clone(),
                expires_ms,
            };
            let member = tombstone.encode();
            shared.cache.insert(tombstone, member, unix_ms());
            let found = match reason.to_reason() {
                Some(reason) => {
                    let registry = &shared.registry;
                    let info = match &target {
                        Target::Key { key } => registry.get_by_key(key),
                        Target::Id { node, id } if node == shared.node() => registry.get(*id),
                        Target::Id { .. } => None,
                    };
                    info.map(|info| cancel_found(shared, info, &reason, &message))
                        .into_iter()
                        .collect()
                }
                None => {
                    log_warn!("cancelable ignored a cancel with a reason this build does not know");
                    Vec::new()
                }
            };
            respond(shared, connection, tasks, request, reply_to, found, wait_ms);
        }
        Message::CancelWhere {
            request,
            reply_to,
            filter,
            reason,
            message,
            wait_ms,
            ..
        } => {
            let mut found = Vec::new();
            let for_us = filter
                .node
                .as_deref()
                .is_none_or(|node| node == shared.node());
            let local = match &filter.name {
                Some(pattern) => Filter::new().name(pattern).ok(),
                None => Some(Filter::new()),
            };
            if let (true, Some(local), Some(reason)) = (for_us, local, reason.to_reason()) {
                for info in shared.registry.list(&local) {
                    let key_matches = filter
                        .key
                        .as_deref()
                        .is_none_or(|key| info.key.as_deref() == Some(key));
                    let metadata_matches = filter
                        .metadata
                        .iter()
                        .all(|(key, value)| info.metadata.get(key) == Some(value));
                    if key_matches && metadata_matches {
                        found.push(cancel_found(shared, info, &reason, &message));
                    }
                }
            }
            respond(shared, connection, tasks, request, reply_to, found, wait_ms);
        }
    }
}

/// Answers a request: at once, or once the operations found exited (or
/// the wait passed).
fn respond(
    shared: &Arc<Shared>,
    connection: &MultiplexedConnection,
    tasks: &mut Tasks,
    request: String,
    reply_to: String,
    found: Vec<Found>,
    wait_ms: Option<u64>,
) {
    let shared = shared.clone();
    let mut connection = connection.clone();
    tasks.push(Box::pin(async move {
        let mut acks = Vec::with_capacity(found.len());
        let deadline = wait_ms.map(|wait| Instant::now() + Duration::from_millis(wait));
        for Found { mut ack, at } in found {
            if let Some(deadline) = deadline {
                loop {
                    if shared.registry.get(ack.id).is_none() {
                        ack.running = false;
                        ack.lag_us =
                            Some(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));
                        break;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    async_io::Timer::after(EXIT_POLL).await;
                }
            }
            acks.push(ack);
        }
        let answer = Message::Ack {
            v: PROTOCOL_VERSION,
            request,
            node: shared.node().to_owned(),
            found: acks,
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(reply_to).arg(answer.encode());
        let sent = within(
            shared.settings.answer_within,
            publish.query_async::<()>(&mut connection),
        )
        .await;
        if !matches!(sent, Some(Ok(()))) {
            log_warn!(
                "cancelable node {:?} could not answer a request: {:?}",
                shared.node(),
                sent
            );
        }
    }));
}

fn snapshot(shared: &Shared) -> NodeSnapshot {
    let node = shared.node();
    let live = shared.registry.list(&Filter::new());
    let truncated = live.len().saturating_sub(MAX_SNAPSHOT_OPERATIONS);
    let operations = live
        .into_iter()
        .take(MAX_SNAPSHOT_OPERATIONS)
        .map(|info| RemoteOperation {
            node: node.to_owned(),
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
        published_ms: unix_ms(),
        operations,
        truncated,
    }
}

async fn publish_snapshot(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> RedisResult<()> {
    let json = serde_json::to_string(&snapshot(shared)).expect("snapshots serialise");
    let now = unix_ms();
    let ttl = millis(shared.settings.node_ttl);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(shared.names.node(shared.node()))
        .arg(json)
        .arg("PX")
        .arg(ttl)
        .ignore()
        .cmd("ZADD")
        .arg(&shared.names.nodes)
        .arg(now.saturating_add(ttl))
        .arg(shared.node())
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&shared.names.nodes)
        .arg("-inf")
        .arg(now)
        .ignore()
        .query_async(connection)
        .await
}

/// Leaves the cluster's list of nodes (best effort: the TTL covers a
/// failure).
async fn deregister(shared: &Shared, mut connection: MultiplexedConnection) {
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
    let now = unix_ms();
    let nodes: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&shared.names.nodes)
        .arg(now)
        .arg("+inf")
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
        .filter_map(|value| match NodeSnapshot::decode(&value) {
            Ok(snapshot) => Some(snapshot),
            Err(error) => {
                log_warn!("cancelable ignored a malformed node snapshot: {}", error);
                None
            }
        })
        .collect();
    snapshots.sort_by(|a, b| a.node.cmp(&b.node));
    for snapshot in &mut snapshots {
        snapshot.operations.sort_by_key(|operation| operation.id);
    }
    Ok(snapshots)
}
