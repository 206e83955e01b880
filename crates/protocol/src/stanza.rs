//! The routing view of a stanza: what the router needs (kind, addresses, id, type) parsed once,
//! the rest carried as the self-contained bytes the edge produced. Handlers that need the payload
//! call [`Stanza::element`].

use bytes::Bytes;
use starling_xml::{Element, ParseError, RawElement};

use crate::error::StanzaError;
use crate::jid::Jid;
use crate::ns;

/// The three stanza kinds of RFC 6120 §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    pub fn from_name(name: &str) -> Option<StanzaKind> {
        match name {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        }
    }
}

/// A stanza with a known sender. `bytes` always declare `xmlns='jabber:client'` and carry `from`.
#[derive(Debug, Clone)]
pub struct Stanza {
    pub kind: StanzaKind,
    pub from: Jid,
    pub to: Option<Jid>,
    pub id: Option<String>,
    pub stanza_type: Option<String>,
    pub bytes: Bytes,
}

impl Stanza {
    /// Builds a stanza from an element the server made or changed. The element's own `from`, `to`,
    /// `id` and `type` attributes are authoritative; `from` must be set.
    pub fn from_element(element: &Element) -> Result<Stanza, StanzaBuildError> {
        let kind = StanzaKind::from_name(element.name()).ok_or(StanzaBuildError::NotAStanza)?;
        if element.ns() != ns::CLIENT {
            return Err(StanzaBuildError::NotAStanza);
        }
        let from = element.attr("from").ok_or(StanzaBuildError::NoSender)?;
        let from = Jid::new(from).map_err(|_| StanzaBuildError::BadAddress)?;
        let to = element.attr("to").map(Jid::new).transpose().map_err(|_| StanzaBuildError::BadAddress)?;
        Ok(Stanza {
            kind,
            from,
            to,
            id: element.attr("id").map(str::to_owned),
            stanza_type: element.attr("type").map(str::to_owned),
            bytes: Bytes::from(element.to_bytes()),
        })
    }

    /// Parses the payload. Costs a full parse: the routing path never calls it.
    pub fn element(&self) -> Result<Element, ParseError> {
        Element::parse(&self.bytes)
    }

    pub fn type_is(&self, value: &str) -> bool {
        self.stanza_type.as_deref() == Some(value)
    }

    /// IQ requests (`get`/`set`) demand a response; results and errors must never get one.
    pub fn is_iq_request(&self) -> bool {
        self.kind == StanzaKind::Iq && (self.type_is("get") || self.type_is("set"))
    }

    /// An error stanza: RFC 6120 §8.3.1 forbids answering it with another error.
    pub fn is_error(&self) -> bool {
        self.type_is("error")
    }
}

/// Why an element could not become a [`Stanza`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StanzaBuildError {
    #[error("not a jabber:client stanza")]
    NotAStanza,
    #[error("stanza has no sender")]
    NoSender,
    #[error("stanza address is not a valid JID")]
    BadAddress,
}

impl Stanza {
    /// A stanza the server builds: `element` gets `from` and `to` set from the arguments.
    pub fn build(mut element: Element, from: &Jid, to: Option<&Jid>) -> Stanza {
        let kind = StanzaKind::from_name(element.name()).unwrap_or(StanzaKind::Message);
        element.set_attr("from", from.as_str());
        match to {
            Some(to) => element.set_attr("to", to.as_str()),
            None => {
                element.remove_attr("to");
            }
        }
        Stanza {
            kind,
            from: from.clone(),
            to: to.cloned(),
            id: element.attr("id").map(str::to_owned),
            stanza_type: element.attr("type").map(str::to_owned),
            bytes: Bytes::from(element.to_bytes()),
        }
    }

    /// A stanza read from a stream whose default namespace is not `jabber:client` (a component's,
    /// another server's): the same element, moved into `jabber:client`, with the addresses the
    /// caller read and checked.
    pub fn from_foreign_stream(element: &RawElement, kind: StanzaKind, from: Jid, to: Jid) -> Stanza {
        Stanza {
            kind,
            from,
            to: Some(to),
            id: element.attr("id").map(str::to_owned),
            stanza_type: element.attr("type").map(str::to_owned),
            bytes: element.rewrite_in(ns::CLIENT, &[]),
        }
    }

    /// This stanza written for a stream whose default namespace is not `jabber:client` (a
    /// component's, another server's): the same elements, with no declaration where the namespace
    /// is `jabber:client`, so that they take that stream's default. `None` if the bytes do not
    /// parse (never for what the server built).
    pub fn to_foreign_stream(&self) -> Option<Bytes> {
        let element = self.element().ok()?;
        let mut out = Vec::with_capacity(self.bytes.len());
        element.write_in_ns(&mut out, ns::CLIENT);
        Some(Bytes::from(out))
    }

    /// The `result` answering this IQ request, sent by `responder`.
    pub fn iq_result(&self, responder: &Jid, payload: Option<Element>) -> Stanza {
        let mut iq = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        if let Some(id) = &self.id {
            iq.set_attr("id", id.as_str());
        }
        if let Some(payload) = payload {
            iq.push_child(payload);
        }
        Stanza::build(iq, responder, Some(&self.from))
    }

    /// The error answering this stanza, sent by `responder`; `None` for an error stanza, which
    /// must never be answered with another (RFC 6120 §8.3.1).
    pub fn error_reply(&self, responder: &Jid, error: &StanzaError) -> Option<Stanza> {
        if self.is_error() {
            return None;
        }
        let mut reply = Element::new(self.kind.as_str(), ns::CLIENT).with_attr("type", "error");
        if let Some(id) = &self.id {
            reply.set_attr("id", id.as_str());
        }
        reply.push_child(error.to_element());
        Some(Stanza::build(reply, responder, Some(&self.from)))
    }

    /// This stanza with `to` replaced (re-serialised: for fan-out of presence, not the message path).
    pub fn readdressed(&self, to: &Jid) -> Stanza {
        match self.element() {
            Ok(element) => Stanza::build(element, &self.from, Some(to)),
            Err(_) => Stanza { to: Some(to.clone()), ..self.clone() },
        }
    }

    /// This stanza with `child` appended as the last child of the top-level element (e.g. a
    /// `<delay/>` stamp). Works on the bytes: the stanza is not re-serialised.
    pub fn with_appended_child(&self, child: &Element) -> Stanza {
        let mut bytes = Vec::with_capacity(self.bytes.len() + 96);
        let name = self.kind.as_str();
        if self.bytes.ends_with(b"/>") && !self.bytes.ends_with(format!("</{name}>").as_bytes()) {
            bytes.extend_from_slice(&self.bytes[..self.bytes.len() - 2]);
            bytes.push(b'>');
            child.write_in_ns(&mut bytes, ns::CLIENT);
            bytes.extend_from_slice(format!("</{name}>").as_bytes());
        } else {
            let close = self.bytes.len().saturating_sub(name.len() + 3);
            bytes.extend_from_slice(&self.bytes[..close]);
            child.write_in_ns(&mut bytes, ns::CLIENT);
            bytes.extend_from_slice(&self.bytes[close..]);
        }
        Stanza { bytes: Bytes::from(bytes), ..self.clone() }
    }

    /// This stanza stamped with a XEP-0203 delay from `from` at `micros` since the Unix epoch.
    pub fn with_delay(&self, from: &Jid, micros: u64) -> Stanza {
        let delay = Element::new("delay", ns::DELAY).with_attr("from", from.as_str()).with_attr("stamp", crate::datetime::format(micros));
        self.with_appended_child(&delay)
    }

    /// Whether `from` stamped this stanza with a XEP-0203 delay.
    pub fn has_delay_from(&self, from: &Jid) -> bool {
        // Parsed only when a delay is mentioned at all.
        self.mentions(ns::DELAY)
            && self.element().is_ok_and(|element| element.children().any(|child| child.is("delay", ns::DELAY) && child.attr("from") == Some(from.as_str())))
    }

    /// A cheap test for whether `text` (a namespace, an element's start) appears anywhere in the
    /// stanza's bytes, to skip a full parse when it cannot matter.
    pub fn mentions(&self, text: &str) -> bool {
        let needle = text.as_bytes();
        self.bytes.windows(needle.len()).any(|w| w == needle)
    }
}
