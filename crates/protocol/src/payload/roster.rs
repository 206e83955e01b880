//! Roster management (RFC 6121 §2): the `<query xmlns='jabber:iq:roster'/>` of roster gets,
//! results, sets and pushes.
//!
//! Two readers: [`RosterQuery::try_from`] reads a roster as a server or client sends it (results
//! and pushes, every attribute checked), and [`RosterQuery::parse_set`] reads a client's roster set
//! the way a server must (§2.3, §2.5): one item, a bare JID, groups checked, and the attributes a
//! client may not set (§2.1.2) ignored.

use starling_xml::Element;

use super::{PayloadError, bool_attr, expect, jid_attr, text_element};
use crate::jid::Jid;
use crate::ns;

/// The subscription state of a roster item (RFC 6121 §2.1.2.5), plus `remove` (§2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
    /// Only in a set (remove the item) or a push (the item was removed).
    Remove,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    pub fn parse(text: &str) -> Option<Subscription> {
        Some(match text {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            "remove" => Subscription::Remove,
            _ => return None,
        })
    }
}

/// One contact (RFC 6121 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: Jid,
    /// An empty `name` reads as none.
    pub name: Option<String>,
    pub subscription: Subscription,
    /// `ask='subscribe'`: the user asked for a subscription not yet answered (§2.1.2.2).
    pub ask: bool,
    /// `approved='true'`: a pre-approved subscription (§2.1.2.1, §3.4).
    pub approved: bool,
    /// Distinct, non-empty group names, in document order.
    pub groups: Vec<String>,
}

impl RosterItem {
    /// A contact with no name, no subscription and no groups.
    pub fn new(jid: Jid) -> RosterItem {
        RosterItem {
            jid,
            name: None,
            subscription: Subscription::None,
            ask: false,
            approved: false,
            groups: Vec::new(),
        }
    }

    /// The push item announcing that `jid` was removed (§2.5.2).
    pub fn removed(jid: Jid) -> RosterItem {
        RosterItem { subscription: Subscription::Remove, ..RosterItem::new(jid) }
    }

    fn name_of(element: &Element) -> Option<String> {
        element.attr("name").filter(|n| !n.is_empty()).map(str::to_owned)
    }

    /// Groups in document order: an empty one is `not-acceptable`, a repeated one `bad-request`
    /// (§2.3.3), whichever comes first.
    fn groups_of(element: &Element) -> Result<Vec<String>, PayloadError> {
        let mut groups: Vec<String> = Vec::new();
        for group in element.children().filter(|c| c.is("group", ns::ROSTER)) {
            let name = group.text();
            if name.is_empty() {
                return Err(PayloadError::NotAcceptable("empty roster group"));
            }
            if groups.contains(&name) {
                return Err(PayloadError::Duplicate { what: "roster group", value: name });
            }
            groups.push(name);
        }
        Ok(groups)
    }
}

impl TryFrom<&Element> for RosterItem {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<RosterItem, PayloadError> {
        expect(element, "item", ns::ROSTER)?;
        let jid = jid_attr(element, "jid", "roster item")?;
        let subscription = match element.attr("subscription") {
            None => Subscription::None,
            Some(text) => {
                Subscription::parse(text).ok_or_else(|| PayloadError::invalid("roster subscription", text))?
            }
        };
        let ask = match element.attr("ask") {
            None => false,
            Some("subscribe") => true,
            Some(other) => return Err(PayloadError::invalid("roster ask", other)),
        };
        let approved = bool_attr(element, "approved", "roster approved", false)?;
        let groups = RosterItem::groups_of(element)?;
        Ok(RosterItem { jid, name: RosterItem::name_of(element), subscription, ask, approved, groups })
    }
}

impl From<&RosterItem> for Element {
    fn from(item: &RosterItem) -> Element {
        let mut element = Element::new("item", ns::ROSTER)
            .with_attr("jid", item.jid.as_str())
            .with_attr("subscription", item.subscription.as_str());
        if let Some(name) = &item.name {
            element.set_attr("name", name.as_str());
        }
        if item.ask {
            element.set_attr("ask", "subscribe");
        }
        if item.approved {
            element.set_attr("approved", "true");
        }
        for group in &item.groups {
            element.push_child(text_element("group", ns::ROSTER, group));
        }
        element
    }
}

impl From<RosterItem> for Element {
    fn from(item: RosterItem) -> Element {
        Element::from(&item)
    }
}

/// A roster query (RFC 6121 §2.1.3): empty in a get, the whole roster in a result, one item in a
/// set or push. `ver` is the roster version (§2.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterQuery {
    pub ver: Option<String>,
    pub items: Vec<RosterItem>,
}

impl RosterQuery {
    /// Reads a client's roster set (§2.3.2, §2.5.1) as the server answers it, refusing in this
    /// order: not exactly one `<item/>` (`bad-request`, §2.3.3), a missing or malformed JID
    /// (`jid-malformed`), a full JID (`bad-request`); for a removal nothing else is looked at;
    /// otherwise groups as [`RosterItem`] checks them. `subscription` other than `remove`, `ask`
    /// and `approved` are the server's to set, so they are ignored (§2.1.2): the item comes back
    /// with none of them.
    pub fn parse_set(element: &Element) -> Result<RosterItem, PayloadError> {
        expect(element, "query", ns::ROSTER)?;
        let mut items = element.children().filter(|c| c.is("item", ns::ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(PayloadError::invalid("roster set", "not exactly one item"));
        };
        let jid = jid_attr(item, "jid", "roster item")?;
        if !jid.is_bare() {
            return Err(PayloadError::invalid("roster item JID (not bare)", jid.as_str()));
        }
        if item.attr("subscription") == Some("remove") {
            return Ok(RosterItem::removed(jid));
        }
        let groups = RosterItem::groups_of(item)?;
        Ok(RosterItem { name: RosterItem::name_of(item), groups, ..RosterItem::new(jid) })
    }
}

impl TryFrom<&Element> for RosterQuery {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<RosterQuery, PayloadError> {
        expect(element, "query", ns::ROSTER)?;
        let items = element
            .children()
            .filter(|c| c.is("item", ns::ROSTER))
            .map(RosterItem::try_from)
            .collect::<Result<_, _>>()?;
        Ok(RosterQuery { ver: element.attr("ver").map(str::to_owned), items })
    }
}

impl From<&RosterQuery> for Element {
    fn from(query: &RosterQuery) -> Element {
        let mut element = Element::new("query", ns::ROSTER);
        if let Some(ver) = &query.ver {
            element.set_attr("ver", ver.as_str());
        }
        for item in &query.items {
            element.push_child(item.into());
        }
        element
    }
}

impl From<RosterQuery> for Element {
    fn from(query: RosterQuery) -> Element {
        Element::from(&query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaErrorCondition;
    use crate::payload::test_support::{reparse, xml};

    fn jid(text: &str) -> Jid {
        Jid::new(text).expect("jid")
    }

    /// RFC 6121 §2.1.4, the roster result of Example "Roster result".
    #[test]
    fn reads_the_rfc_6121_roster_result() {
        let element = xml("<query xmlns='jabber:iq:roster' ver='ver11'>
          <item jid='romeo@example.net' name='Romeo' subscription='both'>
            <group>Friends</group>
          </item>
          <item jid='mercutio@example.com' name='Mercutio' subscription='from'/>
          <item jid='benvolio@example.net' name='Benvolio' subscription='both'/>
        </query>");
        let roster = RosterQuery::try_from(&element).expect("roster");
        assert_eq!(roster.ver.as_deref(), Some("ver11"));
        assert_eq!(roster.items.len(), 3);
        assert_eq!(roster.items[0].groups, ["Friends"]);
        assert_eq!(roster.items[1].subscription, Subscription::From);
        assert_eq!(RosterQuery::try_from(&reparse(&Element::from(&roster))), Ok(roster));
    }

    /// RFC 6121 §3.1.2 and §3.4: pushes with `ask` and `approved`.
    #[test]
    fn reads_ask_and_approved_pushes() {
        let push = xml(
            "<query xmlns='jabber:iq:roster' ver='ver15'><item ask='subscribe' jid='juliet@example.com' subscription='none'/></query>",
        );
        let roster = RosterQuery::try_from(&push).expect("push");
        assert!(roster.items[0].ask && !roster.items[0].approved);
        assert_eq!(RosterQuery::try_from(&reparse(&Element::from(&roster))), Ok(roster));
        let approved = xml(
            "<query xmlns='jabber:iq:roster'><item approved='true' jid='romeo@example.net' subscription='none'/></query>",
        );
        assert!(RosterQuery::try_from(&approved).expect("push").items[0].approved);
    }

    /// Serialises exactly as the session's `item_element` does, attribute order included.
    #[test]
    fn writes_items_as_the_server_always_has() {
        let item = RosterItem {
            name: Some("Nurse".into()),
            ask: true,
            approved: true,
            groups: vec!["Servants".into()],
            ..RosterItem::new(jid("nurse@example.com"))
        };
        assert_eq!(
            Element::from(&item).to_bytes(),
            b"<item xmlns='jabber:iq:roster' jid='nurse@example.com' subscription='none' name='Nurse' ask='subscribe' approved='true'><group>Servants</group></item>"
        );
        assert_eq!(
            Element::from(&RosterItem::removed(jid("nurse@example.com"))).to_bytes(),
            b"<item xmlns='jabber:iq:roster' jid='nurse@example.com' subscription='remove'/>"
        );
    }

    /// RFC 6121 §2.3.1 (add) and §2.5.1 (remove), through the server's reader.
    #[test]
    fn reads_the_rfc_6121_roster_sets() {
        let add = xml(
            "<query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='Nurse'><group>Servants</group></item></query>",
        );
        let item = RosterQuery::parse_set(&add).expect("set");
        assert_eq!((item.name.as_deref(), item.groups.as_slice()), (Some("Nurse"), ["Servants".to_owned()].as_slice()));
        let query = RosterQuery { ver: None, items: vec![item] };
        assert_eq!(RosterQuery::parse_set(&reparse(&Element::from(&query))).as_ref(), Ok(&query.items[0]));

        let remove = xml(
            "<query xmlns='jabber:iq:roster'><item jid='nurse@example.com' subscription='remove'><group/></item></query>",
        );
        assert_eq!(
            RosterQuery::parse_set(&remove),
            Ok(RosterItem::removed(jid("nurse@example.com"))),
            "a removal's groups are not looked at"
        );

        let ignored = xml(
            "<query xmlns='jabber:iq:roster'><item jid='a@example.com' subscription='both' ask='maybe' approved='yes' name=''/></query>",
        );
        assert_eq!(
            RosterQuery::parse_set(&ignored),
            Ok(RosterItem::new(jid("a@example.com"))),
            "server-owned attributes are ignored"
        );
    }

    #[test]
    fn roster_sets_are_refused_with_the_rfc_6121_conditions() {
        let refusal = |items: &str| {
            RosterQuery::parse_set(&xml(&format!("<query xmlns='jabber:iq:roster'>{items}</query>")))
                .map_err(|e| e.condition())
        };
        use StanzaErrorCondition::*;
        assert_eq!(refusal(""), Err(BadRequest), "no item");
        assert_eq!(refusal("<item jid='a@x'/><item jid='b@x'/>"), Err(BadRequest), "two items");
        assert_eq!(
            refusal("<item jid='a@x'/><item jid='@@'/>"),
            Err(BadRequest),
            "the count is checked before the JIDs"
        );
        assert_eq!(refusal("<item/>"), Err(JidMalformed), "no JID");
        assert_eq!(refusal("<item jid='@x'/>"), Err(JidMalformed));
        assert_eq!(refusal("<item jid='a@x/r'/>"), Err(BadRequest), "a full JID");
        assert_eq!(refusal("<item jid='a@x'><group>G</group><group>G</group></item>"), Err(BadRequest));
        assert_eq!(refusal("<item jid='a@x'><group></group></item>"), Err(NotAcceptable));
        assert_eq!(
            refusal("<item jid='a@x'><group>G</group><group>G</group><group/></item>"),
            Err(BadRequest),
            "first fault wins"
        );
        assert_eq!(
            refusal("<item jid='a@x'><group/><group>G</group><group>G</group></item>"),
            Err(NotAcceptable),
            "first fault wins"
        );
    }

    #[test]
    fn roster_results_are_checked() {
        let refusal = |item: &str| {
            RosterQuery::try_from(&xml(&format!("<query xmlns='jabber:iq:roster'>{item}</query>")))
                .map_err(|e| e.condition())
        };
        use StanzaErrorCondition::*;
        assert_eq!(refusal("<item jid='a@x' subscription='sometimes'/>"), Err(BadRequest));
        assert_eq!(refusal("<item jid='a@x' ask='unsubscribe'/>"), Err(BadRequest));
        assert_eq!(refusal("<item jid='a@x' approved='yes'/>"), Err(BadRequest));
        assert_eq!(refusal("<item jid='a@'/>"), Err(JidMalformed));
        assert_eq!(refusal("<item jid='a@x'><group>G</group><group>G</group></item>"), Err(BadRequest));
        assert_eq!(refusal("<item jid='a@x'><group/></item>"), Err(NotAcceptable));
        assert!(RosterQuery::try_from(&xml("<query xmlns='jabber:iq:private'/>")).is_err());
    }
}
