//! Blocking Command (XEP-0191): the blocklist (§3.2), block (§3.3) and unblock (§3.4) elements,
//! each a list of `<item jid='…'/>`.

use starling_xml::Element;

use super::{PayloadError, expect, jid_attr};
use crate::jid::Jid;
use crate::ns;

fn items_of(element: &Element) -> Result<Vec<Jid>, PayloadError> {
    element
        .children()
        .filter(|c| c.is("item", ns::BLOCKING))
        .map(|item| jid_attr(item, "jid", "blocking item"))
        .collect()
}

fn element_of(name: &str, items: &[Jid]) -> Element {
    items.iter().fold(Element::new(name, ns::BLOCKING), |list, jid| {
        list.with_child(Element::new("item", ns::BLOCKING).with_attr("jid", jid.as_str()))
    })
}

macro_rules! blocking_element {
    ($(#[$meta:meta])* $name:ident, $element:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            pub items: Vec<Jid>,
        }

        impl TryFrom<&Element> for $name {
            type Error = PayloadError;

            fn try_from(element: &Element) -> Result<$name, PayloadError> {
                expect(element, $element, ns::BLOCKING)?;
                let parsed = $name { items: items_of(element)? };
                let check: fn(&$name) -> Result<(), PayloadError> = $check;
                check(&parsed)?;
                Ok(parsed)
            }
        }

        impl From<&$name> for Element {
            fn from(value: &$name) -> Element {
                element_of($element, &value.items)
            }
        }

        impl From<$name> for Element {
            fn from(value: $name) -> Element {
                Element::from(&value)
            }
        }
    };
}

blocking_element! {
    /// The user's blocklist (XEP-0191 §3.2): empty in a get, the blocked JIDs in the result.
    Blocklist, "blocklist", |_| Ok(())
}

blocking_element! {
    /// Block these JIDs (XEP-0191 §3.3); at least one, else `bad-request`. A malformed JID is
    /// `jid-malformed`, and is reported before an empty list.
    Block, "block", |block| if block.items.is_empty() { Err(PayloadError::MissingChild { element: "block", child: "item" }) } else { Ok(()) }
}

blocking_element! {
    /// Unblock these JIDs (XEP-0191 §3.4), or every JID when there are none (§3.5).
    Unblock, "unblock", |_| Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaErrorCondition;
    use crate::payload::test_support::{reparse, xml};

    /// XEP-0191 §3.2–§3.5: "Server returns blocklist with items", "Block command", "Unblock all".
    #[test]
    fn reads_the_xep_0191_examples() {
        let list = Blocklist::try_from(&xml("<blocklist xmlns='urn:xmpp:blocking'>
            <item jid='romeo@montague.net'/>
            <item jid='iago@shakespeare.lit'/>
          </blocklist>"))
        .expect("blocklist");
        assert_eq!(list.items.len(), 2);
        assert_eq!(Blocklist::try_from(&reparse(&Element::from(&list))).as_ref(), Ok(&list));
        assert_eq!(Blocklist::try_from(&xml("<blocklist xmlns='urn:xmpp:blocking'/>")), Ok(Blocklist::default()));

        let block = Block::try_from(&xml("<block xmlns='urn:xmpp:blocking'><item jid='romeo@montague.net'/></block>"))
            .expect("block");
        assert_eq!(block.items, [Jid::new("romeo@montague.net").expect("jid")]);
        assert_eq!(Block::try_from(&reparse(&Element::from(&block))).as_ref(), Ok(&block));

        let all = Unblock::try_from(&xml("<unblock xmlns='urn:xmpp:blocking'/>")).expect("unblock all");
        assert!(all.items.is_empty());
        assert_eq!(Element::from(&all).to_bytes(), b"<unblock xmlns='urn:xmpp:blocking'/>");
        let one =
            Unblock::try_from(&xml("<unblock xmlns='urn:xmpp:blocking'><item jid='romeo@montague.net'/></unblock>"))
                .expect("unblock");
        assert_eq!(Unblock::try_from(&reparse(&Element::from(&one))).as_ref(), Ok(&one));
    }

    #[test]
    fn refusals() {
        use StanzaErrorCondition::*;
        let block = |items: &str| {
            Block::try_from(&xml(&format!("<block xmlns='urn:xmpp:blocking'>{items}</block>")))
                .map_err(|e| e.condition())
        };
        assert_eq!(block(""), Err(BadRequest), "§3.3: at least one item");
        assert_eq!(block("<item jid='@x'/>"), Err(JidMalformed));
        assert_eq!(block("<item/>"), Err(JidMalformed), "no JID");
        let unblock = Unblock::try_from(&xml("<unblock xmlns='urn:xmpp:blocking'><item jid='a@'/></unblock>"));
        assert_eq!(unblock.map_err(|e| e.condition()), Err(JidMalformed));
        assert!(Block::try_from(&xml("<unblock xmlns='urn:xmpp:blocking'/>")).is_err());
    }
}
