//! The inter-node envelope: the prost types generated from `proto/starling/cluster/v1/envelope.proto`
//! and the conversions between its `Stanza` and the routing view `starling_protocol::Stanza`.
//! Decoding checks what the edge guaranteed when it produced the stanza (a valid sender, valid
//! addresses), so a corrupt or hostile record is refused here instead of misrouted later.
//!
//! Only `starling_cluster::envelope` uses this crate: it turns these types into the typed records
//! the rest of the server sees, so nothing else depends on the wire format.

use bytes::Bytes;
use prost::Message;
use starling_protocol::{Jid, StanzaKind};

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/starling.cluster.v1.rs"));
}

pub use v1::Envelope;

/// Why a record could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("undecodable envelope: {0}")]
    Decode(String),
    #[error("envelope without a body")]
    Empty,
    #[error("stanza of unknown kind {0}")]
    Kind(i32),
    #[error("invalid address {0:?}")]
    Address(String),
}

/// Encodes an envelope into the bytes a record carries.
pub fn encode(envelope: &Envelope) -> Bytes {
    Bytes::from(envelope.encode_to_vec())
}

/// Decodes a record's bytes.
pub fn decode(bytes: Bytes) -> Result<Envelope, WireError> {
    let envelope = Envelope::decode(bytes).map_err(|error| WireError::Decode(error.to_string()))?;
    if envelope.body.is_none() {
        return Err(WireError::Empty);
    }
    Ok(envelope)
}

fn optional(value: Option<&str>) -> String {
    value.unwrap_or_default().to_owned()
}

fn present(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn jid(text: &str) -> Result<Jid, WireError> {
    Jid::new(text).map_err(|_| WireError::Address(text.to_owned()))
}

impl v1::Stanza {
    /// The wire form of a routed stanza; `received_us` is the edge's arrival time.
    pub fn from_routed(stanza: &starling_protocol::Stanza, received_us: u64) -> v1::Stanza {
        let kind = match stanza.kind {
            StanzaKind::Message => v1::stanza::Kind::Message,
            StanzaKind::Presence => v1::stanza::Kind::Presence,
            StanzaKind::Iq => v1::stanza::Kind::Iq,
        };
        v1::Stanza {
            kind: kind.into(),
            from: stanza.from.to_string(),
            to: stanza.to.as_ref().map(Jid::to_string).unwrap_or_default(),
            id: optional(stanza.id.as_deref()),
            r#type: optional(stanza.stanza_type.as_deref()),
            bytes: stanza.bytes.clone(),
            received_us,
        }
    }

    /// Back to the routing view, checking the addresses.
    pub fn into_routed(self) -> Result<starling_protocol::Stanza, WireError> {
        let kind = match v1::stanza::Kind::try_from(self.kind) {
            Ok(v1::stanza::Kind::Message) => StanzaKind::Message,
            Ok(v1::stanza::Kind::Presence) => StanzaKind::Presence,
            Ok(v1::stanza::Kind::Iq) => StanzaKind::Iq,
            _ => return Err(WireError::Kind(self.kind)),
        };
        let to = match self.to.as_str() {
            "" => None,
            to => Some(jid(to)?),
        };
        Ok(starling_protocol::Stanza {
            kind,
            from: jid(&self.from)?,
            to,
            id: present(self.id),
            stanza_type: present(self.r#type),
            bytes: self.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza() -> starling_protocol::Stanza {
        let element = starling_xml::Element::parse(b"<message xmlns='jabber:client' from='a@x/r' to='b@x' id='1' type='chat'><body>hi</body></message>").expect("xml");
        starling_protocol::Stanza::from_element(&element).expect("stanza")
    }

    #[test]
    fn envelopes_round_trip_with_the_stanza_bytes_untouched() {
        let original = stanza();
        let envelope = Envelope {
            origin_node: "edge-1".into(),
            origin_seq: 42,
            traceparent: String::new(),
            body: Some(v1::envelope::Body::Deliver(v1::Deliver { stanza: Some(v1::Stanza::from_routed(&original, 7)), cause: None })),
        };
        let decoded = decode(encode(&envelope)).expect("decode");
        assert_eq!(decoded, envelope);
        let Some(v1::envelope::Body::Deliver(v1::Deliver { stanza: Some(wire), .. })) = decoded.body else { panic!("body") };
        assert_eq!(wire.received_us, 7);
        let routed = wire.into_routed().expect("routed");
        assert_eq!((routed.kind, routed.from, routed.to, routed.id, routed.stanza_type), (original.kind, original.from, original.to, original.id, original.stanza_type));
        assert_eq!(routed.bytes, original.bytes);
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(matches!(decode(Bytes::from_static(b"\xff\xff\xff")), Err(WireError::Decode(_))));
        assert_eq!(decode(encode(&Envelope::default())), Err(WireError::Empty));
        let mut wire = v1::Stanza::from_routed(&stanza(), 0);
        wire.from = "@@".into();
        assert!(matches!(wire.clone().into_routed(), Err(WireError::Address(_))));
        wire.from = "a@x".into();
        wire.kind = 9;
        assert_eq!(wire.into_routed().err(), Some(WireError::Kind(9)));
    }
}
