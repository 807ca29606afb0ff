//! What a node does after every (re)connection, before it serves: reads
//! every tombstone, writes back those the broker lacks, and applies them
//! to its live operations; at the first one, it reads the broker's
//! persistence.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::RedisResult;

use super::protocol::{Target, Tombstone};
use super::replay;
use super::signing::Kind;
use super::tombstones::Cached;
use super::{broker, log_warn, millis, Shared};
use crate::seam::time;

/// Reads whether the broker keeps its data across a restart, and warns
/// once if it does not: a cancel issued before its operation starts is
/// then lost if the broker restarts empty while no node is connected.
pub(crate) async fn check_persistence(shared: &Shared, connection: &mut MultiplexedConnection) {
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
pub(crate) async fn catch_up(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> RedisResult<()> {
    let names = &shared.names;
    let keys = [names.tombstones.as_str(), names.bodies.as_str()];
    let reply: Vec<redis::Value> = broker::READ_TOMBSTONES.run(connection, &keys, &[]).await?;
    let now = reply.first().map_or(0, broker::int);
    let now = u64::try_from(now).unwrap_or(0);
    shared.broker_clock.observe(now);
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
                // Never longer than the TTL it was issued with, whatever
                // score the sorted set holds; with a key, never past its
                // signed issue time plus that TTL (`replay.rs`): a body
                // put back after it expired stays dead.
                let mut remaining = expiry.saturating_sub(now).min(tombstone.ttl_ms);
                let issued = match tombstone.issued_ms {
                    0 => expiry.saturating_sub(tombstone.ttl_ms),
                    issued => issued,
                };
                match replay::tombstone_left(&tombstone, now) {
                    Ok(left) => remaining = remaining.min(left),
                    Err(replay) if shared.signer.is_keyed() => {
                        shared.refuse("a tombstone", &replay);
                        continue;
                    }
                    Err(_) => {}
                }
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
    let at = time::now();
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
