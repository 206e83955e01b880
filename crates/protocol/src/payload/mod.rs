//! Typed IQ payloads: each XEP's (or RFC 6121's) elements as plain data, parsed with
//! `TryFrom<&Element>` and serialised with `From<T> for Element`, one module per payload family.
//!
//! Parsing says *why* an element is not a valid payload with a [`PayloadError`], which also names
//! the stanza error condition a server answers with, so a handler can reply without re-deciding
//! what the specification says. Parsers refuse what is syntactically wrong; what depends on state
//! (does this item exist, may this user do that) stays with the caller.

use starling_xml::Element;

use crate::error::StanzaErrorCondition;
use crate::jid::Jid;

pub mod blocking;
pub mod data_form;
pub mod disco;
pub mod external_services;
pub mod http_upload;
pub mod iot_discovery;
pub mod last;
pub mod mam;
pub mod muc;
pub mod ping;
pub mod private;
pub mod pubsub;
pub mod push;
pub mod register;
pub mod reporting;
pub mod roster;
pub mod rsm;
pub mod time;
pub mod version;

pub use blocking::{Block, Blocklist, Unblock};
pub use data_form::{DataForm, Field, FieldOption, FieldType, FormType};
pub use disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItem, DiscoItemsQuery, DiscoItemsResult, Identity};
pub use external_services::{ExternalService, ExternalServices, ExternalServicesQuery};
pub use http_upload::{UploadRequest, UploadSlot};
pub use last::LastActivity;
pub use mam::{ArchiveEnd, MamDefault, MamFilter, MamFin, MamMetadata, MamPrefs, MamQuery};
pub use ping::Ping;
pub use private::PrivateQuery;
pub use push::{PushDisable, PushEnable, PushSummary};
pub use register::RegisterQuery;
pub use roster::{RosterItem, RosterQuery, Subscription};
pub use rsm::{RsmFirst, RsmSet};
pub use time::EntityTime;
pub use version::SoftwareVersion;

/// Why an element is not a valid payload. Each variant maps to the stanza error condition the
/// specification names for it ([`PayloadError::condition`]); most are `bad-request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not the element this type reads (wrong name or namespace).
    #[error("expected <{name} xmlns='{ns}'/>, got <{found}/>")]
    UnexpectedElement { name: &'static str, ns: &'static str, found: String },
    /// A required attribute is absent.
    #[error("<{element}/> has no '{attribute}' attribute")]
    MissingAttribute { element: &'static str, attribute: &'static str },
    /// A required child element is absent.
    #[error("<{element}/> has no <{child}/>")]
    MissingChild { element: &'static str, child: &'static str },
    /// A value that is not of its type (a number, a boolean, a date, an enumerated name).
    #[error("invalid {what}: {value:?}")]
    InvalidValue { what: &'static str, value: String },
    /// A value that may appear once appears again, or a field that takes one value has several.
    #[error("duplicate {what}: {value:?}")]
    Duplicate { what: &'static str, value: String },
    /// An address that is absent or not a JID (RFC 7622): `jid-malformed`.
    #[error("malformed JID {value:?} in {what}")]
    MalformedJid { what: &'static str, value: String },
    /// Well-formed but refused as the specification says (`not-acceptable`), e.g. an empty roster
    /// group (RFC 6121 §2.3.3) or a reserved private-storage namespace (XEP-0049 §3).
    #[error("not acceptable: {0}")]
    NotAcceptable(&'static str),
    /// Something the specification allows a server not to support, or a field it does not know
    /// (`feature-not-implemented`, e.g. XEP-0313 §4.1.5, XEP-0059 §2.5).
    #[error("not implemented: {0}")]
    Unsupported(String),
    /// A reference to an item that cannot exist (`item-not-found`, e.g. an archive id that is not
    /// of the archive's form, XEP-0313 §4.3.2).
    #[error("no such item: {0:?}")]
    UnknownItem(String),
}

impl PayloadError {
    /// The stanza error condition to answer with (RFC 6120 §8.3.3).
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            PayloadError::UnexpectedElement { .. }
            | PayloadError::MissingAttribute { .. }
            | PayloadError::MissingChild { .. }
            | PayloadError::InvalidValue { .. }
            | PayloadError::Duplicate { .. } => StanzaErrorCondition::BadRequest,
            PayloadError::MalformedJid { .. } => StanzaErrorCondition::JidMalformed,
            PayloadError::NotAcceptable(_) => StanzaErrorCondition::NotAcceptable,
            PayloadError::Unsupported(_) => StanzaErrorCondition::FeatureNotImplemented,
            PayloadError::UnknownItem(_) => StanzaErrorCondition::ItemNotFound,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: impl Into<String>) -> PayloadError {
        PayloadError::InvalidValue { what, value: value.into() }
    }
}

/// Refuses an element that is not `name` in `ns`.
pub(crate) fn expect(element: &Element, name: &'static str, ns: &'static str) -> Result<(), PayloadError> {
    if element.is(name, ns) {
        Ok(())
    } else {
        Err(PayloadError::UnexpectedElement { name, ns, found: format!("{} xmlns='{}'", element.name(), element.ns()) })
    }
}

/// The JID in `attribute`; absent or malformed are both `jid-malformed`, as the server has always
/// answered for roster and blocking items.
pub(crate) fn jid_attr(element: &Element, attribute: &str, what: &'static str) -> Result<Jid, PayloadError> {
    let value = element.attr(attribute).unwrap_or_default();
    Jid::new(value).map_err(|_| PayloadError::MalformedJid { what, value: value.to_owned() })
}

/// An `xs:boolean` attribute (`true`/`1`, `false`/`0`); absent is `default`.
pub(crate) fn bool_attr(
    element: &Element,
    attribute: &str,
    what: &'static str,
    default: bool,
) -> Result<bool, PayloadError> {
    match element.attr(attribute) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(PayloadError::invalid(what, other)),
    }
}

/// A non-negative integer, surrounding whitespace allowed.
pub(crate) fn parse_count(text: &str, what: &'static str) -> Result<usize, PayloadError> {
    text.trim().parse().map_err(|_| PayloadError::invalid(what, text))
}

/// The text of the first child `name` in `ns`, if there is one.
pub(crate) fn child_text(element: &Element, name: &str, ns: &str) -> Option<String> {
    element.get_child(name, ns).map(Element::text)
}

/// A child `name` in `ns` with `text`, when there is text to write.
pub(crate) fn text_element(name: &str, ns: &str, text: &str) -> Element {
    let element = Element::new(name, ns);
    if text.is_empty() { element } else { element.with_text(text) }
}

#[cfg(test)]
pub(crate) mod test_support {
    use starling_xml::Element;

    /// Parses a test document; tests feed only well-formed XML.
    pub fn xml(text: &str) -> Element {
        match Element::parse(text.as_bytes()) {
            Ok(element) => element,
            Err(error) => panic!("test XML does not parse: {error}: {text}"),
        }
    }

    /// Serialises and parses again: what a peer would read from our bytes.
    pub fn reparse(element: &Element) -> Element {
        xml(&String::from_utf8_lossy(&element.to_bytes()))
    }
}

#[cfg(test)]
mod robustness;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_the_specifications() {
        assert_eq!(PayloadError::invalid("max", "-1").condition(), StanzaErrorCondition::BadRequest);
        assert_eq!(
            PayloadError::MalformedJid { what: "item", value: "@".into() }.condition(),
            StanzaErrorCondition::JidMalformed
        );
        assert_eq!(PayloadError::NotAcceptable("empty group").condition(), StanzaErrorCondition::NotAcceptable);
        assert_eq!(PayloadError::Unsupported("x".into()).condition(), StanzaErrorCondition::FeatureNotImplemented);
        assert_eq!(PayloadError::UnknownItem("x".into()).condition(), StanzaErrorCondition::ItemNotFound);
        let wrong = expect(&Element::new("query", "jabber:iq:roster"), "ping", crate::ns::PING);
        assert!(matches!(wrong, Err(PayloadError::UnexpectedElement { name: "ping", .. })));
    }
}
