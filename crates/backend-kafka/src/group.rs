//! The owners' consumer group's timing: how often members heartbeat, and whether the brokers
//! accept the configured session timeout — the larger part of a takeover (docs/cluster.md,
//! "Takeover time").

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

/// Refuses a session timeout the brokers' group coordinator would refuse: the join would fail
/// with INVALID_SESSION_TIMEOUT on every retry and the node would never own anything. A broker
/// whose configuration cannot be read (no DescribeConfigs right on a managed Kafka) is not a
/// reason to stop: the check is skipped, with a warning.
pub(crate) async fn check_session_timeout(producer: &FutureProducer<ProducerObserved>, config: &KafkaConfig) -> Result<(), BusError> {
    let producer = producer.clone();
    let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, Duration::from_secs(10)))
        .await
        .map_err(|error| BusError::Unavailable(error.to_string()))?
        .map_err(unavailable)?;
    let Some(broker) = metadata.brokers().first().map(|broker| broker.id()) else { return Ok(()) };
    let admin: AdminClient<DefaultClientContext> = config.client().create().map_err(|error| BusError::Config(error.to_string()))?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = match admin.describe_configs([&ResourceSpecifier::Broker(broker)], &options).await {
        Ok(mut results) => results.pop().and_then(Result::ok),
        Err(error) => {
            tracing::warn!(%error, "cannot read the brokers' group session limits; session_timeout_ms not checked");
            None
        }
    };
    let Some(described) = described else { return Ok(()) };
    let limit = |name: &str| described.get(name).and_then(|entry| entry.value.as_deref()).and_then(|value| value.parse::<u128>().ok());
    let timeout = config.session_timeout.as_millis();
    if let Some(min) = limit("group.min.session.timeout.ms").filter(|&min| timeout < min) {
        return Err(BusError::Config(format!(
            "[cluster] session_timeout_ms = {timeout} is below the Kafka brokers' group.min.session.timeout.ms ({min}): the group would refuse this node. Raise it, or lower that broker setting (docs/cluster.md, \"Takeover time\")"
        )));
    }
    if let Some(max) = limit("group.max.session.timeout.ms").filter(|&max| timeout > max) {
        return Err(BusError::Config(format!(
            "[cluster] session_timeout_ms = {timeout} is above the Kafka brokers' group.max.session.timeout.ms ({max}): the group would refuse this node"
        )));
    }
    Ok(())
}
