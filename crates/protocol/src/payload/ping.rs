//! XMPP Ping (XEP-0199): `<ping xmlns='urn:xmpp:ping'/>`, answered by an empty result.

use starling_xml::Element;

use super::{PayloadError, expect};
use crate::ns;

/// A ping request (XEP-0199 §3–§4). Its answer is an empty IQ result ("pong").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ping;

impl TryFrom<&Element> for Ping {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<Ping, PayloadError> {
        expect(element, "ping", ns::PING).map(|()| Ping)
    }
}

impl From<Ping> for Element {
    fn from(_: Ping) -> Element {
        Element::new("ping", ns::PING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_support::xml;

    /// XEP-0199 §4.2, "Ping".
    #[test]
    fn reads_the_xep_0199_example() {
        assert_eq!(Ping::try_from(&xml("<ping xmlns='urn:xmpp:ping'/>")), Ok(Ping));
        assert_eq!(Element::from(Ping).to_bytes(), b"<ping xmlns='urn:xmpp:ping'/>");
        assert!(Ping::try_from(&xml("<ping xmlns='urn:xmpp:pong'/>")).is_err());
    }
}
