//! Archiving preferences (XEP-0441 §4, in the `urn:xmpp:mam:2` namespace): which conversations
//! the archive keeps.

use starling_xml::Element;

use crate::jid::Jid;
use crate::ns;
use crate::payload::{PayloadError, expect};

/// What is archived for a JID in neither list (XEP-0441 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MamDefault {
    Always,
    Never,
    /// Only contacts in the user's roster.
    Roster,
}

impl MamDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            MamDefault::Always => "always",
            MamDefault::Never => "never",
            MamDefault::Roster => "roster",
        }
    }

    pub fn parse(text: &str) -> Option<MamDefault> {
        Some(match text {
            "always" => MamDefault::Always,
            "never" => MamDefault::Never,
            "roster" => MamDefault::Roster,
            _ => return None,
        })
    }
}

/// The `<prefs/>` of a get result, a set and its result (XEP-0441 §4). JIDs are read as bare JIDs:
/// preferences are per contact, not per resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MamPrefs {
    pub default: MamDefault,
    pub always: Vec<Jid>,
    pub never: Vec<Jid>,
}

impl MamPrefs {
    fn list(element: &Element, name: &str) -> Result<Vec<Jid>, PayloadError> {
        let Some(list) = element.get_child(name, ns::MAM) else { return Ok(Vec::new()) };
        list.children()
            .filter(|c| c.is("jid", ns::MAM))
            .map(|jid| {
                let text = jid.text();
                Jid::new(text.trim())
                    .map(|jid| jid.bare())
                    .map_err(|_| PayloadError::MalformedJid { what: "MAM preferences", value: text })
            })
            .collect()
    }
}

impl TryFrom<&Element> for MamPrefs {
    type Error = PayloadError;

    /// Refuses a missing or unknown `default` (`bad-request`), then a malformed JID in `<always/>`,
    /// then in `<never/>` (`jid-malformed`).
    fn try_from(element: &Element) -> Result<MamPrefs, PayloadError> {
        expect(element, "prefs", ns::MAM)?;
        let default = match element.attr("default") {
            Some(text) => MamDefault::parse(text).ok_or_else(|| PayloadError::invalid("MAM default", text))?,
            None => return Err(PayloadError::MissingAttribute { element: "prefs", attribute: "default" }),
        };
        Ok(MamPrefs { default, always: MamPrefs::list(element, "always")?, never: MamPrefs::list(element, "never")? })
    }
}

impl From<&MamPrefs> for Element {
    /// Both lists are always written, empty or not (XEP-0441 §4: they MUST be present).
    fn from(prefs: &MamPrefs) -> Element {
        let list = |name: &str, jids: &[Jid]| {
            jids.iter().fold(Element::new(name, ns::MAM), |list, jid| {
                list.with_child(Element::new("jid", ns::MAM).with_text(jid.as_str()))
            })
        };
        Element::new("prefs", ns::MAM)
            .with_attr("default", prefs.default.as_str())
            .with_child(list("always", &prefs.always))
            .with_child(list("never", &prefs.never))
    }
}

impl From<MamPrefs> for Element {
    fn from(prefs: MamPrefs) -> Element {
        Element::from(&prefs)
    }
}
