//! What one in-process hop through the cluster seams costs per stanza, for the decision whether the
//! single-process role `all` should route through the same traits as a cluster (`MemoryBus`)
//! instead of straight into actor mailboxes. Single thread, one stanza at a time, a typical
//! ~250-byte chat message:
//!
//! - the envelope: `OwnerRecord::FromClient` and `OwnerRecord::Deliver` encoded and decoded (what
//!   every hop through any bus adds), `EdgeRecord` for the way back, and a JID parse on its own
//!   (decoding checks every address);
//! - `MemoryBus`: `publish_owner` then the owner inbox's `next` (committing every 1,024 records),
//!   with the bytes already encoded, then the whole hop (encode, publish, consume, decode);
//! - for scale, a bounded tokio channel's send + receive (roughly what a mailbox hop costs).
//!
//! ```text
//! cargo bench -p starling-cluster --bench hop_cost -- [iterations]
//! ```

use std::hint::black_box;
use std::time::Instant;

use starling_cluster::bus::{partition_of, Bus, MemoryBus, OwnerEvent, OwnerInbox};
use starling_cluster::envelope::{EdgeRecord, Origin, OwnerRecord};
use starling_cluster::gateway::ToClient;
use starling_protocol::{Jid, Stanza};

/// Runs of each measurement; the median is reported (and the fastest, the least disturbed).
const RUNS: usize = 7;
/// The server's default number of owner partitions.
const PARTITIONS: u32 = 64;

fn chat_message() -> Stanza {
    let xml = b"<message xmlns='jabber:client' from='alice@example.com/phone-3f2a9c' to='bob@example.com' \
        id='5c1f9a2e-8b7d-4e21-9f3a-0d6c2b1e7a44' type='chat'><body>Still on for lunch tomorrow?</body>\
        <active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let element = starling_xml::Element::parse(xml).expect("xml");
    Stanza::from_element(&element).expect("stanza")
}

/// Times `iterations` calls of `step` (after a tenth as many to warm up), `RUNS` times; returns
/// (median, fastest) in ns per call.
fn measure(iterations: u64, mut step: impl FnMut(u64)) -> (f64, f64) {
    for i in 0..iterations / 10 {
        step(i);
    }
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                step(i);
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[RUNS / 2], runs[0])
}

fn line(what: &str, (median, fastest): (f64, f64)) {
    println!("{what:<62} {median:>8.0} ns/stanza (fastest run {fastest:>6.0})");
}

/// [`measure`] for a body that awaits, run inline on the current task: `$i` counts the steps.
macro_rules! measure_async {
    ($iterations:expr, |$i:ident| $body:block) => {{
        let mut step: u64 = 0;
        for _ in 0..$iterations / 10 {
            let $i = step;
            $body
            step += 1;
        }
        let mut runs = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now();
            for _ in 0..$iterations {
                let $i = step;
                $body
                step += 1;
            }
            runs.push(start.elapsed().as_nanos() as f64 / $iterations as f64);
        }
        runs.sort_by(f64::total_cmp);
        (runs[RUNS / 2], runs[0])
    }};
}

/// The owner inbox's next record (the first call also yields the assignment).
async fn next_record(inbox: &mut dyn OwnerInbox) -> starling_cluster::bus::Record {
    loop {
        if let OwnerEvent::Record(record) = inbox.next().await.expect("owner inbox") {
            return record;
        }
    }
}

fn main() {
    let iterations: u64 = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(200_000);
    let stanza = chat_message();
    let resource = stanza.from.clone();
    let received = Instant::now();
    let origin = Origin::new("bench-node");
    println!("{iterations} stanzas per run, {RUNS} runs, stanza of {} bytes", stanza.bytes.len());

    // The envelope.
    let from_client = OwnerRecord::FromClient { resource: resource.clone(), connection: 42, stanza: stanza.clone(), received };
    let deliver = OwnerRecord::Deliver { stanza: stanza.clone(), received, cause: Some(u64::MAX) };
    let to_edge = EdgeRecord { connection: 42, message: ToClient::Stanza(stanza.bytes.clone(), None) };
    let encoded = from_client.encode(&origin);
    println!("FromClient record: {} bytes; Deliver record: {} bytes", encoded.len(), deliver.encode(&origin).len());
    line("FromClient encode", measure(iterations, |_| drop(black_box(black_box(&from_client).encode(&origin)))));
    line("FromClient decode", measure(iterations, |_| drop(black_box(OwnerRecord::decode(black_box(encoded.clone())).expect("decode")))));
    line(
        "FromClient encode + decode",
        measure(iterations, |_| drop(black_box(OwnerRecord::decode(black_box(&from_client).encode(&origin)).expect("decode")))),
    );
    line(
        "Deliver encode + decode",
        measure(iterations, |_| drop(black_box(OwnerRecord::decode(black_box(&deliver).encode(&origin)).expect("decode")))),
    );
    line(
        "EdgeRecord (stanza to a connection) encode + decode",
        measure(iterations, |_| drop(black_box(EdgeRecord::decode(black_box(&to_edge).encode(&origin, String::new())).expect("decode")))),
    );
    line("one JID parse (decoding checks 3 in FromClient, 2 in Deliver)", measure(iterations, |_| drop(black_box(Jid::new(black_box("alice@example.com/phone-3f2a9c")).expect("jid")))));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // MemoryBus, one partition busy (one recipient), and spread over every partition (many).
        let users: Vec<String> = (0..1024).map(|n| format!("user{n}@example.com")).collect();
        for (what, spread) in [("MemoryBus publish_owner + next, one partition", false), ("MemoryBus publish_owner + next, 64 partitions", true)] {
            let bus = MemoryBus::new(PARTITIONS);
            let mut inbox = bus.join_owners("bench").await.expect("join");
            let one = partition_of("bob@example.com", PARTITIONS);
            let partitions: Vec<u32> = users.iter().map(|user| if spread { partition_of(user, PARTITIONS) } else { one }).collect();
            let result = measure_async!(iterations, |i| {
                bus.publish_owner(partitions[(i % 1024) as usize], encoded.clone()).await.expect("published").await.expect("durable");
                let record = next_record(inbox.as_mut()).await;
                if i % 1024 == 1023 {
                    inbox.commit(&[(record.partition, record.offset)]).await.expect("commit");
                }
                black_box(record);
            });
            line(what, result);
        }

        // The whole hop: encode, publish, consume, decode.
        let bus = MemoryBus::new(PARTITIONS);
        let mut inbox = bus.join_owners("bench").await.expect("join");
        let partition = partition_of("bob@example.com", PARTITIONS);
        let result = measure_async!(iterations, |i| {
            bus.publish_owner(partition, deliver.encode(&origin)).await.expect("published").await.expect("durable");
            let record = next_record(inbox.as_mut()).await;
            if i % 1024 == 1023 {
                inbox.commit(&[(record.partition, record.offset)]).await.expect("commit");
            }
            black_box(OwnerRecord::decode(record.payload).expect("decode"));
        });
        line("whole Deliver hop: encode + MemoryBus + decode", result);

        // For scale: a bounded channel hop carrying the stanza as it is (no encoding).
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<(Stanza, Instant)>(256);
        let result = measure_async!(iterations, |_i| {
            sender.send((stanza.clone(), received)).await.expect("sent");
            black_box(receiver.recv().await.expect("received"));
        });
        line("for scale: tokio mpsc send + recv of the Stanza", result);
    });
    println!("(budget: 15 us of one core per delivered message; 100 ns = 0.67 %)");
}
