//! Metrics, traces ([`traces`]) and logging shared by every role. One Prometheus registry per process; handles are
//! created once here so the hot path only increments pre-bound counters (no label lookups).
//! This crate knows metric names, not the code that moves them.

use std::sync::{Arc, OnceLock};

pub mod traces;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric Starling exports, pre-registered.
pub struct Metrics {
    registry: Registry,
    pub connections_open: IntGauge,
    pub sessions_bound: IntGauge,
    /// Stream-managed resources whose stream broke, waiting to be resumed (XEP-0198).
    pub sessions_detached: IntGauge,
    logins: IntCounterVec,
    stanzas_in: IntCounterVec,
    stanzas_out: IntCounterVec,
    pub routing_latency: Histogram,
    pub offline_stored: IntCounter,
    pub slow_consumer_disconnects: IntCounter,
    /// Resources whose client said it is inactive (XEP-0352).
    pub clients_inactive: IntGauge,
    /// Presence and chat states held for inactive clients, and those of them superseded by a
    /// later one from the same contact before they were sent.
    pub csi_held: IntCounter,
    pub csi_superseded: IntCounter,
    /// XEP-0357 notifications sent to app servers, and those that failed for good.
    pub push_notifications: IntCounter,
    pub push_failures: IntCounter,
    pub deliveries_refused: IntCounter,
    pub archive_queued: IntGauge,
    pub archive_written: IntCounter,
    pub archive_write_seconds: Histogram,
    pub archive_write_errors: IntCounter,
    pub archive_refused: IntCounter,
    pub archive_dropped: IntCounter,
    pub mam_queries: IntCounter,
    /// Effects of owner records replayed after an owner's death, recognised and not repeated.
    pub replayed_deliveries_dropped: IntCounter,
    pub replayed_archive_entries_skipped: IntCounter,
    pub replayed_offline_messages_skipped: IntCounter,
    /// In a cluster: records sent to edges with one stanza for several connections, and the
    /// deliveries they carried (what would otherwise be one record each, twice: via the owner).
    pub fan_out_records: IntCounter,
    pub fan_out_deliveries: IntCounter,
    /// Messages refused by a per-user limit before anything of them was stored.
    pub quota_refusals: QuotaRefusals,
    /// Archived messages removed again because the recipient refused them.
    pub archive_withdrawn: IntCounter,
    /// In a cluster, stanzas an edge could not write to a connection without stream management
    /// (cut as a slow reader, or gone): handed back to the owner, or dropped (a room's or PEP's
    /// fan-out, nothing to keep; or the owners' queue full).
    pub edge_undelivered: EdgeUndelivered,
    /// In a cluster: the owner partitions this session node serves, and how often they moved.
    pub owned_partitions: IntGauge,
    pub partitions_assigned: IntCounter,
    pub partitions_revoked: IntCounter,
    /// Records the bus did not take (a publish or its acknowledgement failed).
    pub bus_publish_errors: IntCounter,
    /// Kafka, from librdkafka's statistics (every 5 s) and error callbacks: records of this
    /// node's owner partitions not yet read, messages waiting in the producer's queue, errors.
    pub kafka_consumer_lag: IntGauge,
    pub kafka_producer_queued: IntGauge,
    pub kafka_errors: IntCounter,
    pub kafka_producers_replaced: IntCounter,
    /// Redis (the routing registry): each command's round trip, and the commands that could not
    /// reach it.
    pub redis_command_seconds: Histogram,
    pub redis_errors: IntCounter,
    /// Federation: streams with other servers open now, by direction, and stanzas bounced
    /// because no stream to their domain could be set up (or it broke, or federation refused).
    pub s2s_streams: S2sStreams,
    pub s2s_bounced: IntCounter,
}

/// Gauge handles per direction of `starling_s2s_streams`, bound once.
pub struct S2sStreams {
    pub inbound: IntGauge,
    pub outbound: IntGauge,
}

/// Counter handles per outcome of `starling_edge_undelivered_total`, bound once.
pub struct EdgeUndelivered {
    pub returned: IntCounter,
    pub dropped: IntCounter,
}

/// Counter handles per limit of `starling_quota_refusals_total`, bound once.
pub struct QuotaRefusals {
    pub message_rate: IntCounter,
    pub sent_per_day: IntCounter,
    pub received_per_day: IntCounter,
    pub offline_full: IntCounter,
}

/// Counter handles for the three stanza kinds, bound once.
pub struct KindCounters {
    pub message: IntCounter,
    pub presence: IntCounter,
    pub iq: IntCounter,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let connections_open = IntGauge::new("starling_connections_open", "Client connections currently open").expect("valid metric");
        let sessions_bound = IntGauge::new("starling_sessions_bound", "Resources currently bound").expect("valid metric");
        let sessions_detached = IntGauge::new("starling_sessions_detached", "Stream-managed resources waiting to be resumed").expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("starling_logins_total", "SASL authentication attempts by mechanism and outcome"),
            &["mechanism", "outcome"],
        )
        .expect("valid metric");
        let stanzas_in = IntCounterVec::new(Opts::new("starling_stanzas_in_total", "Stanzas received from clients"), &["kind"]).expect("valid metric");
        let stanzas_out = IntCounterVec::new(Opts::new("starling_stanzas_out_total", "Stanzas queued to clients"), &["kind"]).expect("valid metric");
        let routing_latency = Histogram::with_opts(
            HistogramOpts::new("starling_routing_latency_seconds", "Time from a stanza's arrival at the edge to its hand-off to the recipient's connection")
                .buckets(vec![0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )
        .expect("valid metric");
        let offline_stored = IntCounter::new("starling_offline_messages_stored_total", "Messages stored for offline delivery").expect("valid metric");
        let clients_inactive = IntGauge::new("starling_clients_inactive", "Resources whose client is inactive (XEP-0352)").expect("valid metric");
        let csi_held = IntCounter::new("starling_csi_held_total", "Presence and chat states held for inactive clients").expect("valid metric");
        let csi_superseded =
            IntCounter::new("starling_csi_superseded_total", "Held stanzas superseded by a later one from the same contact, never sent").expect("valid metric");
        let push_notifications = IntCounter::new("starling_push_notifications_total", "Push notifications sent to app servers (XEP-0357)").expect("valid metric");
        let push_failures = IntCounter::new("starling_push_failures_total", "Push notifications an app server refused for good").expect("valid metric");
        let slow_consumer_disconnects = IntCounter::new(
            "starling_slow_consumer_disconnects_total",
            "Connections closed because their outbound queue was full",
        )
        .expect("valid metric");
        let deliveries_refused = IntCounter::new(
            "starling_deliveries_refused_total",
            "Stanzas refused because the recipient's actor had too many waiting",
        )
        .expect("valid metric");
        let archive_queued = IntGauge::new("starling_archive_queued", "Archive writes waiting for the writer").expect("valid metric");
        let archive_written = IntCounter::new("starling_archive_written_total", "Messages written to the archive").expect("valid metric");
        let archive_write_seconds = Histogram::with_opts(
            HistogramOpts::new("starling_archive_write_seconds", "Time to write one batch of archived messages")
                .buckets(vec![0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
        )
        .expect("valid metric");
        let archive_write_errors = IntCounter::new("starling_archive_write_errors_total", "Archive batch writes that failed and were retried").expect("valid metric");
        let archive_refused = IntCounter::new(
            "starling_archive_refused_total",
            "Messages refused to their sender because the archive queue stayed full",
        )
        .expect("valid metric");
        let archive_dropped = IntCounter::new("starling_archive_dropped_total", "Archived messages the store rejected as invalid").expect("valid metric");
        let mam_queries = IntCounter::new("starling_mam_queries_total", "XEP-0313 archive queries answered").expect("valid metric");
        let replayed_deliveries_dropped = IntCounter::new(
            "starling_replayed_deliveries_dropped_total",
            "Deliveries a replayed owner record would have repeated to a connection, dropped",
        )
        .expect("valid metric");
        let replayed_archive_entries_skipped = IntCounter::new(
            "starling_replayed_archive_entries_skipped_total",
            "Messages a replayed owner record would have archived a second time, not written again",
        )
        .expect("valid metric");
        let replayed_offline_messages_skipped = IntCounter::new(
            "starling_replayed_offline_messages_skipped_total",
            "Messages a replayed owner record would have stored offline a second time, not stored again",
        )
        .expect("valid metric");
        let fan_out_records =
            IntCounter::new("starling_fan_out_records_total", "Records sent to an edge with one stanza for several of its connections").expect("valid metric");
        let fan_out_deliveries =
            IntCounter::new("starling_fan_out_deliveries_total", "Deliveries carried by fan-out records, one per connection").expect("valid metric");
        let quota_refusals_vec =
            IntCounterVec::new(Opts::new("starling_quota_refusals_total", "Messages refused by a per-user limit, before anything was stored"), &["limit"])
                .expect("valid metric");
        let quota_refusals = QuotaRefusals {
            message_rate: quota_refusals_vec.with_label_values(&["message_rate"]),
            sent_per_day: quota_refusals_vec.with_label_values(&["sent_per_day"]),
            received_per_day: quota_refusals_vec.with_label_values(&["received_per_day"]),
            offline_full: quota_refusals_vec.with_label_values(&["offline_full"]),
        };
        let owned_partitions = IntGauge::new("starling_owned_partitions", "Owner partitions this session node serves").expect("valid metric");
        let partitions_assigned = IntCounter::new("starling_partitions_assigned_total", "Owner partitions assigned to this node").expect("valid metric");
        let partitions_revoked = IntCounter::new("starling_partitions_revoked_total", "Owner partitions taken from this node").expect("valid metric");
        let bus_publish_errors = IntCounter::new("starling_bus_publish_errors_total", "Records the bus did not take").expect("valid metric");
        let kafka_consumer_lag =
            IntGauge::new("starling_kafka_consumer_lag_records", "Records of this node's owner partitions not yet read (librdkafka statistics)").expect("valid metric");
        let kafka_producer_queued = IntGauge::new("starling_kafka_producer_queued_messages", "Messages waiting in the Kafka producer's queue").expect("valid metric");
        let kafka_errors = IntCounter::new("starling_kafka_errors_total", "Errors librdkafka reported").expect("valid metric");
        let kafka_producers_replaced = IntCounter::new(
            "starling_kafka_producers_replaced_total",
            "Kafka producers replaced after librdkafka lost a partition's leader for good (confluentinc/librdkafka#5430)",
        )
        .expect("valid metric");
        let redis_command_seconds = Histogram::with_opts(
            HistogramOpts::new("starling_redis_command_seconds", "Round trip of one Redis command (or pipeline) of the routing registry")
                .buckets(vec![0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0]),
        )
        .expect("valid metric");
        let redis_errors = IntCounter::new("starling_redis_errors_total", "Redis commands that could not reach the server").expect("valid metric");
        let edge_undelivered_vec = IntCounterVec::new(
            Opts::new("starling_edge_undelivered_total", "Stanzas an edge could not write to a connection without stream management, by what became of them"),
            &["outcome"],
        )
        .expect("valid metric");
        let edge_undelivered =
            EdgeUndelivered { returned: edge_undelivered_vec.with_label_values(&["returned"]), dropped: edge_undelivered_vec.with_label_values(&["dropped"]) };
        let archive_withdrawn =
            IntCounter::new("starling_archive_withdrawn_total", "Archived messages removed again because their recipient refused them").expect("valid metric");
        let s2s_streams_vec = IntGaugeVec::new(Opts::new("starling_s2s_streams", "Streams with other servers open now, by direction"), &["direction"]).expect("valid metric");
        let s2s_streams = S2sStreams { inbound: s2s_streams_vec.with_label_values(&["in"]), outbound: s2s_streams_vec.with_label_values(&["out"]) };
        let s2s_bounced = IntCounter::new("starling_s2s_bounced_total", "Stanzas to other domains bounced: no stream could be set up, it broke, or federation with the domain is refused")
            .expect("valid metric");
        for collector in [
            Box::new(connections_open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sessions_bound.clone()),
            Box::new(sessions_detached.clone()),
            Box::new(logins.clone()),
            Box::new(stanzas_in.clone()),
            Box::new(stanzas_out.clone()),
            Box::new(routing_latency.clone()),
            Box::new(offline_stored.clone()),
            Box::new(slow_consumer_disconnects.clone()),
            Box::new(clients_inactive.clone()),
            Box::new(csi_held.clone()),
            Box::new(csi_superseded.clone()),
            Box::new(push_notifications.clone()),
            Box::new(push_failures.clone()),
            Box::new(deliveries_refused.clone()),
            Box::new(archive_queued.clone()),
            Box::new(archive_written.clone()),
            Box::new(archive_write_seconds.clone()),
            Box::new(archive_write_errors.clone()),
            Box::new(archive_refused.clone()),
            Box::new(archive_dropped.clone()),
            Box::new(mam_queries.clone()),
            Box::new(replayed_deliveries_dropped.clone()),
            Box::new(replayed_archive_entries_skipped.clone()),
            Box::new(replayed_offline_messages_skipped.clone()),
            Box::new(fan_out_records.clone()),
            Box::new(fan_out_deliveries.clone()),
            Box::new(quota_refusals_vec),
            Box::new(archive_withdrawn.clone()),
            Box::new(edge_undelivered_vec),
            Box::new(owned_partitions.clone()),
            Box::new(partitions_assigned.clone()),
            Box::new(partitions_revoked.clone()),
            Box::new(bus_publish_errors.clone()),
            Box::new(kafka_consumer_lag.clone()),
            Box::new(kafka_producer_queued.clone()),
            Box::new(kafka_errors.clone()),
            Box::new(kafka_producers_replaced.clone()),
            Box::new(redis_command_seconds.clone()),
            Box::new(redis_errors.clone()),
            Box::new(s2s_streams_vec),
            Box::new(s2s_bounced.clone()),
            // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, …
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            connections_open,
            sessions_bound,
            sessions_detached,
            logins,
            stanzas_in,
            stanzas_out,
            routing_latency,
            offline_stored,
            slow_consumer_disconnects,
            clients_inactive,
            csi_held,
            csi_superseded,
            push_notifications,
            push_failures,
            deliveries_refused,
            archive_queued,
            archive_written,
            archive_write_seconds,
            archive_write_errors,
            archive_refused,
            archive_dropped,
            mam_queries,
            replayed_deliveries_dropped,
            replayed_archive_entries_skipped,
            replayed_offline_messages_skipped,
            fan_out_records,
            fan_out_deliveries,
            quota_refusals,
            archive_withdrawn,
            edge_undelivered,
            owned_partitions,
            partitions_assigned,
            partitions_revoked,
            bus_publish_errors,
            kafka_consumer_lag,
            kafka_producer_queued,
            kafka_errors,
            kafka_producers_replaced,
            redis_command_seconds,
            redis_errors,
            s2s_streams,
            s2s_bounced,
        }
    }

    /// The process-wide metrics.
    pub fn global() -> Arc<Metrics> {
        static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(Metrics::new())).clone()
    }

    pub fn login(&self, mechanism: &str, ok: bool) {
        self.logins.with_label_values(&[mechanism, if ok { "ok" } else { "failed" }]).inc();
    }

    pub fn stanzas_in(&self) -> KindCounters {
        kind_counters(&self.stanzas_in)
    }

    pub fn stanzas_out(&self) -> KindCounters {
        kind_counters(&self.stanzas_out)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn kind_counters(vec: &IntCounterVec) -> KindCounters {
    KindCounters {
        message: vec.with_label_values(&["message"]),
        presence: vec.with_label_values(&["presence"]),
        iq: vec.with_label_values(&["iq"]),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: one line per event, fields as `key=value`.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line; a line written while a traced stanza is
    /// handled carries its `trace_id` (in `span`).
    Json,
}

/// Logs to standard output, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
}
