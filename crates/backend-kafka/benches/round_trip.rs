//! What one hop over Kafka costs (issue 3, "where the time goes"): records published one at a time
//! through [`KafkaBus`] with the server's settings (idempotent, acks=all, linger 1 ms), timing the
//! acknowledgement and the arrival at the consumer — an owner partition read by the owners' group,
//! and an edge inbox. At rest: each record waits for the previous one, so this is latency, not
//! throughput.
//!
//! ```text
//! KAFKA_BROKERS=127.0.0.1:19092 cargo bench -p starling-backend-kafka --bench round_trip -- [records] [linger-ms]
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use starling_backend_kafka::{KafkaBus, KafkaConfig};
use starling_cluster::bus::{Bus, OwnerEvent};

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

fn line(what: &str, histogram: &Histogram<u64>) {
    println!(
        "{what:<34} p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} records)",
        micros(histogram, 0.5),
        micros(histogram, 0.9),
        micros(histogram, 0.99),
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
}

#[tokio::main]
async fn main() {
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|arg| arg.parse().ok()).collect();
    let records = numbers.first().copied().unwrap_or(2000);
    let linger = Duration::from_millis(numbers.get(1).copied().unwrap_or(1));
    println!("{records} records, linger.ms {}", linger.as_millis());
    let config = KafkaConfig {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into()),
        prefix: format!("bench{}x{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()),
        partitions: 1,
        replication: 1,
        linger,
        ..KafkaConfig::default()
    };
    let bus = KafkaBus::connect(config).await.expect("Kafka reachable");
    let mut owner = bus.join_owners("bench-owner").await.expect("join");
    // Wait for the assignment (a first record must not arrive before it).
    loop {
        match owner.next().await.expect("owner inbox") {
            OwnerEvent::Assigned(partitions) if !partitions.is_empty() => break,
            _ => {}
        }
    }
    let mut edge = bus.edge_inbox("bench-edge").await.expect("edge inbox");
    let new = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut owner_ack, mut owner_arrival, mut edge_ack, mut edge_arrival) = (new(), new(), new(), new());
    let payload = Bytes::from(vec![b'x'; 300]);
    for round in 0..records + 100 {
        let warm = round >= 100;
        let start = Instant::now();
        let ack = bus.publish_owner(0, payload.clone()).await.expect("queued");
        ack.await.expect("acknowledged");
        let acked = start.elapsed();
        loop {
            if let OwnerEvent::Record(_) = tokio::time::timeout(Duration::from_secs(30), owner.next()).await.expect("record in time").expect("owner inbox") {
                break;
            }
        }
        let arrived = start.elapsed();
        let start = Instant::now();
        bus.publish_edge("bench-edge", payload.clone()).await.expect("queued").await.expect("acknowledged");
        let edge_acked = start.elapsed();
        tokio::time::timeout(Duration::from_secs(30), edge.next()).await.expect("edge record in time").expect("edge inbox");
        let edge_arrived = start.elapsed();
        if warm {
            for (histogram, took) in [(&mut owner_ack, acked), (&mut owner_arrival, arrived), (&mut edge_ack, edge_acked), (&mut edge_arrival, edge_arrived)] {
                histogram.record(took.as_micros() as u64).expect("in bounds");
            }
        }
    }
    line("owner partition: publish -> ack", &owner_ack);
    line("owner partition: publish -> owner", &owner_arrival);
    line("edge inbox: publish -> ack", &edge_ack);
    line("edge inbox: publish -> edge", &edge_arrival);
}
