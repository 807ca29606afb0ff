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

use super::protocol::{Message, Target, Tombstone, WireAck};
use super::request::Answer;
use super::signing::Kind;
use super::snapshots::{deregister, publish_snapshot};
use super::tombstones::Cached;
use super::util::saturating_deadline;
use super::{broker, log_warn, millis, within, Oneshot, RemoteError, Shared, PROTOCOL_VERSION};
use crate::registry::{Filter, OperationInfo};
use crate::CancelReason;

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
        // The incarnation's start, on the broker's clock, is read before
        // subscribing: every cancel it receives live was issued after it.
        if shared.started_ms.load(Ordering::Acquire) == 0 {
            let mut first = shared
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let now = broker::now_ms(&mut first).await?;
            shared.started_ms.store(now.max(1), Ordering::Release);
            check_persistence(shared, &mut first).await;
        }
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
                shared.cache.live();
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

/// Reads whether the broker keeps its data across a restart, and warns
/// once if it does not: a cancel issued before its operation starts is
/// then lost if the broker restarts empty while no node is connected.
async fn check_persistence(shared: &Shared, connection: &mut MultiplexedConnection) {
    let durable = broker::persistence(connection).await;
    shared.durable.store(
        match durable {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        },
        Ordering::Release,
    );
    match durable {
        Some(true) => {}
        Some(false) => log_warn!(
            "cancelable node {:?}: the Redis broker has no persistence (no AOF, no RDB \
             snapshots): if it restarts empty while no node is connected, cancels of operations \
             that have not started yet are lost; enable `appendonly yes` to keep them",
            shared.node()
        ),
        None => log_warn!(
            "cancelable node {:?}: could not read the broker's persistence settings \
             (`CONFIG GET` refused); if it has none, pending cancels do not survive its restart",
            shared.node()
        ),
    }
}

/// Reads every tombstone, writes back those the broker lacks, and applies
/// them all to the live operations.
async fn catch_up(shared: &Shared, connection: &mut MultiplexedConnection) -> RedisResult<()> {
    let names = &shared.names;
    let keys = [names.tombstones.as_str(), names.bodies.as_str()];
    let reply: Vec<redis::Value> = broker::READ_TOMBSTONES.run(connection, &keys, &[]).await?;
    let now = reply.first().map_or(0, broker::int);
    let now = u64::try_from(now).unwrap_or(0);
    let started = shared.started_ms.load(Ordering::Acquire);
    let mut stored = HashSet::new();
    for pair in reply.get(1..).unwrap_or_default().chunks_exact(2) {
        let body: Vec<u8> = redis::from_redis_value_ref(&pair[0]).unwrap_or_default();
        let expiry: f64 = redis::from_redis_value_ref(&pair[1]).unwrap_or(0.0);
        let expiry = if expiry.is_finite() {
            expiry.max(0.0) as u64
        } else {
            u64::MAX
        };
        let json = match shared.signer.open(Kind::Tombstone, &body) {
            Ok(json) => json,
            Err(refused) => {
                shared.refuse("a tombstone", &refused);
                continue;
            }
        };
        match Tombstone::decode(json) {
            Ok(tombstone) => {
                let issued = expiry.saturating_sub(tombstone.ttl_ms);
                // Never longer than the TTL it was issued with, whatever
                // score the sorted set holds.
                let remaining = expiry.saturating_sub(now).min(tombstone.ttl_ms);
                let remaining = Duration::from_millis(remaining);
                stored.insert(tombstone.member());
                let text = String::from_utf8_lossy(&body).into_owned();
                shared
                    .cache
                    .insert(tombstone, text, remaining, issued >= started);
            }
            Err(error) => shared.malformed(format_args!("a tombstone: {error}")),
        }
    }
    let live = shared.cache.live();
    let at = Instant::now();
    let mut args: Vec<Vec<u8>> = Vec::new();
    for cached in live
        .iter()
        .filter(|cached| !stored.contains(&cached.member))
    {
        let remaining = millis(cached.deadline.saturating_duration_since(at)).max(1);
        args.push(cached.member.clone().into_bytes());
        args.push(cached.body.clone().into_bytes());
        args.push(remaining.to_string().into_bytes());
    }
    if !args.is_empty() {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        broker::WRITE_BACK
            .run::<i64>(connection, &keys, &args)
            .await?;
    }
    for cached in &live {
        apply(shared, cached);
    }
    Ok(())
}

/// Cancels the live operation a tombstone names, if it runs in this
/// incarnation.
fn apply(shared: &Shared, cached: &Arc<Cached>) {
    if !shared.cache.reaches_here(cached) {
        return;
    }
    let registry = &shared.registry;
    match &cached.target {
        Target::Key { key } => {
            let _ = registry.cancel_by_key(key, cached.reason.clone(), cached.message.clone());
        }
        Target::Id { id, .. } => {
            let _ = registry.cancel(*id, cached.reason.clone(), cached.message.clone());
        }
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
    let channel = message.get_channel_name();
    let kind = match channel == shared.names.requests {
        true => Kind::Request,
        false => Kind::Ack,
    };
    let json = match shared.signer.open(kind, message.get_payload_bytes()) {
        Ok(json) => json,
        Err(refused) => return shared.refuse("a message", &refused),
    };
    let decoded = match Message::decode(json) {
        Ok(decoded) => decoded,
        Err(error) => return shared.malformed(format_args!("a message on {channel}: {error}")),
    };
    if matches!(decoded, Message::Ack { .. }) != matches!(kind, Kind::Ack) {
        return shared.malformed(format_args!("a message of the wrong kind on {channel}"));
    }
    match decoded {
        Message::Ack {
            request,
            node,
            instance,
            found,
            ..
        } => {
            let replies = crate::sync::lock(&shared.pending).get(&request).cloned();
            if let Some(replies) = replies {
                replies.push(Answer {
                    node,
                    instance,
                    found,
                });
            }
        }
        Message::Cancel {
            request,
            reply_to,
            target,
            reason,
            message,
            ttl_ms,
            wait_ms,
            ..
        } => {
            // Issued now, while this incarnation runs.
            let tombstone = Tombstone {
                v: PROTOCOL_VERSION,
                target: target.clone(),
                reason: reason.clone(),
                message: message.clone(),
                ttl_ms,
            };
            let body = shared.signer.seal(Kind::Tombstone, tombstone.encode());
            let ttl = Duration::from_millis(ttl_ms);
            shared.cache.insert(tombstone, body, ttl, true);
            let found = match reason.to_reason() {
                Some(reason) => {
                    let registry = &shared.registry;
                    let info = match &target {
                        Target::Key { key } => registry.get_by_key(key),
                        Target::Id { node, id, instance }
                            if node == shared.node()
                                && instance.as_ref().is_none_or(|i| *i == shared.instance) =>
                        {
                            registry.get(*id)
                        }
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
        let deadline = wait_ms.map(|wait| saturating_deadline(Duration::from_millis(wait)));
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
            instance: shared.instance.clone(),
            found: acks,
        };
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(reply_to)
            .arg(shared.signer.seal(Kind::Ack, answer.encode()));
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
