//! The cluster [`Bus`] on Apache Kafka, with `rdkafka` (librdkafka built in, statically).
//!
//! - Owner partitions are the partitions of one topic, `{prefix}.owners`. Records go to an
//!   explicit partition ([`starling_cluster::bus::partition_of`]), never through Kafka's
//!   partitioner, so the mapping is ours and the same in every client. Session nodes consume it
//!   in one consumer group (`{prefix}.owners`): Kafka's group protocol assigns each partition to
//!   exactly one member and moves partitions when members come, go or stop heartbeating — that is
//!   the cluster's ownership and failover. The cooperative-sticky assignor moves only what must.
//! - Each edge node has a topic `{prefix}.edge.{node}` with one partition, read from the end at
//!   open (an edge that restarts has no connections for older records).
//!
//! Durability: the producer is idempotent with `acks=all` (a record is acknowledged once every
//! in-sync replica has it; retries cannot duplicate or reorder within a partition), so a publish
//! that returned survives a broker crash when the topic is replicated. Consumers commit only what
//! the owner reports handled; auto-commit is off. Latency cost: `linger.ms` (default 0: under load
//! batches form anyway while requests are in flight) plus the ISR round trip; measured by
//! `benches/round_trip.rs`, reported in docs/benchmarks.md.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use starling_cluster::bus::{Bus, BusError, Delivered, EdgeInbox, OwnerEvent, OwnerInbox, Record};
use tokio::sync::mpsc;

mod group;
mod observed;
mod producer;
use observed::{ProducerObserved, STATISTICS_INTERVAL_MS};
use producer::BusProducer;

/// How to reach Kafka and how to use it.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,host:port` of one or more brokers.
    pub brokers: String,
    /// Prefix of every topic and group name, so several clusters (or test runs) can share brokers.
    pub prefix: String,
    /// Owner partitions, used when the owners topic is created (and checked afterwards).
    pub partitions: u32,
    /// Replication factor of created topics (3 in production, 1 on a single test broker).
    pub replication: i32,
    /// How long a session node may stay silent before the group gives its partitions away;
    /// `None`: the shortest the brokers allow, but not under 1.5 s (see [`group`]).
    pub session_timeout: Option<Duration>,
    /// How long the producer waits to batch records (`linger.ms`); every hop pays it.
    pub linger: Duration,
    /// librdkafka properties for every client (producer, consumers, admin), e.g.
    /// `security.protocol`, `sasl.mechanisms`, `sasl.username`, `sasl.password`,
    /// `ssl.ca.location`: what a managed Kafka needs. Those Starling sets itself are refused
    /// ([`KafkaConfig::check`]).
    pub settings: Vec<(String, String)>,
}

/// The librdkafka properties Starling sets itself, because its guarantees rest on them (one
/// group's assignment, manual commits, idempotent `acks=all`): not to be overridden.
const OWN_SETTINGS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "linger.ms",
    "queue.buffering.max.ms",
    "message.timeout.ms",
    "statistics.interval.ms",
    "client.id",
];

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            prefix: "starling".into(),
            partitions: 64,
            replication: 3,
            session_timeout: None,
            linger: Duration::ZERO,
            settings: Vec::new(),
        }
    }
}

impl KafkaConfig {
    /// Refuses settings that would override what Starling sets itself (each has its own
    /// configuration key, or is fixed by design).
    pub fn check(&self) -> Result<(), String> {
        match self.settings.iter().find(|(key, _)| OWN_SETTINGS.contains(&key.as_str())) {
            Some((key, _)) => Err(format!("kafka setting {key:?} is Starling's own (see docs/configuration.md, [cluster] kafka_settings)")),
            None => Ok(()),
        }
    }

    /// A client configuration with the brokers and the operator's settings.
    fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.settings {
            client.set(key, value);
        }
        client
    }
}

/// How long a publisher waits before retrying when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

pub struct KafkaBus {
    config: KafkaConfig,
    producer: Arc<BusProducer>,
}

/// How often an idle owner inbox polls its consumer afresh. Rebalance callbacks run only while the
/// consumer is polled; a member without partitions (no records to wake it) did not rejoin the
/// group after a broker restart in one CI run, and a fresh poll rules out a missed wake-up.
const IDLE_REPOLL: Duration = Duration::from_secs(1);

/// How long a node waits for the owners topic, just created, to show in the brokers' metadata.
const TOPIC_VISIBLE_WAIT: Duration = Duration::from_secs(15);

fn unavailable(error: KafkaError) -> BusError {
    BusError::Unavailable(error.to_string())
}

impl KafkaBus {
    /// Connects a producer and makes sure the owners topic exists with the configured partitions:
    /// an existing topic with another count is refused ([`BusError::Config`]), since nodes that
    /// disagree on it would each route a user to a different owner.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaBus, BusError> {
        config.check().map_err(BusError::Config)?;
        let refused_login = tokio::sync::watch::Sender::new(None);
        let mut producer_config = config.client();
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("message.timeout.ms", "30000")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        let context = ProducerObserved { refused_login: refused_login.clone(), lost_leader: Default::default() };
        let producer = BusProducer::create(producer_config, context).map_err(|error| BusError::Config(error.to_string()))?;
        let bus = KafkaBus { config, producer };
        // Wrong credentials would only make the first request time out: the producer's report
        // of the refusal ends the start at once, with why.
        let owners = bus.owners_topic();
        tokio::select! {
            created = bus.ensure_topic(&owners, bus.config.partitions) => created?,
            why = observed::refused(refused_login.subscribe()) => return Err(BusError::Config(format!("Kafka refused the login: {why}"))),
        }
        // A topic just created may not be in the metadata yet (a broker that just started, or
        // another broker than the one that created it): no partitions means "not seen yet".
        let mut found = bus.partitions_of(&owners).await?;
        let deadline = tokio::time::Instant::now() + TOPIC_VISIBLE_WAIT;
        while found == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            found = bus.partitions_of(&owners).await?;
        }
        if found != bus.config.partitions as usize {
            return Err(BusError::Config(format!(
                "topic {owners} has {found} partitions but [cluster] partitions = {}: every node must use the topic's count (it cannot change for the life of the cluster)",
                bus.config.partitions
            )));
        }
        Ok(bus)
    }

    /// How many partitions `topic` has (0 when it does not exist).
    async fn partitions_of(&self, topic: &str) -> Result<usize, BusError> {
        let (producer, name) = (self.producer.current(), topic.to_owned());
        let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), Duration::from_secs(10)))
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?
            .map_err(unavailable)?;
        Ok(metadata.topics().first().map_or(0, |topic| topic.partitions().len()))
    }

    fn owners_topic(&self) -> String {
        format!("{}.owners", self.config.prefix)
    }

    fn edge_topic(&self, node: &str) -> String {
        format!("{}{}", self.edge_topic_prefix(), self.inbox_name(node))
    }

    fn edge_topic_prefix(&self) -> String {
        format!("{}.edge.", self.config.prefix)
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.config.client().create().map_err(|error| BusError::Config(error.to_string()))?;
        let partitions = i32::try_from(partitions).map_err(|_| BusError::Config("too many partitions".into()))?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(self.config.replication));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin.create_topics([&new], &options).await.map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(BusError::Unavailable(format!("cannot create topic {topic}: {code}"))),
            }
        }
        Ok(())
    }

    /// Queues a record in librdkafka's producer queue (in call order; the idempotent producer
    /// keeps that order per partition across retries) and returns the future of its
    /// acknowledgement by every in-sync replica (acks=all). While the queue is full it waits —
    /// the backpressure on the publisher.
    async fn publish(&self, topic: &str, partition: i32, payload: Bytes) -> Result<Delivered, BusError> {
        let mut record = FutureRecord::<(), [u8]>::to(topic).payload(&payload).partition(partition);
        loop {
            match self.producer.current().send_result(record) {
                Ok(delivery) => {
                    return Ok(Box::pin(async move {
                        match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((error, _))) => Err(unavailable(error)),
                            Err(_) => Err(BusError::Unavailable("the producer was dropped".into())),
                        }
                    }));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => return Err(unavailable(error)),
            }
        }
    }

    fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.config.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky");
        config
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    async fn publish_owner(&self, partition: u32, payload: Bytes) -> Result<Delivered, BusError> {
        if partition >= self.config.partitions {
            return Err(BusError::Config(format!("no partition {partition}")));
        }
        self.publish(&self.owners_topic(), partition as i32, payload).await
    }

    /// The edge created its topic before it accepted a connection (`edge_inbox`), so publishers
    /// never have to: a session node's first record to each edge costs no admin round trip.
    async fn publish_edge(&self, node: &str, payload: Bytes) -> Result<Delivered, BusError> {
        self.publish(&self.edge_topic(node), 0, payload).await
    }

    async fn join_owners(&self, node: &str) -> Result<Box<dyn OwnerInbox>, BusError> {
        let session_timeout = group::session_timeout(&self.producer.current(), &self.config).await?;
        let (events, assignments) = mpsc::unbounded_channel();
        let mut config = self.consumer_config(&self.owners_topic());
        config
            .set("client.id", node)
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set("session.timeout.ms", session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", group::heartbeat_interval(session_timeout).as_millis().to_string());
        let staged = Arc::new(Mutex::new(HashMap::new()));
        let context = OwnerContext { events, topic: self.owners_topic(), staged: staged.clone() };
        let consumer: StreamConsumer<OwnerContext> = config.create_with_context(context).map_err(|error| BusError::Config(error.to_string()))?;
        consumer.subscribe(&[&self.owners_topic()]).map_err(unavailable)?;
        Ok(Box::new(KafkaOwnerInbox { consumer: Arc::new(consumer), topic: self.owners_topic(), assignments, ready: VecDeque::new(), staged }))
    }

    /// Topic names allow [a-zA-Z0-9._-]; anything else in a node id becomes '_'.
    fn inbox_name(&self, node: &str) -> String {
        node.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
    }

    async fn edge_inboxes(&self) -> Result<Vec<String>, BusError> {
        let producer = self.producer.current();
        let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, Duration::from_secs(10)))
            .await
            .map_err(|error| BusError::Unavailable(error.to_string()))?
            .map_err(unavailable)?;
        let prefix = self.edge_topic_prefix();
        Ok(metadata.topics().iter().filter_map(|topic| topic.name().strip_prefix(&prefix)).map(str::to_owned).collect())
    }

    async fn remove_edge_inbox(&self, name: &str) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.config.client().create().map_err(|error| BusError::Config(error.to_string()))?;
        let topic = format!("{}{name}", self.edge_topic_prefix());
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.delete_topics(&[&topic], &options).await.map_err(unavailable)? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => return Err(BusError::Unavailable(format!("cannot delete topic {topic}: {code}"))),
            }
        }
        Ok(())
    }

    async fn edge_inbox(&self, node: &str) -> Result<Box<dyn EdgeInbox>, BusError> {
        let topic = self.edge_topic(node);
        self.ensure_topic(&topic, 1).await?;
        // No group: this node alone reads its topic, from the end as it is now.
        let consumer: StreamConsumer = self.consumer_config(&format!("{topic}.reader")).create().map_err(|error| BusError::Config(error.to_string()))?;
        // A topic just created may not be in the metadata yet (UnknownPartition, seen when the
        // broker is busy): asked again for a while instead of failing the node's start.
        let patience = std::time::Instant::now() + Duration::from_secs(30);
        let high = loop {
            match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(error) if std::time::Instant::now() < patience => {
                    tracing::info!(%topic, %error, "edge inbox not ready yet; asking again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(unavailable(error)),
            }
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Offset(high)).map_err(unavailable)?;
        consumer.assign(&assignment).map_err(unavailable)?;
        Ok(Box::new(KafkaEdgeInbox { consumer }))
    }
}

/// Forwards the group's assignment changes to the inbox, in the order librdkafka makes them, and
/// commits what the owner staged for partitions being revoked.
struct OwnerContext {
    events: mpsc::UnboundedSender<OwnerEvent>,
    topic: String,
    /// Offsets handled but perhaps not committed yet, per partition.
    staged: Arc<Mutex<HashMap<u32, u64>>>,
}

impl OwnerContext {
    /// Commits the staged offsets of `revoked` while the group still lets this member do so.
    fn commit_staged(&self, consumer: &BaseConsumer<Self>, revoked: &[u32]) {
        let mut list = TopicPartitionList::new();
        {
            let mut staged = self.staged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for partition in revoked {
                if let Some(offset) = staged.remove(partition)
                    && let Ok(next) = i64::try_from(offset + 1)
                {
                    let _ = list.add_partition_offset(&self.topic, *partition as i32, Offset::Offset(next));
                }
            }
        }
        if list.count() > 0
            && let Err(error) = consumer.commit(&list, CommitMode::Sync)
        {
            tracing::warn!(%error, "could not commit revoked partitions; the next owner replays their last records");
        }
    }
}

impl ClientContext for OwnerContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        observed::consumer_lag(&statistics, &self.topic);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        observed::client_error(error, reason);
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<u32> {
    let mut partitions: Vec<u32> = list.elements().iter().filter_map(|e| u32::try_from(e.partition()).ok()).collect();
    partitions.sort_unstable();
    partitions
}

impl ConsumerContext for OwnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Revocations first: the owner must stop handling those users before anyone else starts.
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions_of(list);
            self.commit_staged(consumer, &revoked);
            let _ = self.events.send(OwnerEvent::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let _ = self.events.send(OwnerEvent::Assigned(partitions_of(list)));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "Kafka group rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

struct KafkaOwnerInbox {
    /// Shared with the blocking commit task.
    consumer: Arc<StreamConsumer<OwnerContext>>,
    topic: String,
    assignments: mpsc::UnboundedReceiver<OwnerEvent>,
    /// Events taken but not yet returned (a record that arrived together with a rebalance).
    ready: VecDeque<OwnerEvent>,
    staged: Arc<Mutex<HashMap<u32, u64>>>,
}

impl KafkaOwnerInbox {
    /// Queues an assignment change, dropping queued records of partitions it revokes: those go
    /// to the next owner uncommitted.
    fn queue_assignment(&mut self, event: OwnerEvent) {
        if let OwnerEvent::Revoked(revoked) = &event {
            self.ready.retain(|queued| !matches!(queued, OwnerEvent::Record(record) if revoked.contains(&record.partition)));
        }
        self.ready.push_back(event);
    }
}

#[async_trait]
impl OwnerInbox for KafkaOwnerInbox {
    async fn next(&mut self) -> Result<OwnerEvent, BusError> {
        loop {
            // Rebalance events are produced while polling: take them before handing out records.
            while let Ok(event) = self.assignments.try_recv() {
                self.queue_assignment(event);
            }
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            tokio::select! {
                biased;
                event = self.assignments.recv() => self.queue_assignment(event.ok_or(BusError::Closed)?),
                message = tokio::time::timeout(IDLE_REPOLL, self.consumer.recv()) => {
                    let message = match message {
                        // Idle: polled again below (a waiting receive that is dropped takes nothing).
                        Err(_idle) => continue,
                        Ok(Ok(message)) => message,
                        Ok(Err(error)) => {
                            pause_after(&error).await?;
                            continue;
                        }
                    };
                    let (Ok(partition), Ok(offset)) = (u32::try_from(message.partition()), u64::try_from(message.offset())) else { continue };
                    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
                    self.ready.push_back(OwnerEvent::Record(Record { partition, offset, payload }));
                }
            }
        }
    }

    fn stage(&mut self, partition: u32, offset: u64) {
        self.staged.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(partition, offset);
    }

    /// A synchronous commit (one broker round trip), so that what returned is what a next owner
    /// sees: call it per batch of handled records, not per record.
    async fn commit(&mut self, points: &[(u32, u64)]) -> Result<(), BusError> {
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in points {
            // Kafka's committed offset is the next one to read.
            let next = i64::try_from(offset + 1).map_err(|_| BusError::Config("offset out of range".into()))?;
            list.add_partition_offset(&self.topic, partition as i32, Offset::Offset(next)).map_err(unavailable)?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|error| BusError::Unavailable(format!("commit task: {error}")))?
            .map_err(unavailable)
    }
}

struct KafkaEdgeInbox {
    consumer: StreamConsumer,
}

#[async_trait]
impl EdgeInbox for KafkaEdgeInbox {
    async fn next(&mut self) -> Result<Bytes, BusError> {
        loop {
            match self.consumer.recv().await {
                Ok(message) => return Ok(Bytes::copy_from_slice(message.payload().unwrap_or_default())),
                Err(error) => pause_after(&error).await?,
            }
        }
    }
}

/// How long a consumer waits after an error before polling again.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// A consumer error: fatal ones end the inbox; the others (a broker restarting, a transport
/// failure) are librdkafka's to recover from while the consumer keeps polling.
async fn pause_after(error: &KafkaError) -> Result<(), BusError> {
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
        return Err(BusError::Unavailable(error.to_string()));
    }
    tracing::warn!(%error, "Kafka consumer error; polling on");
    tokio::time::sleep(CONSUMER_ERROR_PAUSE).await;
    Ok(())
}
