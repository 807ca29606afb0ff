//! What runs inside the broker: every expiry score, trim and TTL decision
//! is made by a Lua script on the broker's clock (`TIME`), never on a
//! node's wall clock.
//!
//! The scripts are loaded once (`SCRIPT LOAD`) and run with `EVALSHA`; a
//! broker that lost them (restarted, `SCRIPT FLUSH`) gets them again with
//! `EVAL`.

use std::sync::OnceLock;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};

/// A Lua script and its SHA1 once the broker told it.
pub(crate) struct Script {
    source: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: OnceLock::new(),
        }
    }

    /// Runs the script with `keys` and `args`.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut MultiplexedConnection,
        keys: &[&str],
        args: &[&[u8]],
    ) -> RedisResult<T> {
        if self.sha.get().is_none() {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(self.source)
                .query_async(connection)
                .await?;
            let _ = self.sha.set(sha);
        }
        let sha = self.sha.get().expect("set above");
        let mut call = redis::cmd("EVALSHA");
        call.arg(sha).arg(keys.len()).arg(keys).arg(args);
        match call.query_async(connection).await {
            Err(error) if error.code() == Some("NOSCRIPT") => {
                let mut call = redis::cmd("EVAL");
                call.arg(self.source).arg(keys.len()).arg(keys).arg(args);
                call.query_async(connection).await
            }
            other => other,
        }
    }
}

/// A script: the broker's clock in ms as `now`, and `purge`, which
/// removes expired tombstones (their members and bodies) in chunks small
/// enough for `unpack`; then `$body`.
macro_rules! script {
    ($body:literal) => {
        Script::new(concat!(
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            "local function purge(set, bodies)\n",
            "  while true do\n",
            "    local expired = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, 500)\n",
            "    if #expired == 0 then break end\n",
            "    redis.call('ZREM', set, unpack(expired))\n",
            "    redis.call('HDEL', bodies, unpack(expired))\n",
            "  end\n",
            "end\n",
            $body
        ))
    };
}

/// Writes one tombstone (one per target: a repeat replaces it) and
/// publishes the request, atomically. KEYS: tombstones, bodies; ARGV:
/// member, body, ttl_ms, max, channel, payload. Returns
/// `{receivers, tombstones}`, or `{-1, tombstones}` when the set is full
/// (nothing written, nothing published).
pub(crate) static CANCEL: Script = script!(
    r"
purge(KEYS[1], KEYS[2])
local count = redis.call('ZCARD', KEYS[1])
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not known then
  if count >= tonumber(ARGV[4]) then return {-1, count} end
  count = count + 1
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local receivers = redis.call('PUBLISH', ARGV[5], ARGV[6])
return {receivers, count}
"
);

/// Writes back tombstones the broker lacks (a broker restarted without
/// persistence). KEYS: tombstones, bodies; ARGV: triples of member, body,
/// remaining ms. A target the broker knows is left as it is.
pub(crate) static WRITE_BACK: Script = script!(
    r"
purge(KEYS[1], KEYS[2])
for i = 1, #ARGV, 3 do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i + 2]), ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('ZCARD', KEYS[1])
"
);

/// Every live tombstone. KEYS: tombstones, bodies. Returns
/// `{now, body, expiry, body, expiry, ...}` (times in ms, the broker's).
pub(crate) static READ_TOMBSTONES: Script = script!(
    r"
purge(KEYS[1], KEYS[2])
local out = {now}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local body = redis.call('HGET', KEYS[2], members[i])
  if body then
    out[#out + 1] = body
    out[#out + 1] = members[i + 1]
  end
end
return out
"
);

/// Publishes a node's snapshot. KEYS: the node's snapshot key, the node
/// set, the node name's lease; ARGV: snapshot, ttl_ms, node name,
/// instance (empty: no lease). The snapshot expires by itself (`PX`); the
/// lease is renewed unless another instance holds it; the node set is
/// trimmed of nodes whose snapshot expired, on the broker's clock.
pub(crate) static SNAPSHOT: Script = script!(
    r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[4] ~= '' then
  local holder = redis.call('GET', KEYS[3])
  if not holder or holder == ARGV[4] then
    redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[2])
  end
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return now
"
);

/// Takes or renews the lease on a node name. KEYS: the lease; ARGV:
/// instance, ttl_ms. Returns the other instance holding it, or nil.
pub(crate) static LEASE: Script = script!(
    r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"
);

/// Leaves: removes the node's snapshot, its entry in the node set and
/// its lease if this instance holds it. KEYS: snapshot key, node set,
/// lease; ARGV: node name, instance.
pub(crate) static LEAVE: Script = script!(
    r"
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
"
);

/// The broker's clock, in ms.
pub(crate) async fn now_ms(connection: &mut MultiplexedConnection) -> RedisResult<u64> {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(connection).await?;
    Ok(seconds.saturating_mul(1000).saturating_add(micros / 1000))
}

/// Whether the broker keeps its data across a restart (AOF on, or RDB
/// save points set); `None` if it does not say (`CONFIG` not allowed).
pub(crate) async fn persistence(connection: &mut MultiplexedConnection) -> Option<bool> {
    let read = |name: &'static str| {
        let mut get = redis::cmd("CONFIG");
        get.arg("GET").arg(name);
        let mut connection = connection.clone();
        async move {
            let pair: Vec<String> = get.query_async(&mut connection).await.ok()?;
            pair.get(1).cloned()
        }
    };
    let appendonly = read("appendonly").await?;
    let save = read("save").await?;
    Some(appendonly == "yes" || !save.trim().is_empty())
}

/// An integer reply of a script, or 0.
pub(crate) fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        _ => 0,
    }
}
