//! The MAM protocol's payloads — the query with its `urn:xmpp:mam:2` form and XEP-0059 paging,
//! preferences, the query form, result messages — and the reading of a page from the archive.

use starling_cluster::store::{Archive, ArchiveDefault, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage, StoreError};
use starling_protocol::datetime;
use starling_protocol::payload::{self, MamDefault, MamPrefs};
use starling_protocol::{Jid, StanzaErrorCondition};
use starling_xml::{escape_attr, Element};

use crate::config::ArchiveConfig;

/// A parsed archive query.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct MamQuery {
    pub range: ArchiveQuery,
    /// A `with` that names a resource: the store filters by its bare JID, this by the full one.
    with_full: Option<Jid>,
    /// The `ids` field: exactly these messages.
    ids: Option<Vec<u64>>,
    /// Ids the query refers to (after/before, both kinds): each must exist (§4.1.3, §4.3.2).
    referenced: Vec<u64>,
    pub flip: bool,
}

pub(super) type Refusal = StanzaErrorCondition;

/// Reads a `<query/>` of `urn:xmpp:mam:2` (the typed payload refuses with the conditions
/// XEP-0313 names) and turns it into a range of this archive's ids: archive ids are
/// microseconds, so `start`/`end` bound the same range as `after-id`/`before-id`.
pub(super) fn parse_query(query: &Element, config: &ArchiveConfig) -> Result<MamQuery, Refusal> {
    let (request, filter) = payload::MamQuery::parse_request::<u64>(query).map_err(|error| error.condition())?;
    let mut parsed = MamQuery { ids: filter.ids, flip: request.flip_page, ..MamQuery::default() };
    if let Some(with) = filter.with {
        parsed.range.with = Some(with.bare().to_string());
        parsed.with_full = (!with.is_bare()).then_some(with);
    }
    let mut after: Vec<u64> = filter.start.map(|start| start.saturating_sub(1)).into_iter().chain(filter.after_id).collect();
    let mut before: Vec<u64> = filter.end.map(|end| end.saturating_add(1)).into_iter().chain(filter.before_id).collect();
    parsed.referenced.extend(filter.after_id.into_iter().chain(filter.before_id));
    let set = request.set.unwrap_or_default();
    // `parse_request` checked that these are archive ids.
    let id = |text: &str| text.trim().parse::<u64>().map_err(|_| Refusal::ItemNotFound);
    if let Some(text) = &set.after {
        after.push(id(text)?);
        parsed.referenced.push(id(text)?);
    }
    if let Some(text) = &set.before {
        parsed.range.from_newest = true;
        if let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) {
            before.push(id(text)?);
            parsed.referenced.push(id(text)?);
        }
    }
    parsed.range.after = after.into_iter().max();
    parsed.range.before = before.into_iter().min();
    parsed.range.limit = set.max.unwrap_or(config.default_page).min(config.max_page);
    Ok(parsed)
}

/// Whether a stored message was exchanged with exactly this full JID.
fn involves(message: &ArchivedMessage, jid: &Jid) -> bool {
    Element::parse(&message.stanza).is_ok_and(|m| [m.attr("from"), m.attr("to")].into_iter().flatten().any(|a| Jid::new(a).is_ok_and(|a| a == *jid)))
}

/// The preferences as the protocol writes them (XEP-0441 §4).
pub(super) fn prefs_payload(prefs: &ArchivePrefs) -> MamPrefs {
    let default = match prefs.default {
        ArchiveDefault::Always => MamDefault::Always,
        ArchiveDefault::Never => MamDefault::Never,
        ArchiveDefault::Roster => MamDefault::Roster,
    };
    // Stored JIDs are normalised bare JIDs; one that no longer parses is left out.
    let jids = |set: &std::collections::BTreeSet<String>| set.iter().filter_map(|jid| Jid::new(jid).ok()).collect();
    MamPrefs { default, always: jids(&prefs.always), never: jids(&prefs.never) }
}

/// A preferences set as the store keeps it.
pub(super) fn parse_prefs(element: &Element) -> Result<ArchivePrefs, Refusal> {
    let prefs = MamPrefs::try_from(element).map_err(|error| error.condition())?;
    let default = match prefs.default {
        MamDefault::Always => ArchiveDefault::Always,
        MamDefault::Never => ArchiveDefault::Never,
        MamDefault::Roster => ArchiveDefault::Roster,
    };
    let jids = |list: Vec<Jid>| list.into_iter().map(|jid| jid.bare().to_string()).collect();
    Ok(ArchivePrefs { default, always: jids(prefs.always), never: jids(prefs.never) })
}

/// One result message (§4.2): the stored bytes inside `<forwarded/>`, not re-serialised.
pub(super) fn result_message(to: &Jid, archive: &Jid, query_id: Option<&str>, message: &ArchivedMessage) -> bytes::Bytes {
    let mut out = Vec::with_capacity(message.stanza.len() + 320);
    out.extend_from_slice(b"<message xmlns='jabber:client' to='");
    escape_attr(&mut out, to.as_str());
    out.extend_from_slice(b"' from='");
    escape_attr(&mut out, archive.as_str());
    out.extend_from_slice(b"'><result xmlns='urn:xmpp:mam:2'");
    if let Some(query_id) = query_id {
        out.extend_from_slice(b" queryid='");
        escape_attr(&mut out, query_id);
        out.push(b'\'');
    }
    out.extend_from_slice(format!(" id='{}'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='{}'/>", message.id, datetime::format(message.id)).as_bytes());
    out.extend_from_slice(&message.stanza);
    out.extend_from_slice(b"</forwarded></result></message>");
    out.into()
}

/// The archived messages with these ids, oldest first; `None` if any of them is not in the
/// archive (XEP-0313 then answers `item-not-found`).
async fn all_archived(archive: &dyn Archive, user: &str, ids: &[u64]) -> Result<Option<Vec<ArchivedMessage>>, StoreError> {
    let found = archive.get(user, ids).await?;
    let mut wanted = ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    Ok((found.len() == wanted.len()).then_some(found))
}

/// The page `query` selects; the inner `Err` is a protocol refusal (an unknown id).
pub(super) async fn run_query(archive: &dyn Archive, user: &str, query: &MamQuery) -> Result<Result<ArchivePage, Refusal>, StoreError> {
    if !query.referenced.is_empty() && all_archived(archive, user, &query.referenced).await?.is_none() {
        return Ok(Err(Refusal::ItemNotFound));
    }
    let range = &query.range;
    let keep = |m: &ArchivedMessage| {
        range.after.is_none_or(|a| m.id > a)
            && range.before.is_none_or(|b| m.id < b)
            && range.with.as_ref().is_none_or(|w| m.with == *w)
            && query.with_full.as_ref().is_none_or(|full| involves(m, full))
    };
    if let Some(ids) = &query.ids {
        let Some(found) = all_archived(archive, user, ids).await? else { return Ok(Err(Refusal::ItemNotFound)) };
        let mut messages: Vec<ArchivedMessage> = found.into_iter().filter(keep).collect();
        let complete = messages.len() <= range.limit;
        messages.truncate(range.limit);
        return Ok(Ok(ArchivePage { messages, complete }));
    }
    let Some(full) = &query.with_full else { return Ok(Ok(archive.query(user, range).await?)) };
    // A full-JID `with`: read the bare JID's conversation page by page and keep that resource.
    let mut window = range.clone();
    let mut kept: Vec<ArchivedMessage> = Vec::new();
    loop {
        let page = archive.query(user, &window).await?;
        let (oldest, newest) = (page.messages.first().map(|m| m.id), page.messages.last().map(|m| m.id));
        let matching = page.messages.into_iter().filter(|m| involves(m, full));
        if range.from_newest {
            let mut older: Vec<ArchivedMessage> = matching.collect();
            older.append(&mut kept);
            kept = older;
        } else {
            kept.extend(matching);
        }
        if kept.len() > range.limit || page.complete {
            let complete = page.complete && kept.len() <= range.limit;
            if range.from_newest {
                let excess = kept.len().saturating_sub(range.limit);
                kept.drain(..excess);
            } else {
                kept.truncate(range.limit);
            }
            return Ok(Ok(ArchivePage { messages: kept, complete }));
        }
        if range.from_newest {
            window.before = oldest;
        } else {
            window.after = newest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Result<MamQuery, Refusal> {
        parse_query(&Element::parse(xml.as_bytes()).expect("xml"), &ArchiveConfig::default())
    }

    fn form(fields: &str) -> String {
        format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x></query>"
        )
    }

    #[test]
    fn form_fields_become_an_id_range() {
        let parsed = query(&form(
            "<field var='with'><value>Juliet@Capulet.lit/balcony</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54.5+02:00</value></field>\
             <field var='after-id'><value>1275868800000000</value></field>",
        ))
        .expect("query");
        assert_eq!(parsed.range.with.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(parsed.with_full.as_ref().map(Jid::as_str), Some("juliet@capulet.lit/balcony"));
        assert_eq!(parsed.range.after, Some(1_275_868_800_000_000), "the later of start-1 and after-id");
        assert_eq!(parsed.range.before, Some(1_278_501_834_500_001), "end is inclusive, in UTC, to the microsecond");
        assert_eq!(parsed.referenced, [1_275_868_800_000_000]);
        assert_eq!(parsed.range.limit, 50);
        assert!(!parsed.range.from_newest);
    }

    #[test]
    fn rsm_pages_and_caps() {
        let parsed = query("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100000</max><before/></set><flip-page/></query>")
            .expect("query");
        assert_eq!(parsed.range.limit, 250, "max is capped");
        assert!(parsed.range.from_newest && parsed.flip);
        assert_eq!(parsed.range.before, None, "an empty before is the last page");
        let parsed = query("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>0</max><after>5</after><before>9</before></set></query>")
            .expect("query");
        assert_eq!((parsed.range.limit, parsed.range.after, parsed.range.before), (0, Some(5), Some(9)));
        assert_eq!(parsed.referenced, [5, 9]);
    }

    #[test]
    fn bad_forms_get_the_conditions_xep_0313_names() {
        assert_eq!(query(&form("<field var='x-unknown'><value>1</value></field>")), Err(Refusal::FeatureNotImplemented));
        assert_eq!(query(&form("<field var='start'><value>yesterday</value></field>")), Err(Refusal::BadRequest));
        assert_eq!(query(&form("<field var='with'><value>@@</value></field>")), Err(Refusal::JidMalformed));
        assert_eq!(query(&form("<field var='after-id'><value>not-an-id</value></field>")), Err(Refusal::ItemNotFound));
        assert_eq!(query(&form("<field var='with'><value>a@x</value><value>b@x</value></field>")), Err(Refusal::BadRequest));
        let wrong_type = "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x></query>";
        assert_eq!(query(wrong_type), Err(Refusal::BadRequest));
        let not_submit = "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'/></query>";
        assert_eq!(query(not_submit), Err(Refusal::BadRequest));
        let bad_max = "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query>";
        assert_eq!(query(bad_max), Err(Refusal::BadRequest));
        let index = "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>";
        assert_eq!(query(index), Err(Refusal::FeatureNotImplemented));
    }

    proptest::proptest! {
        /// Whatever a client puts in the form or the RSM set, parsing answers (a query or an
        /// error condition) and never panics; a query it accepts never pages beyond the cap.
        #[test]
        fn any_query_is_answered(
            vars in proptest::collection::vec("[a-z_-]{0,10}|with|start|end|after-id|before-id|ids|FORM_TYPE", 0..5),
            values in proptest::collection::vec(".{0,30}", 0..5),
            rsm_max in ".{0,12}",
            rsm_id in ".{0,24}",
        ) {
            let escaped = |text: &str| {
                let mut out = Vec::new();
                starling_xml::escape_attr(&mut out, text);
                String::from_utf8(out).unwrap_or_default()
            };
            let fields: String = vars
                .iter()
                .zip(values.iter().cycle())
                .map(|(var, value)| format!("<field var='{}'><value>{}</value></field>", escaped(var), escaped(value)))
                .collect();
            let (max, id) = (escaped(&rsm_max), escaped(&rsm_id));
            let xml = format!(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>{fields}</x>\
                 <set xmlns='http://jabber.org/protocol/rsm'><max>{max}</max><after>{id}</after><before>{id}</before></set></query>"
            );
            if let Ok(element) = Element::parse(xml.as_bytes())
                && let Ok(parsed) = parse_query(&element, &ArchiveConfig::default())
            {
                proptest::prop_assert!(parsed.range.limit <= 250);
            }
        }
    }

    #[test]
    fn prefs_parse_and_render() {
        let element = Element::parse(
            b"<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>Romeo@Montague.lit/orchard</jid></always><never><jid>x@y</jid></never></prefs>",
        )
        .expect("xml");
        let prefs = parse_prefs(&element).expect("prefs");
        assert_eq!(prefs.default, ArchiveDefault::Roster);
        assert_eq!(prefs.always.iter().collect::<Vec<_>>(), ["romeo@montague.lit"]);
        assert_eq!(parse_prefs(&Element::from(prefs_payload(&prefs))), Ok(prefs));
        assert_eq!(parse_prefs(&Element::parse(b"<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>").expect("xml")), Err(Refusal::BadRequest));
    }
}
