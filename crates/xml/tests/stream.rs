//! The stream reader against RFC 6120's framing rules, fed in arbitrary fragments.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use starling_xml::{Element, FrameError, Limits, StreamEvent, StreamHeader, StreamReader};
use tokio::io::{AsyncRead, ReadBuf};

/// Yields the input in the given fragment sizes, as a slow or adversarial peer would send it.
struct Fragments {
    data: Vec<u8>,
    sizes: Vec<usize>,
    at: usize,
    step: usize,
}

impl AsyncRead for Fragments {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let size = if self.sizes.is_empty() { usize::MAX } else { self.sizes[self.step % self.sizes.len()] };
        let n = size.min(self.data.len() - self.at).min(out.remaining());
        out.put_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        self.step += 1;
        Poll::Ready(Ok(()))
    }
}

fn reader(data: &[u8], sizes: Vec<usize>, limits: Limits) -> StreamReader<Fragments> {
    StreamReader::new(Fragments { data: data.to_vec(), sizes, at: 0, step: 0 }, limits)
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

fn run(body: &str, sizes: Vec<usize>, limits: Limits) -> (Vec<StreamEvent>, Option<FrameError>) {
    let data = format!("{HEADER}{body}");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = reader(data.as_bytes(), sizes, limits);
        let mut events = Vec::new();
        loop {
            match reader.next().await {
                Ok(StreamEvent::Close) => {
                    events.push(StreamEvent::Close);
                    return (events, None);
                }
                Ok(event) => events.push(event),
                Err(error) => return (events, Some(error)),
            }
        }
    })
}

fn elements(events: &[StreamEvent]) -> Vec<&[u8]> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Element(raw) => Some(&raw.bytes[..]),
            _ => None,
        })
        .collect()
}

const STANZAS: [&str; 4] = [
    "<message to='bob@example.com' id='1'><body>hi &amp; &#x263A; <![CDATA[<raw>]]></body></message>",
    "<presence/>",
    "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<message><x:y xmlns:x='urn:x' x:a='1'><x:z/></x:y></message>",
];

#[test]
fn frames_stanzas_with_their_original_bytes() {
    let body = format!("{}\n  {}{} {}</stream:stream>", STANZAS[0], STANZAS[1], STANZAS[2], STANZAS[3]);
    let (events, error) = run(&body, vec![], Limits::default());
    assert!(error.is_none(), "{error:?}");
    match &events[0] {
        StreamEvent::Open(header) => {
            assert_eq!(header.to.as_deref(), Some("example.com"));
            assert_eq!(header.content_ns, "jabber:client");
            assert_eq!(header.lang.as_deref(), Some("en"));
        }
        other => panic!("expected open, got {other:?}"),
    }
    let framed = elements(&events);
    let expected: Vec<&[u8]> = STANZAS.iter().map(|s| s.as_bytes()).collect();
    assert_eq!(framed, expected);
    assert!(matches!(events.last(), Some(StreamEvent::Close)));
}

#[test]
fn rewrite_makes_stanzas_self_contained_and_stamps_attributes() {
    let body = format!("{}</stream:stream>", STANZAS[0]);
    let (events, _) = run(&body, vec![], Limits::default());
    let StreamEvent::Element(raw) = &events[1] else { panic!("no element") };
    assert_eq!(raw.name, "message");
    assert_eq!(raw.ns, "jabber:client");
    assert_eq!(raw.attr("to"), Some("bob@example.com"));
    let stamped = raw.rewrite(&[("from", Some("alice@example.com/r")), ("id", None)]);
    let element = Element::parse(&stamped).expect("self-contained");
    assert_eq!(element.attr("from"), Some("alice@example.com/r"));
    assert_eq!(element.attr("id"), None);
    assert_eq!(element.get_child("body", "jabber:client").map(|b| b.text()), Some("hi & ☺ <raw>".to_owned()));
}

#[test]
fn refuses_dtd_and_entity_expansion() {
    let billion_laughs = "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><message><body>&lol2;</body></message>";
    let (_, error) = run(billion_laughs, vec![], Limits::default());
    assert!(matches!(error, Some(FrameError::Restricted(_))), "{error:?}");
    let (_, error) = run("<message><body>&lol2;</body></message>", vec![], Limits::default());
    assert!(matches!(error, Some(FrameError::Restricted(_))), "{error:?}");
    let (_, error) = run("<message a='&ext;'/>", vec![], Limits::default());
    assert!(matches!(error, Some(FrameError::Restricted(_))), "{error:?}");
}

#[test]
fn refuses_comments_and_processing_instructions() {
    let (_, error) = run("<message><!-- hidden --></message>", vec![], Limits::default());
    assert!(matches!(error, Some(FrameError::Restricted("comment"))), "{error:?}");
    let (_, error) = run("<?php evil ?>", vec![], Limits::default());
    assert!(matches!(error, Some(FrameError::Restricted(_))), "{error:?}");
}

#[test]
fn refuses_malformed_xml() {
    for body in ["<message><body></message>", "<message a='1' a='2'/>", "<message <", "<p:message/>"] {
        let (_, error) = run(body, vec![], Limits::default());
        assert!(matches!(error, Some(FrameError::NotWellFormed(_))), "{body}: {error:?}");
    }
    let (_, error) = run("hello", vec![], Limits::default());
    assert!(error.is_some(), "text at stream level must fail");
}

#[test]
fn enforces_stanza_size_including_one_huge_token() {
    let limits = Limits { max_stanza_bytes: 1024, ..Limits::default() };
    let big_text = format!("<message><body>{}</body></message>", "a".repeat(5000));
    let (_, error) = run(&big_text, vec![], limits);
    assert!(matches!(error, Some(FrameError::LimitExceeded("stanza size"))), "{error:?}");
    let big_attr = format!("<message to='{}'/>", "a".repeat(5000));
    let (_, error) = run(&big_attr, vec![7], limits);
    assert!(matches!(error, Some(FrameError::LimitExceeded("stanza size"))), "{error:?}");
    let whitespace_flood = " ".repeat(5000);
    let (_, error) = run(&whitespace_flood, vec![], limits);
    assert!(matches!(error, Some(FrameError::LimitExceeded("stanza size"))), "{error:?}");
    // Many small stanzas in a row are fine: the bound is per element.
    let many = format!("{}</stream:stream>", "<presence/>".repeat(1000));
    let (events, error) = run(&many, vec![], limits);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(elements(&events).len(), 1000);
}

#[test]
fn enforces_depth_and_attribute_count() {
    let limits = Limits { max_depth: 4, max_attributes: 3, ..Limits::default() };
    let (_, error) = run("<a><b><c><d><e/></d></c></b></a>", vec![], limits);
    assert!(matches!(error, Some(FrameError::LimitExceeded("nesting depth"))), "{error:?}");
    let (_, error) = run("<a><b><c><d/></c></b></a></stream:stream>", vec![], limits);
    assert!(error.is_none(), "{error:?}");
    let (_, error) = run("<a><b p='1' q='2' r='3' s='4'/></a>", vec![], limits);
    assert!(matches!(error, Some(FrameError::LimitExceeded("attribute count"))), "{error:?}");
}

#[test]
fn stream_namespace_and_eof() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut r = reader(b"<stream xmlns='jabber:client'>", vec![], Limits::default());
        assert!(matches!(r.next().await, Err(FrameError::InvalidNamespace)));
        let mut r = reader(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>", vec![], Limits::default());
        assert!(matches!(r.next().await, Err(FrameError::InvalidNamespace)), "content namespace required");
        let mut r = reader(HEADER.as_bytes(), vec![], Limits::default());
        assert!(matches!(r.next().await, Ok(StreamEvent::Open(_))));
        assert!(matches!(r.next().await, Err(FrameError::Closed)));
    });
}

#[test]
fn a_written_stream_header_reads_back_as_the_same_header() {
    let header = StreamHeader {
        from: Some("example.com".into()),
        id: Some("a'b".into()),
        version: Some("1.0".into()),
        lang: Some("en".into()),
        content_ns: "jabber:client".into(),
        ..StreamHeader::default()
    };
    let mut out = Vec::new();
    header.write_start_tag(&mut out);
    assert_eq!(
        out,
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' id='a&apos;b' from='example.com'>"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let read = runtime.block_on(async { reader(&out, vec![], Limits::default()).next().await });
    match read {
        Ok(StreamEvent::Open(read)) => assert_eq!(read, header),
        other => panic!("expected the header back, got {other:?}"),
    }
}

#[test]
fn restart_reads_a_new_header_and_keeps_buffered_bytes() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let data = format!("{HEADER}<auth/>{HEADER}<iq/>");
        let mut r = reader(data.as_bytes(), vec![], Limits::default());
        assert!(matches!(r.next().await, Ok(StreamEvent::Open(_))));
        assert!(matches!(r.next().await, Ok(StreamEvent::Element(e)) if e.name == "auth"));
        let mut r = r.restart();
        assert!(matches!(r.next().await, Ok(StreamEvent::Open(_))));
        assert!(matches!(r.next().await, Ok(StreamEvent::Element(e)) if &e.bytes[..] == b"<iq/>"));
    });
}

#[test]
fn starttls_upgrade_refuses_pipelined_plaintext() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let data = format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let mut r = reader(data.as_bytes(), vec![], Limits::default());
        r.next().await.expect("open");
        r.next().await.expect("starttls");
        assert!(r.into_inner().is_ok());
        let data = format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><injected/>");
        let mut r = reader(data.as_bytes(), vec![], Limits::default());
        r.next().await.expect("open");
        r.next().await.expect("starttls");
        assert!(r.into_inner().is_err());
    });
}

proptest! {
    /// However the bytes are cut, the same elements come out with the same bytes.
    #[test]
    fn fragmentation_does_not_change_framing(sizes in proptest::collection::vec(1usize..40, 1..20)) {
        let body = format!("{}{} {}{}</stream:stream>", STANZAS[0], STANZAS[1], STANZAS[2], STANZAS[3]);
        let (events, error) = run(&body, sizes, Limits::default());
        prop_assert!(error.is_none(), "{:?}", error);
        let expected: Vec<&[u8]> = STANZAS.iter().map(|s| s.as_bytes()).collect();
        prop_assert_eq!(elements(&events), expected);
    }

    /// Arbitrary bytes after a valid header never panic; they end in an event or an error.
    #[test]
    fn arbitrary_input_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..512), sizes in proptest::collection::vec(1usize..64, 1..4)) {
        let mut data = HEADER.as_bytes().to_vec();
        data.extend_from_slice(&garbage);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let mut r = reader(&data, sizes, Limits::default());
            for _ in 0..1000 {
                if r.next().await.is_err() { break; }
            }
        });
    }
}

/// Every event of `frame` read as a fragment (a WebSocket message), up to its end or an error.
fn fragment_events(frame: &str) -> (Vec<StreamEvent>, FrameError) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = StreamReader::fragment(frame.as_bytes(), Limits::default());
        let mut events = Vec::new();
        loop {
            match reader.next().await {
                Ok(event) => events.push(event),
                Err(error) => return (events, error),
            }
        }
    })
}

#[test]
fn a_fragment_is_read_as_top_level_elements_without_a_stream_wrapper() {
    let (events, end) = fragment_events("<message xmlns='jabber:client' to='b@example.com'><body>hi</body></message>");
    assert!(matches!(end, FrameError::Closed));
    let [StreamEvent::Element(message)] = &events[..] else { panic!("one element expected: {events:?}") };
    assert_eq!((message.name.as_str(), message.ns.as_str(), message.attr("to")), ("message", "jabber:client", Some("b@example.com")));
    assert_eq!(&message.bytes[..], b"<message xmlns='jabber:client' to='b@example.com'><body>hi</body></message>");

    let (events, _) = fragment_events("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>");
    assert!(matches!(&events[..], [StreamEvent::Element(open)] if open.name == "open" && open.ns == "urn:ietf:params:xml:ns:xmpp-framing"));
}

#[test]
fn a_fragment_holding_half_an_element_or_two_shows_as_such() {
    let (events, end) = fragment_events("<message xmlns='jabber:client'><body>hi");
    assert!(events.is_empty() && matches!(end, FrameError::Closed), "{events:?} {end:?}");
    let (events, end) = fragment_events("<r xmlns='urn:xmpp:sm:3'/><r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(events.len(), 2);
    assert!(matches!(end, FrameError::Closed));
    // An element with no namespace is reported as such; the framing decides what it means.
    let (events, _) = fragment_events("<presence/>");
    assert!(matches!(&events[..], [StreamEvent::Element(presence)] if presence.ns.is_empty()));
    // The same restrictions as in a stream.
    let (_, end) = fragment_events("<message xmlns='jabber:client'><!-- no --></message>");
    assert!(matches!(end, FrameError::Restricted(_)), "{end:?}");
}

#[test]
fn an_element_using_the_streams_prefix_inside_a_stanza_declares_it_once_it_leaves_the_stream() {
    // Found by fuzzing: the prefix is bound by the stream header, so the stream reads it, but the
    // element alone did not declare it and could not be parsed on its own.
    let (events, _) = run("<message><stream:x/></message><iq id='1' type='get' stream:a='b'/><presence/>", vec![], Limits::default());
    let elements: Vec<_> = events.iter().filter_map(|event| if let StreamEvent::Element(raw) = event { Some(raw) } else { None }).collect();
    assert_eq!(elements.len(), 3);
    for raw in &elements[..2] {
        let alone = raw.rewrite(&[]);
        assert!(Element::parse(&alone).is_ok(), "{}", String::from_utf8_lossy(&alone));
    }
    assert!(!String::from_utf8_lossy(&elements[2].rewrite(&[])).contains("xmlns:stream"), "only where it is used");
}
