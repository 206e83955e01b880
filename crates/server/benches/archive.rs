//! Archive benchmark (issue 4): writes a generated archive through the same pipelined writer the
//! server uses, then measures MAM page reads at the newest end and deep in history.
//!
//! ```text
//! cargo bench -p starling-server --bench archive -- [--backend embedded|cassandra]
//!     [--users 1000] [--messages 1000000] [--producers 64] [--queries 2000] [--page 50]
//!     [--contact 127.0.0.1:29042] [--dir /path]
//! ```
//!
//! Every user gets `messages / users` messages spread evenly over the past year (so pages cross
//! time buckets as real ones do), with four contacts in turn, ~260-byte chat stanzas. Writers are
//! `producers` tasks standing in for user actors, each submitting its users' messages in order.
//! Reads are `queries` pages of `page` messages for random users: the newest page (what a client
//! syncing after login asks), and a page ending 90 % of the way back in the user's history.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use starling_backend_scylla::{ScyllaConfig, ScyllaStore};
use starling_cluster::store::{ArchiveEntry, ArchiveQuery, ArchivedMessage, Store};
use starling_session::{ArchiveWriter, ArchiveWriterConfig};
use starling_telemetry::Metrics;

struct Options {
    backend: String,
    users: u64,
    messages: u64,
    producers: u64,
    queries: u64,
    page: usize,
    contact: String,
    dir: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        backend: "embedded".into(),
        users: 1000,
        messages: 1_000_000,
        producers: 64,
        queries: 2000,
        page: 50,
        contact: std::env::var("CASSANDRA_CONTACT").unwrap_or_else(|_| "127.0.0.1:29042".into()),
        dir: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_else(|| panic!("{} needs a value", args[i]));
        let number = || value().parse::<u64>().unwrap_or_else(|_| panic!("{} needs a number", args[i]));
        match args[i].as_str() {
            "--backend" => o.backend = value(),
            "--users" => o.users = number(),
            "--messages" => o.messages = number(),
            "--producers" => o.producers = number(),
            "--queries" => o.queries = number(),
            "--page" => o.page = number() as usize,
            "--contact" => o.contact = value(),
            "--dir" => o.dir = Some(value()),
            // `cargo bench` passes --bench to every bench target.
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn user(n: u64) -> String {
    format!("bench{n:05}@example.com")
}

fn stanza(from: &str, to: &str, n: u64) -> Vec<u8> {
    format!(
        "<message xmlns='jabber:client' from='{from}/phone' to='{to}' type='chat' id='m{n:012}'><body>Message number {n}: \
         a typical short line of chat text, give or take.</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    .into_bytes()
}

fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})", ms(0.5), ms(0.99), h.max() as f64 / 1000.0, h.len())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    let tempdir = tempfile::tempdir().expect("temporary directory");
    let store: Store = match o.backend.as_str() {
        "embedded" => {
            let dir = o.dir.clone().map_or_else(|| tempdir.path().to_path_buf(), Into::into);
            starling_store_embedded::EmbeddedStore::open(&dir).expect("open the embedded store")
        }
        "cassandra" | "scylla" => {
            let keyspace = format!("bench_{}", SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs());
            let credentials = Some(("cassandra".to_owned(), "cassandra".to_owned())); // scripts/infra/cassandra's login
            ScyllaStore::connect(ScyllaConfig { contact_points: vec![o.contact.clone()], keyspace, credentials, ..ScyllaConfig::default() })
                .await
                .expect("connect to Cassandra/ScyllaDB")
        }
        other => panic!("unknown backend {other}"),
    };
    let per_user = o.messages / o.users;
    let total = per_user * o.users;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_micros() as u64;
    let year = 365 * 86_400 * 1_000_000u64;
    let step = year / per_user.max(1);
    let first_id = now - year;
    println!("archive bench: backend {}, {} users x {per_user} messages = {total}, {} producers", o.backend, o.users, o.producers);

    let writer = Arc::new(ArchiveWriter::start(store.archive.clone(), &ArchiveWriterConfig::default(), Metrics::global()));
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..o.producers {
        let writer = writer.clone();
        let (users, producers_n) = (o.users, o.producers);
        producers.spawn(async move {
            // Each producer owns every producers_n-th user and interleaves them, as actors would.
            let mine: Vec<u64> = (p..users).step_by(producers_n as usize).collect();
            for k in 0..per_user {
                for &u in &mine {
                    let (me, peer) = (user(u), user((u + 1 + k % 4) % users));
                    let id = first_id + k * step + u;
                    let message = ArchivedMessage { id, with: peer.clone(), stanza: stanza(&peer, &me, k) };
                    writer.submit(ArchiveEntry { user: me, message }, None).await.expect("archive queue refused a message");
                }
            }
        });
    }
    while let Some(done) = producers.join_next().await {
        done.expect("producer");
    }
    writer.flush().await.expect("flush");
    let write_time = started.elapsed();
    let writes_per_second = total as f64 / write_time.as_secs_f64();
    println!("writes: {total} messages in {:.1} s = {writes_per_second:.0} messages/s", write_time.as_secs_f64());

    let mut newest = Histogram::<u64>::new(3).expect("histogram");
    let mut deep = Histogram::<u64>::new(3).expect("histogram");
    let deep_k = per_user / 10;
    for q in 0..o.queries {
        let u = rand::random::<u64>() % o.users;
        let started = Instant::now();
        let page = store
            .archive
            .query(&user(u), &ArchiveQuery { limit: o.page, from_newest: true, ..ArchiveQuery::default() })
            .await
            .expect("newest page");
        newest.record(started.elapsed().as_micros() as u64).expect("record");
        assert_eq!(page.messages.len(), o.page.min(per_user as usize), "newest page of {}", user(u));

        // The page just before the message 90 % of the way back (the k-th oldest).
        let before = first_id + deep_k * step + u;
        let started = Instant::now();
        let page = store
            .archive
            .query(&user(u), &ArchiveQuery { before: Some(before), limit: o.page, from_newest: true, ..ArchiveQuery::default() })
            .await
            .expect("deep page");
        deep.record(started.elapsed().as_micros() as u64).expect("record");
        assert_eq!(page.messages.len(), o.page.min(deep_k as usize), "deep page {q}");
    }
    println!("newest page ({} messages): {}", o.page, percentiles(&newest));
    println!("deep page ({} messages ending at message {deep_k} of {per_user}): {}", o.page, percentiles(&deep));
    let json = format!(
        "{{\"backend\":\"{}\",\"users\":{},\"messages\":{total},\"write_seconds\":{:.3},\"writes_per_second\":{writes_per_second:.0},\
         \"newest_p50_ms\":{:.3},\"newest_p99_ms\":{:.3},\"deep_p50_ms\":{:.3},\"deep_p99_ms\":{:.3}}}",
        o.backend,
        o.users,
        write_time.as_secs_f64(),
        newest.value_at_quantile(0.5) as f64 / 1000.0,
        newest.value_at_quantile(0.99) as f64 / 1000.0,
        deep.value_at_quantile(0.5) as f64 / 1000.0,
        deep.value_at_quantile(0.99) as f64 / 1000.0,
    );
    println!("{json}");
    drop(writer);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
