//! The cluster's [`Registry`] in Redis, over one auto-reconnecting [`ConnectionManager`] whose
//! round trips and failures are measured (`observed`).
//!
//! Every key starts with the cluster's namespace `ns` (its Kafka prefix), so several clusters (or
//! test runs) can share one Redis. Keys (`{user}` is a hash tag: a user's keys share a slot, so the
//! fenced scripts also run on a Redis Cluster):
//!
//! - `ns:{user}:res` — hash, resource → `connection priority node`, then, if the resource is
//!   available, a newline and its presence stanza (the node last on its line, so it may contain
//!   spaces but no newline);
//! - `ns:{user}:gen` — the newest owner generation that wrote for the user (or room);
//! - `ns:{room}:occupants` — hash, nick → the MUC module's record of a room's occupant;
//! - `ns:node:{node}:routes` — set of `user/resource` the node holds (a bare JID has no `/`), to
//!   reap a dead node without scanning users;
//! - `ns:nodes` — set of nodes that hold routes;
//! - `ns:live` — sorted set, node → heartbeat expiry in ms of the Redis server's clock (one clock
//!   for the whole cluster: node clocks may disagree);
//! - `ns:partition:{p}` — hash: `generation` (counter) and `node` of the partition's latest owner;
//! - `ns:failures:{key}` — a failure count (the edges' authentication throttle), expiring a window
//!   after its first failure.
//!
//! Writes for a user are one Lua script each (check the generation, change the hash atomically);
//! the node indexes are updated after the script, outside it (they live in other slots). A crash
//! in between leaves an index entry without a route or the reverse; `reap` checks that a route
//! still names the node before removing it, so a stale index entry is harmless.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, IntoConnectionInfo, RedisError, Script};
use starling_cluster::failure_counts::FailureCounts;
use starling_cluster::registry::{Fenced, ManagedStream, Registry, ResourceRoute};
use starling_cluster::store::StoreError;

mod observed;
use observed::Observed;

/// Counts a failure; the first of a window sets the window's expiry.
/// KEYS: count. ARGV: window in ms. Returns the count.
const ADD_FAILURE: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
";

/// Adds or replaces a route if the generation is not older than the newest seen.
/// KEYS: res, gen. ARGV: generation, resource, value. Returns 1 applied, 0 stale.
const PUT: &str = r"
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
local generation = tonumber(ARGV[1])
if generation < seen then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
";

/// Removes a route if it is still the given connection's and the generation is not stale.
/// KEYS: res, gen. ARGV: generation, resource, connection. Returns 1 applied, 0 stale.
const REMOVE: &str = r"
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
local generation = tonumber(ARGV[1])
if generation < seen then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
local current = redis.call('HGET', KEYS[1], ARGV[2])
if current and string.match(current, '^(%d+) ') == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[2])
end
return 1
";

/// Removes a hash field if the generation is not stale.
/// KEYS: hash, gen. ARGV: generation, field. Returns 1 applied, 0 stale.
const REMOVE_FIELD: &str = r"
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
local generation = tonumber(ARGV[1])
if generation < seen then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[2])
return 1
";

/// Removes a route if it names the node; returns the removed value or false.
/// KEYS: res. ARGV: resource, node.
const REAP_ONE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local node = string.match(current, '^%S+ %S+ ([^\n]*)')
if node ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return current
";

/// A node claims a partition: the next generation, and the node as owner, in one step.
/// KEYS: partition. ARGV: node. Returns the generation.
const CLAIM: &str = r"
local generation = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'node', ARGV[1])
return generation
";

/// Records a heartbeat against the server's clock and drops entries expired for an hour.
/// Returns 1 if the node was not in the set (new, or the data was lost). KEYS: live. ARGV: node,
/// ttl in ms.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
";

/// Nodes whose heartbeat has not expired. KEYS: live.
const LIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
";


/// `connection priority node`, then, for a stream-managed resource, a line `sm ID` (`-` when not
/// resumable), then the presence stanza if available (it starts with `<`, so never with `sm `).
fn encode(route: &ResourceRoute) -> String {
    let mut value = format!("{} {} {}", route.connection, route.priority, route.node);
    if let Some(managed) = &route.stream_management {
        value.push_str("\nsm ");
        value.push_str(managed.resumption_id.as_deref().unwrap_or("-"));
    }
    if let Some(presence) = &route.presence {
        value.push('\n');
        value.push_str(presence);
    }
    value
}

fn decode(resource: &str, value: &str) -> Option<ResourceRoute> {
    let (head, mut rest) = match value.split_once('\n') {
        Some((head, rest)) => (head, Some(rest)),
        None => (value, None),
    };
    let mut stream_management = None;
    if let Some(line) = rest.and_then(|rest| rest.strip_prefix("sm ")) {
        let (id, after) = line.split_once('\n').map_or((line, None), |(id, after)| (id, Some(after)));
        stream_management = Some(ManagedStream { resumption_id: (id != "-").then(|| id.to_owned()) });
        rest = after;
    }
    let mut parts = head.splitn(3, ' ');
    let connection = parts.next()?.parse().ok()?;
    let priority = parts.next()?.parse().ok()?;
    let node = parts.next().filter(|node| !node.is_empty())?.to_owned();
    Some(ResourceRoute { resource: resource.to_owned(), node, connection, priority, presence: rest.map(str::to_owned), stream_management })
}

/// Connection trouble is retryable; a reply of the wrong shape is not.
fn redis_error(error: RedisError) -> StoreError {
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() || error.is_timeout() {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Corrupt(error.to_string())
    }
}

fn fenced(applied: i64) -> Fenced {
    if applied == 1 { Fenced::Applied } else { Fenced::Stale }
}

/// The registry over one Redis server.
pub struct RedisRegistry {
    namespace: String,
    connection: Observed,
    put: Script,
    remove: Script,
    remove_field: Script,
    reap_one: Script,
    heartbeat: Script,
    claim: Script,
    live: Script,
    add_failure: Script,
}

impl RedisRegistry {
    /// Connects to `url` (`redis://host:port/db`, or `rediss://` over TLS), authenticating with
    /// `password` when given (else with the URL's, if any: a password kept out of the URL stays
    /// out of logs and process listings). The manager reconnects by itself afterwards; calls made
    /// while Redis is unreachable fail with [`StoreError::Unavailable`].
    pub async fn connect(url: &str, password: Option<String>, namespace: &str) -> Result<RedisRegistry, StoreError> {
        let mut info = url.into_connection_info().map_err(|error| StoreError::Corrupt(format!("bad Redis URL {url}: {error}")))?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|error| StoreError::Corrupt(format!("bad Redis URL {url}: {error}")))?;
        let connection = ConnectionManager::new(client)
            .await
            .map_err(|error| StoreError::Unavailable(format!("cannot connect to Redis at {url}: {error}")))?;
        Ok(RedisRegistry {
            namespace: namespace.to_owned(),
            connection: Observed(connection),
            put: Script::new(PUT),
            remove: Script::new(REMOVE),
            remove_field: Script::new(REMOVE_FIELD),
            reap_one: Script::new(REAP_ONE),
            heartbeat: Script::new(HEARTBEAT),
            claim: Script::new(CLAIM),
            live: Script::new(LIVE),
            add_failure: Script::new(ADD_FAILURE),
        })
    }

    fn res_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:res", self.namespace)
    }

    fn gen_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:gen", self.namespace)
    }

    fn occupants_key(&self, room: &str) -> String {
        format!("{}:{{{room}}}:occupants", self.namespace)
    }

    fn routes_key(&self, node: &str) -> String {
        format!("{}:node:{node}:routes", self.namespace)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.namespace)
    }

    fn partition_key(&self, partition: u32) -> String {
        format!("{}:partition:{partition}", self.namespace)
    }

    fn live_key(&self) -> String {
        format!("{}:live", self.namespace)
    }

    fn failures_key(&self, key: &str) -> String {
        format!("{}:failures:{key}", self.namespace)
    }

    fn connection(&self) -> Observed {
        // A cheap handle onto the same multiplexed connection.
        self.connection.clone()
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn put_resource(&self, user: &str, route: &ResourceRoute, generation: u64) -> Result<Fenced, StoreError> {
        let mut connection = self.connection();
        let applied: i64 = self
            .put
            .key(self.res_key(user))
            .key(self.gen_key(user))
            .arg(generation)
            .arg(&route.resource)
            .arg(encode(route))
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if applied == 1 {
            let () = connection.sadd(self.routes_key(&route.node), format!("{user}/{}", route.resource)).await.map_err(redis_error)?;
            let () = connection.sadd(self.nodes_key(), &route.node).await.map_err(redis_error)?;
        }
        Ok(fenced(applied))
    }

    async fn remove_resource(&self, user: &str, resource: &str, connection_id: u64, generation: u64) -> Result<Fenced, StoreError> {
        let mut connection = self.connection();
        let applied: i64 = self
            .remove
            .key(self.res_key(user))
            .key(self.gen_key(user))
            .arg(generation)
            .arg(resource)
            .arg(connection_id)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        // The node index entry stays until the node is reaped or reuses the resource: reap
        // checks the route itself, so a leftover entry costs a lookup, never a wrong removal.
        Ok(fenced(applied))
    }

    async fn resources(&self, user: &str) -> Result<Vec<ResourceRoute>, StoreError> {
        let mut connection = self.connection();
        let mut entries: Vec<(String, String)> = connection.hgetall(self.res_key(user)).await.map_err(redis_error)?;
        entries.sort();
        entries
            .iter()
            .map(|(resource, value)| decode(resource, value).ok_or_else(|| StoreError::Corrupt(format!("route of {user}/{resource}: {value:?}"))))
            .collect()
    }

    /// The same fenced write as a route's, into the room's own hash.
    async fn put_occupant(&self, room: &str, nick: &str, record: &[u8], generation: u64) -> Result<Fenced, StoreError> {
        let mut connection = self.connection();
        let applied: i64 = self
            .put
            .key(self.occupants_key(room))
            .key(self.gen_key(room))
            .arg(generation)
            .arg(nick)
            .arg(record)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(fenced(applied))
    }

    async fn remove_occupant(&self, room: &str, nick: &str, generation: u64) -> Result<Fenced, StoreError> {
        let mut connection = self.connection();
        let applied: i64 =
            self.remove_field.key(self.occupants_key(room)).key(self.gen_key(room)).arg(generation).arg(nick).invoke_async(&mut connection).await.map_err(redis_error)?;
        Ok(fenced(applied))
    }

    async fn occupants(&self, room: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut connection = self.connection();
        let mut occupants: Vec<(String, Vec<u8>)> = connection.hgetall(self.occupants_key(room)).await.map_err(redis_error)?;
        occupants.sort();
        Ok(occupants)
    }

    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let added: i64 = self.heartbeat.key(self.live_key()).arg(node).arg(ttl_ms).invoke_async(&mut connection).await.map_err(redis_error)?;
        Ok(added == 1)
    }

    async fn live_nodes(&self) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection();
        let mut nodes: Vec<String> = self.live.key(self.live_key()).invoke_async(&mut connection).await.map_err(redis_error)?;
        nodes.sort();
        Ok(nodes)
    }

    async fn dead_nodes(&self) -> Result<Vec<String>, StoreError> {
        let live = self.live_nodes().await?;
        let mut connection = self.connection();
        let holding: Vec<String> = connection.smembers(self.nodes_key()).await.map_err(redis_error)?;
        let mut dead = Vec::new();
        for node in holding.into_iter().filter(|node| live.binary_search(node).is_err()) {
            let routes: usize = connection.scard(self.routes_key(&node)).await.map_err(redis_error)?;
            if routes == 0 {
                let () = connection.srem(self.nodes_key(), &node).await.map_err(redis_error)?;
            } else {
                dead.push(node);
            }
        }
        dead.sort();
        Ok(dead)
    }

    async fn reap(&self, node: &str) -> Result<Vec<(String, ResourceRoute)>, StoreError> {
        let mut connection = self.connection();
        let members: Vec<String> = connection.smembers(self.routes_key(node)).await.map_err(redis_error)?;
        let mut reaped = Vec::new();
        for member in &members {
            let Some((user, resource)) = member.split_once('/') else { continue };
            let removed: Option<String> =
                self.reap_one.key(self.res_key(user)).arg(resource).arg(node).invoke_async(&mut connection).await.map_err(redis_error)?;
            if let Some(route) = removed.as_deref().and_then(|value| decode(resource, value)) {
                reaped.push((user.to_owned(), route));
            }
            let () = connection.srem(self.routes_key(node), member).await.map_err(redis_error)?;
        }
        let () = connection.srem(self.nodes_key(), node).await.map_err(redis_error)?;
        reaped.sort_by(|a, b| (&a.0, &a.1.resource).cmp(&(&b.0, &b.1.resource)));
        Ok(reaped)
    }

    async fn claim_partition(&self, partition: u32, node: &str) -> Result<u64, StoreError> {
        let mut connection = self.connection();
        self.claim.key(self.partition_key(partition)).arg(node).invoke_async(&mut connection).await.map_err(redis_error)
    }

    async fn partition_owner(&self, partition: u32) -> Result<Option<(String, u64)>, StoreError> {
        let mut connection = self.connection();
        let (generation, node): (Option<u64>, Option<String>) =
            redis::cmd("HMGET").arg(self.partition_key(partition)).arg("generation").arg("node").query_async(&mut connection).await.map_err(redis_error)?;
        Ok(generation.zip(node).map(|(generation, node)| (node, generation)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_with_spaces_in_the_node_name() {
        let presence = "<presence from='a@b/phone'>\n<status>two\nlines</status></presence>".to_owned();
        let route = ResourceRoute { resource: "phone".into(), node: "edge 1".into(), connection: u64::MAX, priority: -128, presence: Some(presence), stream_management: None };
        assert_eq!(decode("phone", &encode(&route)), Some(route.clone()));
        let away = ResourceRoute { presence: None, ..route.clone() };
        assert_eq!(decode("phone", &encode(&away)), Some(away.clone()));
        for id in [Some("0af3".to_owned()), None] {
            let managed = ResourceRoute { stream_management: Some(ManagedStream { resumption_id: id }), ..route.clone() };
            assert_eq!(decode("phone", &encode(&managed)), Some(managed.clone()));
            let managed_away = ResourceRoute { presence: None, ..managed };
            assert_eq!(decode("phone", &encode(&managed_away)), Some(managed_away));
        }
        assert_eq!(decode("x", "1 2"), None, "the node is required");
        assert_eq!(decode("x", "1 x node"), None, "the priority is a number");
    }
}

#[async_trait]
impl FailureCounts for RedisRegistry {
    async fn add(&self, key: &str, window: Duration) -> Result<u32, StoreError> {
        let mut connection = self.connection();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        self.add_failure.key(self.failures_key(key)).arg(window_ms).invoke_async(&mut connection).await.map_err(redis_error)
    }

    async fn get(&self, keys: &[&str]) -> Result<Vec<u32>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection();
        let keys: Vec<String> = keys.iter().map(|key| self.failures_key(key)).collect();
        let counts: Vec<Option<u32>> = connection.mget(keys).await.map_err(redis_error)?;
        Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let () = connection.del(self.failures_key(key)).await.map_err(redis_error)?;
        Ok(())
    }
}
