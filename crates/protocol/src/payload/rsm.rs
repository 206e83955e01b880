//! Result Set Management (XEP-0059): the `<set xmlns='http://jabber.org/protocol/rsm'/>` that pages
//! MAM results, disco items and searches.
//!
//! Children of `<set/>` are recognised by their local name, whatever their namespace: that is how
//! the server has always read them, and a child in another namespace can only be a client's slip.
//! Unknown children are skipped here; a using protocol that refuses them (MAM does) checks itself.

use starling_xml::Element;

use super::{PayloadError, expect, parse_count, text_element};
use crate::ns;

/// The first item of a returned page, with its position in the full set when known (§2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsmFirst {
    pub id: String,
    pub index: Option<usize>,
}

/// A result set request or description (XEP-0059 §2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RsmSet {
    /// The most items to return (§2.1); 0 asks for the count only (§2.6).
    pub max: Option<usize>,
    /// The page after this item (§2.2).
    pub after: Option<String>,
    /// The page before this item; `Some(None)` is an empty `<before/>`: the last page (§2.5).
    pub before: Option<Option<String>>,
    /// The page starting at this position (§2.5).
    pub index: Option<usize>,
    pub first: Option<RsmFirst>,
    pub last: Option<String>,
    /// Items in the full set (§2.6), possibly approximate.
    pub count: Option<usize>,
}

impl RsmSet {
    /// A request for at most `max` items.
    pub fn with_max(max: usize) -> RsmSet {
        RsmSet { max: Some(max), ..RsmSet::default() }
    }
}

impl TryFrom<&Element> for RsmSet {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<RsmSet, PayloadError> {
        expect(element, "set", ns::RSM)?;
        let mut set = RsmSet::default();
        for child in element.children() {
            let text = child.text();
            let id = || text.trim().to_owned();
            match child.name() {
                "max" => set.max = Some(parse_count(&text, "RSM max")?),
                "after" => set.after = Some(id()),
                "before" => set.before = Some(Some(id()).filter(|id| !id.is_empty())),
                "index" => set.index = Some(parse_count(&text, "RSM index")?),
                "first" => {
                    let index = child.attr("index").map(|i| parse_count(i, "RSM first index")).transpose()?;
                    set.first = Some(RsmFirst { id: id(), index });
                }
                "last" => set.last = Some(id()),
                "count" => set.count = Some(parse_count(&text, "RSM count")?),
                _ => {}
            }
        }
        Ok(set)
    }
}

impl From<&RsmSet> for Element {
    fn from(set: &RsmSet) -> Element {
        let mut element = Element::new("set", ns::RSM);
        let mut number = |name: &str, value: Option<usize>| {
            if let Some(value) = value {
                element.push_child(Element::new(name, ns::RSM).with_text(value.to_string()));
            }
        };
        number("max", set.max);
        if let Some(after) = &set.after {
            element.push_child(text_element("after", ns::RSM, after));
        }
        if let Some(before) = &set.before {
            element.push_child(text_element("before", ns::RSM, before.as_deref().unwrap_or_default()));
        }
        if let Some(index) = set.index {
            element.push_child(Element::new("index", ns::RSM).with_text(index.to_string()));
        }
        if let Some(first) = &set.first {
            let mut child = text_element("first", ns::RSM, &first.id);
            if let Some(index) = first.index {
                child.set_attr("index", index.to_string());
            }
            element.push_child(child);
        }
        if let Some(last) = &set.last {
            element.push_child(text_element("last", ns::RSM, last));
        }
        if let Some(count) = set.count {
            element.push_child(Element::new("count", ns::RSM).with_text(count.to_string()));
        }
        element
    }
}

impl From<RsmSet> for Element {
    fn from(set: RsmSet) -> Element {
        Element::from(&set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaErrorCondition;
    use crate::payload::test_support::{reparse, xml};

    fn set(text: &str) -> Result<RsmSet, PayloadError> {
        RsmSet::try_from(&xml(text))
    }

    fn round_trips(parsed: &RsmSet) {
        assert_eq!(set(&String::from_utf8_lossy(&Element::from(parsed).to_bytes())).as_ref(), Ok(parsed));
        assert_eq!(RsmSet::try_from(&reparse(&Element::from(parsed))).as_ref(), Ok(parsed));
    }

    /// XEP-0059 §2.1–§2.6: the requests and answers of its examples.
    #[test]
    fn reads_the_xep_0059_examples() {
        let first_page = set("<set xmlns='http://jabber.org/protocol/rsm'>
          <max>10</max>
        </set>")
        .expect("request");
        assert_eq!(first_page, RsmSet::with_max(10));
        round_trips(&first_page);

        let returned = set("<set xmlns='http://jabber.org/protocol/rsm'>
          <first index='0'>stpeter@jabber.org</first>
          <last>peterpan@neverland.lit</last>
          <count>800</count>
        </set>")
        .expect("page");
        assert_eq!(returned.first, Some(RsmFirst { id: "stpeter@jabber.org".into(), index: Some(0) }));
        assert_eq!((returned.last.as_deref(), returned.count), (Some("peterpan@neverland.lit"), Some(800)));
        round_trips(&returned);

        let second =
            set("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>peterpan@neverland.lit</after></set>")
                .expect("next");
        assert_eq!(second.after.as_deref(), Some("peterpan@neverland.lit"));
        round_trips(&second);

        let previous =
            set("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before>peter@pixyland.org</before></set>")
                .expect("prev");
        assert_eq!(previous.before, Some(Some("peter@pixyland.org".into())));
        round_trips(&previous);

        let last = set("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>").expect("last page");
        assert_eq!(last.before, Some(None), "an empty <before/> is the last page");
        round_trips(&last);

        let by_index =
            set("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><index>371</index></set>").expect("index");
        assert_eq!(by_index.index, Some(371));
        round_trips(&by_index);

        let count = set("<set xmlns='http://jabber.org/protocol/rsm'><count>800</count></set>").expect("count");
        assert_eq!(count.count, Some(800));
        round_trips(&count);
    }

    #[test]
    fn refuses_numbers_that_are_not_counts() {
        for bad in [
            "<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><max/></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><index>1.5</index></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><count>many</count></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><first index='-3'>a</first></set>",
        ] {
            assert_eq!(set(bad).map_err(|e| e.condition()), Err(StanzaErrorCondition::BadRequest), "{bad}");
        }
        assert!(set("<set xmlns='urn:other'/>").is_err());
    }
}
