//! Arbitrary bytes after a valid stream header, split at a fuzzer-chosen point: the reader must end
//! in an event or an error, never a panic or a hang, and every framed element must parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_xml::{Element, Limits, StreamEvent, StreamReader};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

fuzz_target!(|data: &[u8]| {
    let mut input = HEADER.to_vec();
    input.extend_from_slice(data);
    let limits = Limits { max_stanza_bytes: 4096, max_depth: 16, max_attributes: 16 };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = StreamReader::new(&input[..], limits);
        for _ in 0..10_000 {
            match reader.next().await {
                Ok(StreamEvent::Element(raw)) => {
                    // A framed element, made self-contained, is always a well-formed element.
                    let rewritten = raw.rewrite(&[("from", Some("a@b/c"))]);
                    assert!(Element::parse_with_limits(&rewritten, &Limits { max_stanza_bytes: 1 << 20, ..limits }).is_ok(), "{:?}", String::from_utf8_lossy(&rewritten));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
});
