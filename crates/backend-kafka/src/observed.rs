//! librdkafka's statistics and errors as metrics (`starling_kafka_*`): every client counts and
//! logs its errors; the producer reports its queue, the owners' consumer its lag over the
//! partitions it reads. librdkafka hands statistics over every [`STATISTICS_INTERVAL_MS`].

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use starling_telemetry::Metrics;
use tokio::sync::watch;

use crate::producer::{self, LostLeader};

pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// An error a client reported (librdkafka retries on its own; this is for the operator).
pub(crate) fn client_error(error: KafkaError, reason: &str) {
    Metrics::global().kafka_errors.inc();
    tracing::warn!(%error, reason, "Kafka client error");
}

/// The records of `topic` not yet read by this consumer, over the partitions it fetches.
pub(crate) fn consumer_lag(statistics: &Statistics, topic: &str) {
    let lag = statistics.topics.get(topic).map_or(0, |topic| {
        topic.partitions.values().filter(|partition| partition.partition >= 0 && partition.consumer_lag >= 0).map(|partition| partition.consumer_lag).sum()
    });
    Metrics::global().kafka_consumer_lag.set(lag);
}

/// The producer's context. It also reports the brokers refusing its login (wrong SASL
/// credentials), which the requests themselves would only show by timing out, and librdkafka
/// losing a partition's leader for good (see [`crate::producer`]).
#[derive(Clone)]
pub(crate) struct ProducerObserved {
    pub(crate) refused_login: watch::Sender<Option<String>>,
    pub(crate) lost_leader: LostLeader,
}

/// Why the brokers refused the producer's login, once they have.
pub(crate) async fn refused(mut refused: watch::Receiver<Option<String>>) -> String {
    let why = refused.wait_for(Option::is_some).await.map(|why| why.clone().unwrap_or_default());
    match why {
        Ok(why) => why,
        Err(_) => std::future::pending().await,
    }
}

impl ClientContext for ProducerObserved {
    fn stats(&self, statistics: Statistics) {
        Metrics::global().kafka_producer_queued.set(i64::try_from(statistics.msg_cnt).unwrap_or(i64::MAX));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            self.refused_login.send_replace(Some(reason.to_owned()));
        }
        client_error(error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if producer::lost_a_leader(level, facility, message) {
            self.lost_leader.notify_one();
        }
        // As rdkafka's own default does.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}"),
        }
    }
}
