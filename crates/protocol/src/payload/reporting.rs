//! Spam and abuse reporting (XEP-0377): a `<report/>` in an item of a blocking command (XEP-0191)
//! says why the JID is blocked, for the server's moderators. Pure data: whoever handles the block
//! decides what to keep.

use starling_xml::Element;

use super::{PayloadError, child_text, jid_attr};
use crate::jid::Jid;
use crate::ns;

/// One report: whom, why (`urn:xmpp:reporting:spam`, `…:abuse`, or another URI, kept as it
/// comes), the user's words, and the ids of the offending stanzas (XEP-0359).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub jid: Jid,
    pub reason: String,
    pub text: Option<String>,
    pub stanza_ids: Vec<String>,
}

/// The reports in a `<block/>`'s items (none when it carries none).
pub fn reports_in(block: &Element) -> Result<Vec<Report>, PayloadError> {
    let mut reports = Vec::new();
    for item in block.children().filter(|child| child.is("item", ns::BLOCKING)) {
        let Some(report) = item.get_child("report", ns::REPORTING) else { continue };
        let reason = report.attr("reason").filter(|reason| !reason.is_empty());
        let reason = reason.ok_or(PayloadError::MissingAttribute { element: "report", attribute: "reason" })?;
        let stanza_ids = report.children().filter(|child| child.is("stanza-id", ns::STANZA_ID)).filter_map(|id| id.attr("id")).map(str::to_owned).collect();
        reports.push(Report { jid: jid_attr(item, "jid", "blocking item")?, reason: reason.to_owned(), text: child_text(report, "text", ns::REPORTING), stanza_ids });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_read_from_the_items_that_carry_them() {
        let block = Element::parse(
            b"<block xmlns='urn:xmpp:blocking'><item jid='spammer@example.net'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>\
              <stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='A1'/><text>Buy now</text></report></item><item jid='quiet@example.net'/></block>",
        )
        .expect("parses");
        let reports = reports_in(&block).expect("reports");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].jid.as_str(), "spammer@example.net");
        assert_eq!((reports[0].reason.as_str(), reports[0].text.as_deref(), reports[0].stanza_ids.as_slice()), ("urn:xmpp:reporting:spam", Some("Buy now"), &["A1".to_owned()][..]));
        let no_reason = Element::parse(b"<block xmlns='urn:xmpp:blocking'><item jid='a@b'><report xmlns='urn:xmpp:reporting:1'/></item></block>").expect("parses");
        assert!(reports_in(&no_reason).is_err());
    }
}
