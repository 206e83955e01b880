//! A registry's Things and the XEP-0347 rules over them, with no I/O: what a registration, a
//! claim, an update or a search does to them. The registry entity (`mod.rs`) loads them, stores
//! what changed and sends what is to be sent.

use std::collections::BTreeMap;

use starling_protocol::payload::iot_discovery::{tags_in, Comparison, FoundThing, MetaTag, NodeInfo, Search, SearchOperator, TagValue};
use starling_protocol::{ns, Jid};
use starling_xml::Element;

/// A Thing's key: its bare JID and node information.
pub(super) type ThingKey = (Jid, NodeInfo);

/// One registered Thing.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Thing {
    /// The full JID it registered from: where `claimed`, `removed` and `disowned` go.
    pub full: Jid,
    pub tags: Vec<MetaTag>,
    /// Its owner once claimed (itself when self-owned).
    pub owner: Option<Jid>,
    /// Whether a claimed Thing is found by searches.
    pub public: bool,
}

impl Thing {
    /// The record the store keeps, under [`key_text`].
    pub fn record(&self, key: &ThingKey) -> Vec<u8> {
        let mut record = key.1.write(Element::new("thing", ns::IOT_DISCOVERY).with_attr("jid", key.0.as_str()).with_attr("full", self.full.as_str()));
        if let Some(owner) = &self.owner {
            record = record.with_attr("owner", owner.as_str()).with_attr("public", if self.public { "true" } else { "false" });
        }
        for tag in &self.tags {
            record.push_child(tag.to_element());
        }
        record.to_bytes()
    }

    /// A stored record read back; `None` when it does not parse (it is then left alone).
    pub fn read(record: &[u8]) -> Option<(ThingKey, Thing)> {
        let element = Element::parse(record).ok()?;
        let jid = Jid::new(element.attr("jid")?).ok()?;
        let full = Jid::new(element.attr("full")?).ok()?;
        let owner = element.attr("owner").and_then(|owner| Jid::new(owner).ok());
        let public = element.attr("public") != Some("false");
        let tags = tags_in(&element, usize::MAX).ok()?;
        Some(((jid, NodeInfo::read(&element)), Thing { full, tags, owner, public }))
    }

    /// Whether `tags` are exactly this Thing's (order aside): what a claim must present.
    pub fn has_exactly(&self, tags: &[MetaTag]) -> bool {
        tags.len() == self.tags.len() && tags.iter().all(|tag| self.tags.iter().any(|own| own.same_as(tag)))
    }

    /// Applies an update: each tag given replaces the one of its name, an empty string removes
    /// it (§3.14). Whether the Thing keeps at most `max_tags`.
    pub fn update(&mut self, tags: Vec<MetaTag>, max_tags: usize) -> bool {
        let mut updated = self.tags.clone();
        for tag in tags {
            updated.retain(|own| own.name != tag.name);
            if !matches!(&tag.value, TagValue::Str(text) if text.is_empty()) {
                updated.push(tag);
            }
        }
        if updated.len() > max_tags {
            return false;
        }
        self.tags = updated;
        true
    }
}

/// The store's key of a Thing: its JID and node information, separated by a character no JID or
/// XML attribute holds (U+001F).
pub(super) fn key_text(key: &ThingKey) -> String {
    let node = &key.1;
    let part = |value: &Option<String>| value.clone().unwrap_or_default();
    format!("{}\u{1f}{}\u{1f}{}\u{1f}{}", key.0, part(&node.node_id), part(&node.source_id), part(&node.cache_type))
}

/// What a claim finds.
pub(super) enum ClaimMatch {
    /// One unclaimed Thing with exactly the tags presented.
    Unclaimed(ThingKey),
    /// The claimant owns it already (a claim sent again).
    AlreadyTheirs(ThingKey),
    /// None, several, or someone else's: the claimant learns no more than "not found".
    NotFound,
}

/// The Thing a claim by `claimant` presenting `tags` is for.
pub(super) fn claim_match(things: &BTreeMap<ThingKey, Thing>, claimant: &Jid, tags: &[MetaTag]) -> ClaimMatch {
    let mut unclaimed = things.iter().filter(|(_, thing)| thing.owner.is_none() && thing.has_exactly(tags)).map(|(key, _)| key);
    match (unclaimed.next(), unclaimed.next()) {
        (Some(key), None) => ClaimMatch::Unclaimed(key.clone()),
        (Some(_), Some(_)) => ClaimMatch::NotFound,
        (None, _) => match things.iter().find(|(_, thing)| thing.owner.as_ref() == Some(claimant) && thing.has_exactly(tags)) {
            Some((key, _)) => ClaimMatch::AlreadyTheirs(key.clone()),
            None => ClaimMatch::NotFound,
        },
    }
}

/// The page of public, claimed Things every operator holds for, and whether there are more (§3.12).
/// An operator on KEY finds nothing; KEY tags are never shown.
pub(super) fn search(things: &BTreeMap<ThingKey, Thing>, search: &Search, max_results: usize) -> (Vec<FoundThing>, bool) {
    if search.operators.iter().any(|operator| operator_tag(operator) == "KEY") {
        return (Vec::new(), false);
    }
    let limit = search.max_count.unwrap_or(max_results).min(max_results);
    let mut hits = things.iter().filter(|(_, thing)| thing.public && thing.owner.is_some() && search.operators.iter().all(|operator| holds(operator, &thing.tags))).skip(search.offset);
    let page: Vec<FoundThing> = hits
        .by_ref()
        .take(limit)
        .map(|((jid, node), thing)| FoundThing {
            owner: thing.owner.clone().unwrap_or_else(|| jid.clone()),
            jid: jid.clone(),
            node: node.clone(),
            tags: thing.tags.iter().filter(|tag| !tag.is_key()).cloned().collect(),
        })
        .collect();
    let more = hits.next().is_some();
    (page, more)
}

fn operator_tag(operator: &SearchOperator) -> &str {
    match operator {
        SearchOperator::Str { name, .. } | SearchOperator::Num { name, .. } | SearchOperator::Mask { name, .. } => name,
    }
}

/// Whether `operator` holds for a Thing with `tags`: a tag it names that the Thing lacks, or of
/// the other type, does not.
fn holds(operator: &SearchOperator, tags: &[MetaTag]) -> bool {
    let Some(tag) = tags.iter().find(|tag| tag.name == operator_tag(operator)) else { return false };
    match (operator, &tag.value) {
        (SearchOperator::Str { test, .. }, TagValue::Str(value)) => string_holds(test, value),
        (SearchOperator::Num { test, .. }, TagValue::Num(value, _)) => test.holds(value),
        (SearchOperator::Mask { pattern, wildcard, .. }, TagValue::Str(value)) => masked(value, pattern, wildcard),
        _ => false,
    }
}

fn string_holds(test: &Comparison<String>, value: &str) -> bool {
    test.holds(&value.to_owned())
}

/// `value LIKE pattern`, `wildcard` standing for any run of characters (none included).
fn masked(value: &str, pattern: &str, wildcard: &str) -> bool {
    let parts: Vec<&str> = pattern.split(wildcard).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return value == pattern;
    }
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last) {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
#[path = "things_tests.rs"]
mod tests;
