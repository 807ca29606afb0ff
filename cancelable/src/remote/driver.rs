//! The node's thread: connects, subscribes, catches up on tombstones,
//! answers requests, publishes heartbeats, and reconnects with backoff
//! when the broker is lost.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;

use super::catchup::{catch_up, check_persistence};
use super::checks::{self, Failure};
use super::protocol::{Message, Target, Tombstone, WireAck};
use super::replay;
use super::request::Answer;
use super::signing::Kind;
use super::snapshots::{deregister, publish_snapshot};
use super::{broker, log_warn, within, Oneshot, RemoteError, Shared, PROTOCOL_VERSION};
use crate::registry::{CancelAnswer, Filter, OperationInfo, Outcome};
use crate::seam::time::{self, Timer};
use crate::CancelReason;

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
            Err(Failure::Refused(error)) if !ever_connected && !established => {
                ready.set(Err(error));
                return;
            }
            Err(Failure::Lost(error)) if !ever_connected && !established => {
                ready.set(Err(RemoteError::Connect {
                    url: shared.settings.url.clone(),
                    error,
                }));
                return;
            }
            Err(Failure::Refused(error)) => log_warn!(
                "cancelable node {:?} was refused by the Redis broker ({}); retrying in {:?}",
                shared.node(),
                error,
                pause
            ),
            Err(Failure::Lost(error)) => log_warn!(
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
/// snapshot at the soonest (changes in between share it).
const CHANGE_DEBOUNCE: Duration = Duration::from_millis(20);
/// The bytes per second of snapshots a node spends on changes: a large
/// snapshot is published less often after changes ...
const CHANGE_BUDGET: u64 = 256 << 10;
/// ... but at least this often while things change: `list()` is at most
/// about this stale.
const CHANGE_PAUSE_MAX: Duration = Duration::from_millis(900);

/// How long to wait after a change before publishing a snapshot, given
/// the size of the last one and how long ago it went out.
fn change_pause(last_bytes: usize, since: Duration) -> Duration {
    let spend = Duration::from_millis(last_bytes as u64 * 1000 / CHANGE_BUDGET);
    spend
        .clamp(CHANGE_DEBOUNCE, CHANGE_PAUSE_MAX)
        .saturating_sub(since)
        .max(CHANGE_DEBOUNCE)
}

enum Event {
    Shutdown,
    Message(Option<redis::Msg>),
    /// The heartbeat interval passed.
    Heartbeat,
    /// The pause after a change passed.
    Soon,
    Changed,
}

/// One connection: set up, then serve until the broker is lost (`Err`) or
/// the node leaves (`Ok`).
async fn session(
    shared: &Arc<Shared>,
    ready: &Oneshot<Result<(), RemoteError>>,
    reconnecting: bool,
    established: &mut bool,
) -> Result<(), Failure> {
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
                .await
                .map_err(|error| Failure::of(shared, &error))?;
            let now = broker::now_ms(&mut first)
                .await
                .map_err(|error| Failure::of(shared, &error))?;
            shared.started_ms.store(now.max(1), Ordering::Release);
            shared.broker_clock.observe(now);
            check_persistence(shared, &mut first).await;
        }
        // Subscribe before reading the tombstones: a cancel sent meanwhile
        // arrives on the channel, one sent before is in the sorted set.
        let failed = |error: redis::RedisError| Failure::of(shared, &error);
        let mut connection = shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(failed)?;
        // Refusals are clear errors at the first connection; after that a
        // wrong-type key is warned about and the node stays connected.
        match checks::key_types(shared, &mut connection).await {
            Err(Failure::Refused(error)) if reconnecting => shared.notices.warn(
                shared.node(),
                format_args!("cannot use the broker's data: {error}"),
            ),
            other => other?,
        }
        checks::may_publish(shared, &mut connection).await?;
        checks::lease(shared, &mut connection).await?;
        let mut pubsub = shared.client.get_async_pubsub().await.map_err(failed)?;
        pubsub
            .subscribe(&shared.names.requests)
            .await
            .map_err(failed)?;
        pubsub.subscribe(&shared.replies).await.map_err(failed)?;
        match catch_up(shared, &mut connection).await {
            Err(error) if reconnecting && error.code() == Some("WRONGTYPE") => shared.notices.warn(
                shared.node(),
                format_args!("could not read the tombstones: {error}"),
            ),
            other => other.map_err(failed)?,
        }
        match publish_snapshot(shared, &mut connection).await {
            Err(error) if reconnecting && error.code() == Some("WRONGTYPE") => shared.notices.warn(
                shared.node(),
                format_args!("could not publish the snapshot: {error}"),
            ),
            other => other.map(drop).map_err(failed)?,
        }
        Ok::<_, Failure>((pubsub, connection))
    };
    // The connect timeout bounds the whole of the first connection.
    let limit = match reconnecting {
        true => settings
            .connect_timeout
            .saturating_add(settings.answer_within),
        false => settings.connect_timeout,
    };
    let (pubsub, connection) = match within(limit, setup).await {
        None => return Err(Failure::Lost(format!("no answer within {limit:?}"))),
        Some(Err(failure)) => return Err(failure),
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
    let mut heartbeat = Timer::after(settings.heartbeat);
    let mut soon: Option<Timer> = None;
    let (mut last_bytes, mut last_publish) = (0, time::now());
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
            if heartbeat.poll_fired(cx).is_ready() {
                heartbeat.reset(time::after(settings.heartbeat));
                return Poll::Ready(Event::Heartbeat);
            }
            match &mut soon {
                Some(timer) => {
                    if timer.poll_fired(cx).is_ready() {
                        soon = None;
                        return Poll::Ready(Event::Soon);
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
            Event::Message(None) => {
                return Err(Failure::Lost(
                    "the subscription connection closed".to_owned(),
                ))
            }
            Event::Message(Some(message)) => handle(shared, &message, &connection, &mut tasks),
            Event::Changed => {
                let since = time::now().saturating_duration_since(last_publish);
                soon = Some(Timer::after(change_pause(last_bytes, since)));
            }
            // A snapshot went out recently (after a change): it refreshed
            // the node's TTL already.
            Event::Heartbeat
                if time::now().saturating_duration_since(last_publish) < settings.heartbeat / 2 =>
            {
                shared.cache.live();
            }
            Event::Heartbeat | Event::Soon => {
                shared.cache.live();
                last_publish = time::now();
                // Awaited here, bounded: a broker that stopped answering
                // (but kept the connection open) is a lost broker.
                let mut connection = connection.clone();
                let limit = settings.answer_within;
                match within(limit, publish_snapshot(shared, &mut connection)).await {
                    Some(Ok(bytes)) => last_bytes = bytes,
                    // The connection works; the data does not: say so, stay.
                    Some(Err(error)) if !lost(&error) => shared.notices.warn(
                        shared.node(),
                        format_args!("could not publish the snapshot: {error}"),
                    ),
                    Some(Err(error)) => {
                        return Err(Failure::Lost(format!(
                            "publishing the snapshot failed: {error}"
                        )))
                    }
                    None => {
                        return Err(Failure::Lost(format!(
                            "the broker did not answer within {limit:?}"
                        )))
                    }
                }
            }
        }
    }
}

/// Whether `error` means the connection is gone (not a refusal of one
/// command).
fn lost(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || error.is_timeout()
}

/// An operation a request found, and when it was cancelled.
struct Found {
    ack: WireAck,
    at: Instant,
    /// How the operation ends, if it was running: what a request that
    /// waits for the exit awaits (the registry wakes it at the exit).
    outcome: Option<Outcome>,
}

fn cancel_found(
    shared: &Shared,
    info: OperationInfo,
    reason: &CancelReason,
    message: &str,
) -> Found {
    let at = time::now();
    let answer = shared.registry.cancel(info.id, reason.clone(), message);
    let cancelled_now = answer.as_ref().is_ok_and(CancelAnswer::is_requested);
    let outcome = answer.ok().and_then(CancelAnswer::outcome);
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
        outcome,
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
    // A signed request recorded and sent again (`replay.rs`).
    if let (
        true,
        Message::Cancel {
            request, issued_ms, ..
        }
        | Message::CancelWhere {
            request, issued_ms, ..
        },
    ) = (shared.signer.is_keyed(), &decoded)
    {
        if let Err(replay) = shared
            .seen
            .admit(request, *issued_ms, shared.broker_clock.now_ms())
        {
            return shared.refuse("a cancel request", &replay);
        }
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
            issued_ms,
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
                issued_ms,
            };
            let body = shared.signer.seal(Kind::Tombstone, tombstone.encode());
            // Its TTL from its issue on the broker's clock, when both are
            // known (a request delayed in transit lives no longer).
            let left = shared
                .broker_clock
                .now_ms()
                .and_then(|now| replay::tombstone_left(&tombstone, now).ok())
                .unwrap_or(ttl_ms);
            let ttl = Duration::from_millis(left);
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
        let deadline = wait_ms.map(|wait| time::after(Duration::from_millis(wait)));
        for Found {
            mut ack,
            at,
            outcome,
        } in found
        {
            if let Some(deadline) = deadline {
                // Not running any more (ended before the cancel, or not
                // started), or exits within what is left of the wait.
                let exited = match outcome {
                    None => shared.registry.get(ack.id).is_none(),
                    Some(outcome) => {
                        let left = deadline.saturating_duration_since(time::now());
                        within(left, outcome).await.is_some()
                    }
                };
                if exited {
                    ack.running = false;
                    let lag = time::now().saturating_duration_since(at);
                    ack.lag_us = Some(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
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
