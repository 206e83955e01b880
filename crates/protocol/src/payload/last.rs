//! Last Activity (XEP-0012): how long ago an account was last active, a client was idle, or a
//! server started, in a `<query xmlns='jabber:iq:last' seconds='…'/>` result.

use starling_xml::Element;

use super::{PayloadError, expect};
use crate::ns;

/// A last activity result (XEP-0012 §2–§5): `seconds` is required; the text is the status of the
/// last unavailable presence, if any (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastActivity {
    pub seconds: u64,
    pub status: Option<String>,
}

impl TryFrom<&Element> for LastActivity {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<LastActivity, PayloadError> {
        expect(element, "query", ns::LAST)?;
        let seconds =
            element.attr("seconds").ok_or(PayloadError::MissingAttribute { element: "query", attribute: "seconds" })?;
        let seconds = seconds.trim().parse().map_err(|_| PayloadError::invalid("last activity seconds", seconds))?;
        let status = element.text();
        Ok(LastActivity { seconds, status: (!status.is_empty()).then_some(status) })
    }
}

impl From<&LastActivity> for Element {
    fn from(last: &LastActivity) -> Element {
        let element = Element::new("query", ns::LAST).with_attr("seconds", last.seconds.to_string());
        match &last.status {
            Some(status) if !status.is_empty() => element.with_text(status.as_str()),
            _ => element,
        }
    }
}

impl From<LastActivity> for Element {
    fn from(last: LastActivity) -> Element {
        Element::from(&last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_support::{reparse, xml};

    /// XEP-0012 §2 "Last Activity Response" and §3 "Last Activity Response by Server" (with status).
    #[test]
    fn reads_the_xep_0012_examples() {
        let last = LastActivity::try_from(&xml("<query xmlns='jabber:iq:last' seconds='903'/>")).expect("last");
        assert_eq!(last, LastActivity { seconds: 903, status: None });
        assert_eq!(LastActivity::try_from(&reparse(&Element::from(&last))).as_ref(), Ok(&last));
        let away = LastActivity::try_from(&xml("<query xmlns='jabber:iq:last' seconds='903'>Heading Home</query>"))
            .expect("last");
        assert_eq!(away.status.as_deref(), Some("Heading Home"));
        assert_eq!(LastActivity::try_from(&reparse(&Element::from(&away))).as_ref(), Ok(&away));
    }

    #[test]
    fn refuses_missing_or_bad_seconds() {
        let bad = |text: &str| LastActivity::try_from(&xml(text)).map_err(|e| e.condition());
        assert_eq!(bad("<query xmlns='jabber:iq:last'/>"), Err(crate::StanzaErrorCondition::BadRequest));
        assert_eq!(bad("<query xmlns='jabber:iq:last' seconds='-1'/>"), Err(crate::StanzaErrorCondition::BadRequest));
        assert_eq!(bad("<query xmlns='jabber:iq:last' seconds='soon'/>"), Err(crate::StanzaErrorCondition::BadRequest));
    }
}
