//! Arbitrary bytes as one WebSocket message (RFC 7395), read as the WebSocket framing reads it: a
//! fragment reader, no stream wrapper. It must end in elements and an error, never a panic or a
//! hang, and every element it frames must parse once made self-contained.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_xml::{Element, Limits, StreamEvent, StreamReader};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_stanza_bytes: 4096, max_depth: 16, max_attributes: 16 };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = StreamReader::fragment(data, limits);
        for _ in 0..10_000 {
            match reader.next().await {
                Ok(StreamEvent::Element(raw)) => {
                    let ns = if raw.ns.is_empty() { "jabber:client" } else { raw.ns.as_str() };
                    let rewritten = raw.rewrite_in(ns, &[("from", Some("a@b/c"))]);
                    assert!(Element::parse_with_limits(&rewritten, &Limits { max_stanza_bytes: 1 << 20, ..limits }).is_ok(), "{:?}", String::from_utf8_lossy(&rewritten));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
});
