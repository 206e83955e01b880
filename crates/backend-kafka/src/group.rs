//! The owners' consumer group's timing: how often members heartbeat, and the session timeout —
//! the larger part of a takeover (docs/cluster.md, "Takeover time"): the configured one if the
//! brokers accept it, else the shortest they allow.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, Producer};
use starling_cluster::bus::BusError;

use crate::observed::ProducerObserved;
use crate::{unavailable, KafkaConfig};

/// A tenth of the session timeout, between 100 ms and 1 s: when a member dies the others learn of
/// the rebalance at their next heartbeat, so a takeover waits up to one interval beyond the
/// timeout itself (Kafka's usual third would add 0.5 s to a 1.5 s timeout). Heartbeats are tiny.
pub(crate) fn heartbeat_interval(session_timeout: Duration) -> Duration {
    (session_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// The session timeout chosen when none is configured: short enough for a takeover under 2 s,
/// long enough that no heartbeat of a live node under load came late in the measurements
/// (docs/cluster.md, "Takeover time").
const SHORTEST: Duration = Duration::from_millis(1500);

/// For brokers whose limits cannot be read: within stock brokers' (6 s – 30 min).
const UNREAD_LIMITS: Duration = Duration::from_secs(10);

/// The session timeout to join the owners' group with. A configured one the brokers' group
/// coordinator would refuse is refused here (the join would fail with INVALID_SESSION_TIMEOUT on
/// every retry and the node would never own anything); without one, the shortest the brokers
/// allow but not under [`SHORTEST`]. Brokers whose configuration cannot be read (no
/// DescribeConfigs right on a managed Kafka) leave a configured value unchecked, with a warning,
/// and an unconfigured one at 10 s.
pub(crate) async fn session_timeout(producer: &FutureProducer<ProducerObserved>, config: &KafkaConfig) -> Result<Duration, BusError> {
    let limits = group_limits(producer, config).await?;
    let Some(configured) = config.session_timeout else {
        let chosen = match limits {
            Some((min, max)) => SHORTEST.max(min).min(max),
            None => UNREAD_LIMITS,
        };
        tracing::info!(session_timeout_ms = chosen.as_millis(), "owners' group session timeout (the shortest the brokers allow, at least 1.5 s)");
        return Ok(chosen);
    };
    let timeout = configured.as_millis();
    match limits {
        Some((min, _)) if configured < min => Err(BusError::Config(format!(
            "[cluster] session_timeout_ms = {timeout} is below the Kafka brokers' group.min.session.timeout.ms ({}): the group would refuse this node. Raise it, or lower that broker setting (docs/cluster.md, \"Takeover time\")",
            min.as_millis()
        ))),
        Some((_, max)) if configured > max => Err(BusError::Config(format!(
            "[cluster] session_timeout_ms = {timeout} is above the Kafka brokers' group.max.session.timeout.ms ({}): the group would refuse this node",
            max.as_millis()
        ))),
        _ => Ok(configured),
    }
}

/// The brokers' `group.min.session.timeout.ms` and `group.max.session.timeout.ms` (Kafka's
/// defaults for one it does not list), or `None` when they cannot be read.
async fn group_limits(producer: &FutureProducer<ProducerObserved>, config: &KafkaConfig) -> Result<Option<(Duration, Duration)>, BusError> {
    let producer = producer.clone();
    let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, Duration::from_secs(10)))
        .await
        .map_err(|error| BusError::Unavailable(error.to_string()))?
        .map_err(unavailable)?;
    let Some(broker) = metadata.brokers().first().map(|broker| broker.id()) else { return Ok(None) };
    let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(|error| BusError::Config(error.to_string()))?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = match admin.describe_configs([&ResourceSpecifier::Broker(broker)], &options).await {
        Ok(mut results) => results.pop().and_then(Result::ok),
        Err(error) => {
            tracing::warn!(%error, "cannot read the brokers' group session limits");
            None
        }
    };
    let Some(described) = described else { return Ok(None) };
    let limit = |name: &str, default: u64| {
        Duration::from_millis(described.get(name).and_then(|entry| entry.value.as_deref()).and_then(|value| value.parse().ok()).unwrap_or(default))
    };
    Ok(Some((limit("group.min.session.timeout.ms", 6_000), limit("group.max.session.timeout.ms", 1_800_000))))
}
