//! Private XML Storage (XEP-0049): `<query xmlns='jabber:iq:private'/>` holding one element in a
//! namespace of the client's choosing, stored per user under its name and namespace.

use starling_xml::Element;

use super::{PayloadError, expect};
use crate::ns;

/// A private storage get, set or result (XEP-0049 §2). `payload` is `None` for an empty query,
/// which a server answers with `not-acceptable` (§2: a child MUST be included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrivateQuery {
    pub payload: Option<Element>,
}

impl PrivateQuery {
    /// The storage key of the payload: its name and namespace.
    pub fn key(&self) -> Option<(&str, &str)> {
        self.payload.as_ref().map(|p| (p.name(), p.ns()))
    }
}

impl TryFrom<&Element> for PrivateQuery {
    type Error = PayloadError;

    /// Refuses, as the server always has, more than one child (one namespace per request, §2) and
    /// a child in no namespace or in a `jabber:` one (reserved, §3), both `not-acceptable`.
    fn try_from(element: &Element) -> Result<PrivateQuery, PayloadError> {
        expect(element, "query", ns::PRIVATE)?;
        let mut children = element.children();
        let payload = match (children.next(), children.next()) {
            (None, _) => return Ok(PrivateQuery { payload: None }),
            (Some(only), None) => only,
            (Some(_), Some(_)) => return Err(PayloadError::NotAcceptable("more than one private storage element")),
        };
        if payload.ns().is_empty() || payload.ns().starts_with("jabber:") {
            return Err(PayloadError::NotAcceptable("reserved private storage namespace"));
        }
        Ok(PrivateQuery { payload: Some(payload.clone()) })
    }
}

impl From<&PrivateQuery> for Element {
    fn from(query: &PrivateQuery) -> Element {
        let element = Element::new("query", ns::PRIVATE);
        match &query.payload {
            Some(payload) => element.with_child(payload.clone()),
            None => element,
        }
    }
}

impl From<PrivateQuery> for Element {
    fn from(query: PrivateQuery) -> Element {
        Element::from(&query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaErrorCondition;
    use crate::payload::test_support::{reparse, xml};

    /// XEP-0049 §2, "Client Stores Private Data" and "Client Retrieves Private Data".
    #[test]
    fn reads_the_xep_0049_examples() {
        let stored = PrivateQuery::try_from(&xml("<query xmlns=\"jabber:iq:private\">
            <exodus xmlns=\"exodus:prefs\">
              <defaultnick>Hamlet</defaultnick>
            </exodus>
          </query>"))
        .expect("set");
        assert_eq!(stored.key(), Some(("exodus", "exodus:prefs")));
        assert_eq!(PrivateQuery::try_from(&reparse(&Element::from(&stored))).as_ref(), Ok(&stored));
        let get =
            PrivateQuery::try_from(&xml("<query xmlns=\"jabber:iq:private\"><exodus xmlns=\"exodus:prefs\"/></query>"))
                .expect("get");
        assert_eq!(get.key(), stored.key());
        assert_eq!(PrivateQuery::try_from(&xml("<query xmlns='jabber:iq:private'/>")), Ok(PrivateQuery::default()));
    }

    /// XEP-0049 §3 "User Attempts to Get or Set Data in a Reserved Namespace", and two children.
    #[test]
    fn refusals() {
        let bad = |children: &str| {
            PrivateQuery::try_from(&xml(&format!("<query xmlns='jabber:iq:private'>{children}</query>")))
                .map_err(|e| e.condition())
        };
        assert_eq!(bad("<a xmlns='x:a'/><b xmlns='x:b'/>"), Err(StanzaErrorCondition::NotAcceptable));
        assert_eq!(bad("<x xmlns='jabber:x:data'/>"), Err(StanzaErrorCondition::NotAcceptable));
        assert_eq!(bad("<a xmlns=''/>"), Err(StanzaErrorCondition::NotAcceptable));
    }
}
