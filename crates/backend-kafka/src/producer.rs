//! The bus's producer, replaced when librdkafka loses a partition's leader for good.
//!
//! librdkafka 2.12 (the version `rdkafka` builds in) has a bug (confluentinc/librdkafka#5430, fix
//! proposed in #5431): when a produce response names no leader for a partition (leader -1 — a
//! KRaft controller that fenced its brokers, e.g. after a pause), it logs `METADATAUPDATE …
//! new leader-1 not found in cache` and leaves the partition without a leader *for good*: every
//! later record for it times out, though the brokers recovered. CI hit it after freezing the
//! broker for 8 s (one edge's binds failed for minutes). On that log line a new producer takes
//! over; the old one delivers what it still can in the background (what it holds for the lost
//! partition times out, as it would have) and goes. Records of one partition queued just before
//! the swap on the old producer and just after on the new one are not strictly ordered between
//! them — the new producer must first connect and learn the metadata, which in practice lets the
//! old one's queue go first.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;
use tokio::sync::Notify;

use crate::observed::ProducerObserved;

/// How long the replaced producer may take to deliver what it still holds: past its
/// `message.timeout.ms`, so that everything it holds is settled either way.
const REPLACED_DRAIN: Duration = Duration::from_secs(35);

pub(crate) struct BusProducer {
    config: ClientConfig,
    context: ProducerObserved,
    current: RwLock<FutureProducer<ProducerObserved>>,
}

impl BusProducer {
    /// Creates the producer from `config` and starts watching for the bug.
    pub(crate) fn create(config: ClientConfig, context: ProducerObserved) -> Result<Arc<BusProducer>, KafkaError> {
        let current = RwLock::new(config.create_with_context(context.clone())?);
        let producer = Arc::new(BusProducer { config, context, current });
        let weak = Arc::downgrade(&producer);
        let lost_leader = producer.context.lost_leader.clone();
        tokio::spawn(async move {
            loop {
                lost_leader.notified().await;
                let Some(producer) = weak.upgrade() else { return };
                producer.replace();
            }
        });
        Ok(producer)
    }

    /// The producer to publish with now.
    pub(crate) fn current(&self) -> FutureProducer<ProducerObserved> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn replace(&self) {
        let fresh = match self.config.create_with_context(self.context.clone()) {
            Ok(fresh) => fresh,
            Err(error) => return tracing::error!(%error, "cannot create a Kafka producer to replace one that lost a partition's leader"),
        };
        let old = std::mem::replace(&mut *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()), fresh);
        starling_telemetry::Metrics::global().kafka_producers_replaced.inc();
        tracing::warn!("librdkafka lost a partition's leader for good (confluentinc/librdkafka#5430); a new producer took over");
        tokio::task::spawn_blocking(move || {
            let _ = old.flush(Timeout::After(REPLACED_DRAIN));
        });
    }
}

/// Whether librdkafka logged the line of the bug (see the module's documentation).
pub(crate) fn lost_a_leader(level: RDKafkaLogLevel, facility: &str, message: &str) -> bool {
    matches!(level, RDKafkaLogLevel::Warning) && facility == "METADATAUPDATE" && message.contains("new leader-1 not found in cache")
}

/// Keeps the lost-leader signal of one producer context.
pub(crate) type LostLeader = Arc<Notify>;

#[cfg(test)]
mod tests {
    use rdkafka::ClientContext;

    use super::*;

    fn identity(producer: &BusProducer) -> usize {
        producer.current().client().native_ptr() as usize
    }

    #[tokio::test]
    async fn the_line_of_the_bug_and_only_it_puts_a_new_producer_in_place() {
        // Creating a producer does not connect: no broker is needed.
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:9");
        let context = ProducerObserved { refused_login: tokio::sync::watch::Sender::new(None), lost_leader: LostLeader::default() };
        let producer = BusProducer::create(config, context.clone()).expect("producer");
        let first = identity(&producer);
        context.log(RDKafkaLogLevel::Warning, "METADATAUPDATE", "[thrd:main]: Partition t(AAAA)[3]: leader 1 unchanged");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(identity(&producer), first, "another line changes nothing");
        context.log(RDKafkaLogLevel::Warning, "METADATAUPDATE", "[thrd:main]: Partition t(AAAA)[7]: new leader-1 not found in cache");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while identity(&producer) == first && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_ne!(identity(&producer), first, "a new producer took over");
    }
}
