//! What tracing costs a stanza on the hot path, single thread: the edge's sampling decision and,
//! for a sampled stanza, its span, its `traceparent` for the record, and a next node continuing it.
//! First with no exporter (`[telemetry] otlp_endpoint` empty: the default), then with one at the
//! given sample ratio (the exporter's endpoint is a closed port: its thread fails in the
//! background; what is measured is what the stanza's path pays).
//!
//! ```text
//! cargo bench -p starling-telemetry --bench traces -- [sample-ratio, default 0.01] [iterations]
//! ```

use std::hint::black_box;
use std::time::Instant;

use starling_telemetry::traces::{start_export, KeyValue, StanzaSpan, TraceSettings};

const RUNS: usize = 7;

/// Median and fastest of `RUNS` runs, in ns per call.
fn measure(iterations: u64, mut step: impl FnMut()) -> (f64, f64) {
    for _ in 0..iterations / 10 {
        step();
    }
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                step();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[RUNS / 2], runs[0])
}

fn line(what: &str, (median, fastest): (f64, f64)) {
    println!("{what:<64} {median:>8.0} ns/stanza (fastest run {fastest:>6.0})");
}

/// The edge's part: a span (if sampled) and the record's traceparent.
fn edge() {
    let span = StanzaSpan::start("starling.edge.receive", Instant::now(), || {
        vec![KeyValue::new("xmpp.stanza", "message"), KeyValue::new("xmpp.type", "chat"), KeyValue::new("xmpp.id", "5c1f9a2e")]
    });
    black_box(span.traceparent());
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let ratio: f64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(0.01);
    let iterations: u64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(200_000);
    line("no exporter: the edge's part", measure(iterations, edge));
    line("no exporter: a record's empty traceparent continued", measure(iterations, || drop(black_box(StanzaSpan::continued("s", black_box(""), Vec::new)))));
    let export = start_export(&TraceSettings { endpoint: "http://127.0.0.1:9/v1/traces", sample_ratio: ratio, node: "bench", role: "edge" }).expect("exporter");
    line(&format!("exporter, ratio {ratio}: the edge's part"), measure(iterations, edge));
    let sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    line("exporter: a sampled record continued (span + its traceparent)", measure(iterations, || {
        let span = StanzaSpan::continued("starling.session.handle", black_box(sampled), Vec::new);
        black_box(span.traceparent());
    }));
    drop(export);
}
