//! Entity Time (XEP-0202): an entity's UTC time and offset, `<time xmlns='urn:xmpp:time'/>`.
//! Pure data: whoever answers supplies the time.

use starling_xml::Element;

use super::{PayloadError, child_text, expect, text_element};
use crate::{datetime, ns};

/// An entity time result (XEP-0202 §3): the offset from UTC as a XEP-0082 TZD (`Z`, `-06:00`) and
/// the time in UTC as a XEP-0082 DateTime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTime {
    pub tzo: String,
    pub utc: String,
}

impl EntityTime {
    /// The time `utc_micros` after the Unix epoch, at `offset_seconds` east of UTC. `None` for an
    /// offset beyond ±23:59:59.
    pub fn new(utc_micros: u64, offset_seconds: i32) -> Option<EntityTime> {
        Some(EntityTime { tzo: datetime::format_offset(offset_seconds)?, utc: datetime::format(utc_micros) })
    }
}

impl TryFrom<&Element> for EntityTime {
    type Error = PayloadError;

    /// Refuses a missing `<tzo/>` or `<utc/>`, an offset that is not a TZD, and a time that is
    /// not a DateTime in UTC (§3: it MUST be expressed in UTC).
    fn try_from(element: &Element) -> Result<EntityTime, PayloadError> {
        expect(element, "time", ns::TIME)?;
        let required =
            |child| child_text(element, child, ns::TIME).ok_or(PayloadError::MissingChild { element: "time", child });
        let (tzo, utc) = (required("tzo")?, required("utc")?);
        if datetime::parse_offset(&tzo).is_none() {
            return Err(PayloadError::invalid("time zone offset", tzo));
        }
        if datetime::parse(&utc).is_none() || !utc.trim().ends_with('Z') {
            return Err(PayloadError::invalid("UTC time", utc));
        }
        Ok(EntityTime { tzo: tzo.trim().to_owned(), utc: utc.trim().to_owned() })
    }
}

impl From<&EntityTime> for Element {
    fn from(time: &EntityTime) -> Element {
        Element::new("time", ns::TIME).with_child(text_element("tzo", ns::TIME, &time.tzo)).with_child(text_element(
            "utc",
            ns::TIME,
            &time.utc,
        ))
    }
}

impl From<EntityTime> for Element {
    fn from(time: EntityTime) -> Element {
        Element::from(&time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_support::{reparse, xml};

    /// XEP-0202 §4, "A Response to the Query".
    #[test]
    fn reads_the_xep_0202_example() {
        let time = EntityTime::try_from(&xml("<time xmlns='urn:xmpp:time'>
            <tzo>-06:00</tzo>
            <utc>2006-12-19T17:58:35Z</utc>
          </time>"))
        .expect("time");
        assert_eq!(time, EntityTime { tzo: "-06:00".into(), utc: "2006-12-19T17:58:35Z".into() });
        assert_eq!(EntityTime::try_from(&reparse(&Element::from(&time))).as_ref(), Ok(&time));
        assert_eq!(EntityTime::new(1_166_551_115_000_000, -6 * 3600), Some(time));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        let bad = |tzo: &str, utc: &str| {
            EntityTime::try_from(&xml(&format!("<time xmlns='urn:xmpp:time'>{tzo}{utc}</time>")))
                .map_err(|e| e.condition())
        };
        let bad_request = Err(crate::StanzaErrorCondition::BadRequest);
        assert_eq!(bad("", "<utc>2006-12-19T17:58:35Z</utc>"), bad_request);
        assert_eq!(bad("<tzo>Z</tzo>", ""), bad_request);
        assert_eq!(bad("<tzo>CST</tzo>", "<utc>2006-12-19T17:58:35Z</utc>"), bad_request);
        assert_eq!(bad("<tzo>Z</tzo>", "<utc>yesterday</utc>"), bad_request);
        assert_eq!(bad("<tzo>Z</tzo>", "<utc>2006-12-19T11:58:35-06:00</utc>"), bad_request, "not in UTC");
    }
}
