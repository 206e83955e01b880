//! The bus contract (`starling_cluster::contract::bus`) against the Kafka broker at
//! `$KAFKA_BROKERS` (default what `scripts/infra/kafka start` runs), plus what needs a real group:
//! two session nodes splitting the partitions and the survivor taking over when one leaves. An
//! unreachable broker FAILS the tests.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use starling_backend_kafka::{KafkaBus, KafkaConfig};
use starling_cluster::bus::{Bus, OwnerEvent, OwnerInbox};
use starling_cluster::contract;

fn config(prefix: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into()),
        prefix: prefix.to_owned(),
        partitions: 4,
        replication: 1,
        session_timeout: Some(Duration::from_secs(6)),
        linger: Duration::from_millis(1),
        settings: Vec::new(),
    }
}

async fn connect(prefix: &str) -> KafkaBus {
    match KafkaBus::connect(config(prefix)).await {
        Ok(bus) => bus,
        Err(error) => panic!("\n\n*** Kafka not usable at {} ({error}).\n*** Start it with `scripts/infra/kafka start` (or set KAFKA_BROKERS).\n\n", config(prefix).brokers),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suite() {
    let prefix = contract::unique_prefix();
    contract::bus(&connect(&prefix).await, &prefix).await;
}

/// A managed Kafka's login, through `settings` (`[cluster] kafka_settings`): the SASL/PLAIN
/// listener `scripts/infra/kafka` runs at `$KAFKA_SASL_BROKERS` takes the right password and
/// refuses a wrong one with an error that says so; settings Starling sets itself are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_settings_log_in_and_a_wrong_password_is_refused() {
    let prefix = contract::unique_prefix();
    let sasl = |password: &str| KafkaConfig {
        brokers: std::env::var("KAFKA_SASL_BROKERS").unwrap_or_else(|_| "127.0.0.1:19094".into()),
        settings: [("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanisms", "PLAIN"), ("sasl.username", "starling"), ("sasl.password", password)]
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .into(),
        ..config(&prefix)
    };
    let bus = KafkaBus::connect(sasl("starling-kafka-secret")).await.expect("logged in with SASL/PLAIN");
    let mut owner = bus.join_owners("session-sasl").await.expect("join");
    let mut held = BTreeSet::new();
    hold(owner.as_mut(), &mut held, 4).await;
    bus.publish_owner(1, Bytes::from_static(b"over sasl")).await.expect("queued").await.expect("acknowledged");
    loop {
        match tokio::time::timeout(Duration::from_secs(30), owner.next()).await.expect("record in time").expect("next") {
            OwnerEvent::Record(record) => break assert_eq!(&record.payload[..], b"over sasl"),
            other => apply(other, &mut held),
        }
    }
    let started = std::time::Instant::now();
    let refused = KafkaBus::connect(sasl("wrong")).await.err().expect("a wrong password is refused");
    assert!(refused.to_string().contains("Authentication failed"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(45), "refused only after {:?}", started.elapsed());
    let own = KafkaConfig { settings: vec![("enable.auto.commit".into(), "true".into())], ..config(&prefix) };
    assert!(own.check().is_err(), "a setting Starling's guarantees rest on is not the operator's");
}

/// Nodes configured with another partition count than the existing owners topic's are refused:
/// they would send users' records to other owners than the rest of the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_count_other_than_the_topics_is_refused() {
    let prefix = contract::unique_prefix();
    drop(connect(&prefix).await);
    let other = KafkaConfig { partitions: 8, ..config(&prefix) };
    let refused = KafkaBus::connect(other).await.err().expect("refused");
    assert!(refused.to_string().contains("has 4 partitions but [cluster] partitions = 8"), "{refused}");
}

/// A session timeout the brokers' group coordinator would refuse stops a session node at once,
/// saying which broker setting is in the way (scripts/infra/kafka's minimum is 1,000 ms), instead
/// of a node that retries its join for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_timeout_below_the_brokers_minimum_is_refused() {
    let prefix = contract::unique_prefix();
    let bus = KafkaBus::connect(KafkaConfig { session_timeout: Some(Duration::from_millis(500)), ..config(&prefix) }).await.expect("connect");
    let refused = bus.join_owners("s1").await.err().expect("refused");
    assert!(refused.to_string().contains("below the Kafka brokers' group.min.session.timeout.ms (1000)"), "{refused}");
    let accepted = KafkaBus::connect(KafkaConfig { session_timeout: Some(Duration::from_millis(1500)), ..config(&prefix) }).await.expect("connect");
    accepted.join_owners("s1").await.expect("1.5 s is within the brokers' limits");
    let chosen = KafkaBus::connect(KafkaConfig { session_timeout: None, ..config(&prefix) }).await.expect("connect");
    chosen.join_owners("s2").await.expect("unset: the shortest the brokers allow, at least 1.5 s");
}

/// Edge inboxes (a topic each) are listed by their node's inbox name and removed, which is how a
/// session node clears the topics of edges gone for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_inboxes_are_listed_and_removed() {
    let prefix = contract::unique_prefix();
    let bus = connect(&prefix).await;
    let inbox = bus.edge_inbox("edge/gone").await.expect("inbox");
    drop(inbox);
    let name = bus.inbox_name("edge/gone");
    assert_eq!(name, "edge_gone", "a node id is made a topic name");
    assert_eq!(bus.edge_inboxes().await.expect("listed"), vec![name.clone()]);
    bus.remove_edge_inbox(&name).await.expect("removed");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !bus.edge_inboxes().await.expect("listed").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the topic is still listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bus.remove_edge_inbox(&name).await.expect("removing it again is no error");
}

fn apply(event: OwnerEvent, held: &mut BTreeSet<u32>) {
    match event {
        OwnerEvent::Assigned(more) => held.extend(more),
        OwnerEvent::Revoked(less) => less.iter().for_each(|p| {
            held.remove(p);
        }),
        OwnerEvent::Record(_) => {}
    }
}

/// Polls `owner` until it holds exactly `expected` partitions.
async fn hold(owner: &mut dyn OwnerInbox, held: &mut BTreeSet<u32>, expected: usize) {
    while held.len() != expected {
        apply(tokio::time::timeout(Duration::from_secs(60), owner.next()).await.expect("rebalance in time").expect("next"), held);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_split_between_owners_and_move_when_one_leaves() {
    let prefix = contract::unique_prefix();
    let bus = connect(&prefix).await;
    let (mut first, mut first_held) = (bus.join_owners("session-a").await.expect("join"), BTreeSet::new());
    hold(first.as_mut(), &mut first_held, 4).await;

    let (mut second, mut second_held) = (bus.join_owners("session-b").await.expect("join"), BTreeSet::new());
    // Both must keep polling for the cooperative rebalance to finish (it takes two rounds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first_held.len() != 2 || second_held.len() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "no even split in time: {first_held:?} / {second_held:?}");
        tokio::select! {
            event = first.next() => apply(event.expect("next"), &mut first_held),
            event = second.next() => apply(event.expect("next"), &mut second_held),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    assert!(first_held.is_disjoint(&second_held), "one owner per partition: {first_held:?} / {second_held:?}");

    // A record for each of the second's partitions, not committed; then the second leaves.
    for &partition in &second_held {
        bus.publish_owner(partition, Bytes::from(format!("{prefix}/{partition}"))).await.expect("publish").await.expect("durable");
    }
    drop(second);
    hold(first.as_mut(), &mut first_held, 4).await;
    let mut replayed = BTreeSet::new();
    while replayed.len() < second_held.len() {
        if let OwnerEvent::Record(record) = tokio::time::timeout(Duration::from_secs(60), first.next()).await.expect("record in time").expect("next") {
            replayed.insert(record.partition);
        }
    }
    assert_eq!(replayed, second_held, "the survivor gets the departed owner's uncommitted records");
}
