//! Multi-User Chat (XEP-0045): the `<x xmlns='…muc'/>` a client joins with, and the
//! `<x xmlns='…muc#user'/>` a room annotates occupants' presence with (affiliation, role, real JID,
//! status codes).

use starling_xml::Element;

use super::{PayloadError, child_text, expect, jid_attr, parse_count};
use crate::datetime;
use crate::jid::Jid;
use crate::ns;

named_enum! {
    /// A long-lived association with a room (XEP-0045 §5.2).
    Affiliation {
        Owner => "owner",
        Admin => "admin",
        Member => "member",
        Outcast => "outcast",
        None => "none",
    }
}

named_enum! {
    /// A temporary position in a room, for the length of a visit (XEP-0045 §5.1).
    Role {
        Moderator => "moderator",
        Participant => "participant",
        Visitor => "visitor",
        None => "none",
    }
}

/// Status codes of XEP-0045 §15.6 a room uses.
pub mod status {
    /// The room is not anonymous: everyone sees occupants' real JIDs.
    pub const NON_ANONYMOUS: u16 = 100;
    /// This presence is the occupant's own.
    pub const SELF_PRESENCE: u16 = 110;
    /// The room was created by this join.
    pub const ROOM_CREATED: u16 = 201;
    /// The service changed (normalised) the occupant's nick.
    pub const NICK_ASSIGNED: u16 = 210;
    /// The occupant was banned.
    pub const BANNED: u16 = 301;
    /// The occupant changed its nick (with the new nick in the item).
    pub const NEW_NICK: u16 = 303;
    /// The occupant was kicked.
    pub const KICKED: u16 = 307;
    /// The occupant was removed from a members-only room because it is no longer a member.
    pub const MEMBERSHIP_LOST: u16 = 321;
}

/// What a client joins with (XEP-0045 §7.2): an optional password and how much history it wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MucJoin {
    pub password: Option<String>,
    pub history: HistoryRequest,
}

/// `<history/>` (XEP-0045 §7.2.13): every limit given applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub max_chars: Option<usize>,
    pub max_stanzas: Option<usize>,
    pub seconds: Option<u64>,
    /// Microseconds since the Unix epoch.
    pub since: Option<u64>,
}

impl TryFrom<&Element> for MucJoin {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<MucJoin, PayloadError> {
        expect(element, "x", ns::MUC)?;
        let history = match element.get_child("history", ns::MUC) {
            None => HistoryRequest::default(),
            Some(history) => {
                let count = |name: &'static str| history.attr(name).map(|value| parse_count(value, name)).transpose();
                let since = history.attr("since").map(|since| datetime::parse(since).ok_or_else(|| PayloadError::invalid("since", since))).transpose()?;
                HistoryRequest { max_chars: count("maxchars")?, max_stanzas: count("maxstanzas")?, seconds: count("seconds")?.map(|s| s as u64), since }
            }
        };
        Ok(MucJoin { password: child_text(element, "password", ns::MUC), history })
    }
}

/// One occupant (or affiliated JID) as `<item/>` in `muc#user` (XEP-0045 §7.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MucItem {
    pub affiliation: Affiliation,
    pub role: Role,
    /// The real JID, where the recipient may see it.
    pub jid: Option<Jid>,
    /// With status 303: the new nick.
    pub nick: Option<String>,
    pub reason: Option<String>,
}

impl MucItem {
    pub fn new(affiliation: Affiliation, role: Role) -> MucItem {
        MucItem { affiliation, role, jid: None, nick: None, reason: None }
    }
}

/// `<x xmlns='http://jabber.org/protocol/muc#user'/>` on an occupant's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MucUser {
    pub item: MucItem,
    pub statuses: Vec<u16>,
}

impl From<&MucUser> for Element {
    fn from(user: &MucUser) -> Element {
        let mut item = Element::new("item", ns::MUC_USER).with_attr("affiliation", user.item.affiliation.as_str()).with_attr("role", user.item.role.as_str());
        if let Some(jid) = &user.item.jid {
            item.set_attr("jid", jid.as_str());
        }
        if let Some(nick) = &user.item.nick {
            item.set_attr("nick", nick.as_str());
        }
        if let Some(reason) = &user.item.reason {
            item.push_child(Element::new("reason", ns::MUC_USER).with_text(reason.as_str()));
        }
        let mut x = Element::new("x", ns::MUC_USER).with_child(item);
        for code in &user.statuses {
            x.push_child(Element::new("status", ns::MUC_USER).with_attr("code", code.to_string()));
        }
        x
    }
}

impl TryFrom<&Element> for MucUser {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<MucUser, PayloadError> {
        expect(element, "x", ns::MUC_USER)?;
        let item = element.get_child("item", ns::MUC_USER).ok_or(PayloadError::MissingChild { element: "x", child: "item" })?;
        let named = |attribute: &'static str| item.attr(attribute).ok_or(PayloadError::MissingAttribute { element: "item", attribute });
        let affiliation = named("affiliation").and_then(|value| Affiliation::parse(value).ok_or_else(|| PayloadError::invalid("affiliation", value)))?;
        let role = named("role").and_then(|value| Role::parse(value).ok_or_else(|| PayloadError::invalid("role", value)))?;
        let jid = item.attr("jid").map(|_| jid_attr(item, "jid", "muc item")).transpose()?;
        let statuses = element
            .children()
            .filter(|child| child.is("status", ns::MUC_USER))
            .map(|status| {
                let code = status.attr("code").unwrap_or_default();
                code.parse::<u16>().map_err(|_| PayloadError::invalid("status code", code))
            })
            .collect::<Result<_, _>>()?;
        Ok(MucUser {
            item: MucItem { affiliation, role, jid, nick: item.attr("nick").map(str::to_owned), reason: child_text(item, "reason", ns::MUC_USER) },
            statuses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_with_history_limits_xep_0045_example_37_and_40() {
        let x = Element::parse(b"<x xmlns='http://jabber.org/protocol/muc'><history maxchars='65000' maxstanzas='20' seconds='180' since='1970-01-01T00:00:00Z'/><password>cauldronburn</password></x>").expect("test data");
        let join = MucJoin::try_from(&x).expect("join");
        assert_eq!(join.password.as_deref(), Some("cauldronburn"));
        assert_eq!(join.history, HistoryRequest { max_chars: Some(65000), max_stanzas: Some(20), seconds: Some(180), since: Some(0) });
        let bare = Element::parse(b"<x xmlns='http://jabber.org/protocol/muc'/>").expect("test data");
        assert_eq!(MucJoin::try_from(&bare).expect("join"), MucJoin::default());
        let bad = Element::parse(b"<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='many'/></x>").expect("test data");
        assert!(MucJoin::try_from(&bad).is_err());
    }

    #[test]
    fn an_occupant_item_round_trips_xep_0045_example_24() {
        let user = MucUser {
            item: MucItem { jid: Some(Jid::new("hag66@shakespeare.lit/pda").expect("test data")), ..MucItem::new(Affiliation::Member, Role::Participant) },
            statuses: vec![status::SELF_PRESENCE, status::NON_ANONYMOUS],
        };
        let element = Element::from(&user);
        assert_eq!(
            String::from_utf8(element.to_bytes()).expect("test data"),
            "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant' jid='hag66@shakespeare.lit/pda'/><status code='110'/><status code='100'/></x>"
        );
        assert_eq!(MucUser::try_from(&element).expect("parsed"), user);
        let unknown = Element::parse(b"<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='king' role='none'/></x>").expect("test data");
        assert!(MucUser::try_from(&unknown).is_err());
    }
}
