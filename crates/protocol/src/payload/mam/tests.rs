//! XEP-0313 and XEP-0441 examples, and the refusals the archive has always answered with.

use super::*;
use crate::StanzaErrorCondition;
use crate::payload::rsm::RsmFirst;
use crate::payload::test_support::{reparse, xml};

type Refusal = StanzaErrorCondition;

fn request(text: &str) -> Result<(MamQuery, MamFilter<u64>), Refusal> {
    MamQuery::parse_request::<u64>(&xml(text)).map_err(|e| e.condition())
}

fn form(fields: &str) -> String {
    format!(
        "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x></query>"
    )
}

fn round_trips(query: &MamQuery) {
    assert_eq!(MamQuery::try_from(&reparse(&Element::from(query))).as_ref(), Ok(query));
}

/// §4.1: the examples' queries, with XEP-0313's string ids.
#[test]
fn reads_the_xep_0313_queries() {
    let (query, filter) =
        MamQuery::parse_request::<String>(&xml("<query xmlns='urn:xmpp:mam:2' queryid='f27' />")).expect("plain");
    assert_eq!((query.query_id.as_deref(), query.form.as_ref(), filter), (Some("f27"), None, MamFilter::default()));
    round_trips(&query);

    let with = form("<field var='with'>\n<value>juliet@capulet.lit</value>\n</field>");
    let (query, filter) = MamQuery::parse_request::<String>(&xml(&with)).expect("with");
    assert_eq!(filter.with, Jid::new("juliet@capulet.lit").ok());
    round_trips(&query);

    let span = form(
        "<field var='start'><value>2010-06-07T00:00:00Z</value></field><field var='end'><value>2010-07-07T13:23:54Z</value></field>",
    );
    let (_, filter) = MamQuery::parse_request::<String>(&xml(&span)).expect("timespan");
    assert_eq!((filter.start, filter.end), (Some(1_275_868_800_000_000), Some(1_278_509_034_000_000)));

    let between = form(
        "<field var='after-id'><value>28482-98726-73623</value></field><field var='before-id'><value>09af3-cc343-b409f</value></field>",
    );
    let (_, filter) = MamQuery::parse_request::<String>(&xml(&between)).expect("between");
    assert_eq!(
        (filter.after_id.as_deref(), filter.before_id.as_deref()),
        (Some("28482-98726-73623"), Some("09af3-cc343-b409f"))
    );

    let ids = form("<field var='ids'><value>28482-98726-73623</value></field>");
    assert_eq!(
        MamQuery::parse_request::<String>(&xml(&ids)).expect("ids").1.ids,
        Some(vec!["28482-98726-73623".to_owned()])
    );

    // §4.3: paging, the last page, a flipped page.
    let page = "<query xmlns='urn:xmpp:mam:2'>
        <x xmlns='jabber:x:data' type='submit'>
          <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>
          <field var='start'><value>2010-08-07T00:00:00Z</value></field>
        </x>
        <set xmlns='http://jabber.org/protocol/rsm'>
          <max>10</max>
          <after>09af3-cc343-b409f</after>
        </set>
        <flip-page/>
      </query>";
    let (query, _) = MamQuery::parse_request::<String>(&xml(page)).expect("flipped page");
    assert!(query.flip_page);
    assert_eq!(query.set.as_ref().and_then(|s| s.after.as_deref()), Some("09af3-cc343-b409f"));
    round_trips(&query);
    let last = xml(&page.replace("<after>09af3-cc343-b409f</after>", "<before/>"));
    let (query, _) = MamQuery::parse_request::<String>(&last).expect("last page");
    assert_eq!(query.set.as_ref().map(|s| (s.max, s.before.clone())), Some((Some(10), Some(None))));
}

/// §4.1.5: the server's form, and a query using fields this server does not offer.
#[test]
fn the_query_form() {
    let template = MamQuery::form_template();
    // Exactly what `query_form()` in the session crate builds.
    let field =
        |var: &str, kind: &str| Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", kind);
    let validate = Element::new("validate", "http://jabber.org/protocol/xdata-validate")
        .with_attr("datatype", "xs:string")
        .with_child(Element::new("open", "http://jabber.org/protocol/xdata-validate"));
    let session = Element::new("query", ns::MAM).with_child(
        Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "form")
            .with_child(
                field("FORM_TYPE", "hidden").with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::MAM)),
            )
            .with_child(field("with", "jid-single"))
            .with_child(field("start", "text-single"))
            .with_child(field("end", "text-single"))
            .with_child(field("before-id", "text-single"))
            .with_child(field("after-id", "text-single"))
            .with_child(field("ids", "list-multi").with_child(validate)),
    );
    assert_eq!(Element::from(&template).to_bytes(), session.to_bytes());
    round_trips(&template);
    assert_eq!(
        template.filter::<u64>().map_err(|e| e.condition()),
        Err(Refusal::BadRequest),
        "a form, not a submission"
    );

    let extended = "<query xmlns='urn:xmpp:mam:2'>
        <x xmlns='jabber:x:data' type='submit'>
          <field type='hidden' var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>
          <field type='text-single' var='{http://example.com/}free-text-search'><value>Where arth thou, my Juliet?</value></field>
        </x>
      </query>";
    assert_eq!(request(extended).map(|_| ()), Err(Refusal::FeatureNotImplemented));
    round_trips(&MamQuery::try_from(&xml(extended)).expect("as data"));
}

/// The session's `form_fields_become_an_id_range` and `rsm_pages_and_caps`, as typed values.
#[test]
fn reads_what_the_archive_reads() {
    let (_, filter) = request(&form(
        "<field var='with'><value>Juliet@Capulet.lit/balcony</value></field>\
         <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
         <field var='end'><value>2010-07-07T13:23:54.5+02:00</value></field>\
         <field var='after-id'><value>1275868800000000</value></field>",
    ))
    .expect("query");
    assert_eq!(filter.with.as_ref().map(Jid::as_str), Some("juliet@capulet.lit/balcony"));
    assert_eq!((filter.start, filter.end), (Some(1_275_868_800_000_000), Some(1_278_501_834_500_000)));
    assert_eq!(filter.after_id, Some(1_275_868_800_000_000));
    let (query, _) = request(
        "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100000</max><before/></set><flip-page/></query>",
    )
    .expect("query");
    assert_eq!(query.set, Some(RsmSet { max: Some(100_000), before: Some(None), ..RsmSet::default() }));
    let (query, _) =
        request("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>0</max><after>5</after><before>9</before></set></query>")
            .expect("query");
    assert_eq!(
        query.set.map(|s| (s.max, s.after, s.before)),
        Some((Some(0), Some("5".into()), Some(Some("9".into()))))
    );
    // Unset fields, repeated fields narrowing, and the filter as a form again.
    let (_, filter) = request(&form(
        "<field var='with'><value> </value></field><field var='start'/><field var='end'><value>2010-07-07T13:23:54Z</value></field>\
         <field var='end'><value>2010-06-07T00:00:00Z</value></field><field var='ids'><value>1</value><value> 2 </value></field>",
    ))
    .expect("query");
    assert_eq!((filter.with.as_ref(), filter.start, filter.end), (None, None, Some(1_275_868_800_000_000)));
    assert_eq!(filter.ids, Some(vec![1, 2]));
    assert_eq!(MamFilter::from_form(&filter.to_form()), Ok(filter));
}

/// The session's `bad_forms_get_the_conditions_xep_0313_names`, and the order faults are met in.
#[test]
fn refuses_with_the_conditions_xep_0313_names() {
    use StanzaErrorCondition::*;
    let refused = |text: &str| request(text).map(|_| ());
    assert_eq!(refused(&form("<field var='x-unknown'><value>1</value></field>")), Err(FeatureNotImplemented));
    assert_eq!(refused(&form("<field><value>1</value></field>")), Err(FeatureNotImplemented), "no var");
    assert_eq!(refused(&form("<field var='start'><value>yesterday</value></field>")), Err(BadRequest));
    assert_eq!(refused(&form("<field var='with'><value>@@</value></field>")), Err(JidMalformed));
    assert_eq!(refused(&form("<field var='after-id'><value>not-an-id</value></field>")), Err(ItemNotFound));
    assert_eq!(refused(&form("<field var='ids'><value>1</value><value/></field>")), Err(ItemNotFound));
    assert_eq!(refused(&form("<field var='with'><value>a@x</value><value>b@x</value></field>")), Err(BadRequest));
    let wrong_type = "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x></query>";
    assert_eq!(refused(wrong_type), Err(BadRequest));
    let no_value =
        "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'/></x></query>";
    assert_eq!(refused(no_value), Err(BadRequest));
    assert_eq!(
        refused("<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'/></query>"),
        Err(BadRequest)
    );
    assert_eq!(refused("<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data'/></query>"), Err(BadRequest));
    let rsm = |children: &str| {
        format!("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'>{children}</set></query>")
    };
    assert_eq!(refused(&rsm("<max>-1</max>")), Err(BadRequest));
    assert_eq!(refused(&rsm("<max>ten</max>")), Err(BadRequest));
    assert_eq!(refused(&rsm("<index>3</index>")), Err(FeatureNotImplemented));
    assert_eq!(refused(&rsm("<count>3</count>")), Err(BadRequest));
    assert_eq!(refused(&rsm("<first>3</first>")), Err(BadRequest));
    assert_eq!(refused(&rsm("<after>x</after>")), Err(ItemNotFound));
    assert_eq!(refused(&rsm("<before>x</before>")), Err(ItemNotFound));
    assert_eq!(refused(&rsm("<after/>")), Err(ItemNotFound), "an empty after names no id");
    assert_eq!(refused(&rsm("<max xmlns='urn:other'>1</max>")), Ok(()), "read by name, as the server always has");
    // The first fault decides: fields in order, then RSM children in order.
    assert_eq!(
        refused(&form("<field var='after-id'><value>x</value></field><field var='x-unknown'/>")),
        Err(ItemNotFound)
    );
    assert_eq!(
        refused(&form("<field var='x-unknown'/><field var='after-id'><value>x</value></field>")),
        Err(FeatureNotImplemented)
    );
    let both = form("<field var='x-unknown'/>")
        .replace("</query>", "<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query>");
    assert_eq!(refused(&both), Err(FeatureNotImplemented), "the form before the set");
    assert_eq!(refused(&rsm("<after>x</after><max>-1</max>")), Err(ItemNotFound));
    assert_eq!(refused(&rsm("<index>1</index><max>-1</max>")), Err(FeatureNotImplemented));
    assert_eq!(refused("<query xmlns='urn:xmpp:mam:1'/>"), Err(BadRequest));
}

/// §4.3.2 "Server returns the result IQ to signal the end", and the last page.
#[test]
fn reads_and_writes_fin() {
    let fin = MamFin::try_from(&xml("<fin xmlns='urn:xmpp:mam:2'>
        <set xmlns='http://jabber.org/protocol/rsm'>
          <first index='0'>28482-98726-73623</first>
          <last>09af3-cc343-b409f</last>
        </set>
      </fin>"))
    .expect("fin");
    assert!(!fin.complete && fin.stable);
    assert_eq!(fin.set.first, Some(RsmFirst { id: "28482-98726-73623".into(), index: Some(0) }));
    assert_eq!(MamFin::try_from(&reparse(&Element::from(&fin))).as_ref(), Ok(&fin));
    let complete = MamFin::try_from(&xml(
        "<fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='http://jabber.org/protocol/rsm'>\
        <first index='0'>23452-4534-1</first><last>390-2342-22</last><count>16</count></set></fin>",
    ))
    .expect("fin");
    assert!(complete.complete && complete.set.count == Some(16));
    // As the session writes it: complete, then stable only when false.
    let unstable = MamFin { complete: true, stable: false, set: RsmSet { count: Some(0), ..RsmSet::default() } };
    assert_eq!(
        Element::from(&unstable).to_bytes(),
        b"<fin xmlns='urn:xmpp:mam:2' complete='true' stable='false'><set xmlns='http://jabber.org/protocol/rsm'><count>0</count></set></fin>"
    );
    assert_eq!(MamFin::try_from(&reparse(&Element::from(&unstable))), Ok(unstable));
    let stable = MamFin { complete: false, stable: true, set: RsmSet::default() };
    assert_eq!(
        Element::from(&stable).to_bytes(),
        b"<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'/></fin>"
    );
    let bad = |text: &str| MamFin::try_from(&xml(text)).map_err(|e| e.condition());
    assert_eq!(bad("<fin xmlns='urn:xmpp:mam:2'/>"), Err(Refusal::BadRequest), "no set");
    assert_eq!(
        bad("<fin xmlns='urn:xmpp:mam:2' complete='yes'><set xmlns='http://jabber.org/protocol/rsm'/></fin>"),
        Err(Refusal::BadRequest)
    );
}

/// §5 "Server returns archive metadata".
#[test]
fn reads_and_writes_metadata() {
    let element = xml("<metadata xmlns='urn:xmpp:mam:2'>
        <start id='YWxwaGEg' timestamp='2008-08-22T21:09:04Z' />
        <end id='b21lZ2Eg' timestamp='2020-04-20T14:34:21Z' />
      </metadata>");
    let metadata = MamMetadata::try_from(&element).expect("metadata");
    assert_eq!(metadata.start.as_ref().map(|s| s.id.as_str()), Some("YWxwaGEg"));
    assert_eq!(MamMetadata::try_from(&reparse(&Element::from(&metadata))).as_ref(), Ok(&metadata));
    assert_eq!(
        Element::from(MamMetadata::default()).to_bytes(),
        b"<metadata xmlns='urn:xmpp:mam:2'/>",
        "an empty archive"
    );
    let ours = MamMetadata { start: Some(ArchiveEnd::at("1795000000123456", 1_795_000_000_123_456)), end: None };
    assert_eq!(ours.start.as_ref().map(|s| s.timestamp.as_str()), Some("2026-11-18T11:06:40.123456Z"));
    let bad = |text: &str| MamMetadata::try_from(&xml(text)).map_err(|e| e.condition());
    assert_eq!(bad("<metadata xmlns='urn:xmpp:mam:2'><start id='a'/></metadata>"), Err(Refusal::BadRequest));
    assert_eq!(
        bad("<metadata xmlns='urn:xmpp:mam:2'><end id='a' timestamp='soon'/></metadata>"),
        Err(Refusal::BadRequest)
    );
    assert_eq!(
        bad("<metadata xmlns='urn:xmpp:mam:2'><end timestamp='2020-04-20T14:34:21Z'/></metadata>"),
        Err(Refusal::BadRequest)
    );
}

/// XEP-0441 §4 examples, and the session's `prefs_parse_and_render`.
#[test]
fn reads_and_writes_prefs() {
    let empty = MamPrefs::try_from(&xml("<prefs xmlns='urn:xmpp:mam:2' default='roster'>
        <always/>
        <never/>
      </prefs>"))
    .expect("prefs");
    assert_eq!(empty, MamPrefs { default: MamDefault::Roster, always: vec![], never: vec![] });
    assert_eq!(
        Element::from(&empty).to_bytes(),
        b"<prefs xmlns='urn:xmpp:mam:2' default='roster'><always/><never/></prefs>"
    );
    let set = MamPrefs::try_from(&xml("<prefs xmlns='urn:xmpp:mam:2' default='roster'>
        <always>
          <jid>romeo@montague.lit</jid>
        </always>
        <never>
          <jid>montague@montague.lit</jid>
        </never>
      </prefs>"))
    .expect("prefs");
    assert_eq!(set.never, [Jid::new("montague@montague.lit").expect("jid")]);
    assert_eq!(MamPrefs::try_from(&reparse(&Element::from(&set))).as_ref(), Ok(&set));
    let full = MamPrefs::try_from(&xml(
        "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>Romeo@Montague.lit/orchard</jid></always><never><jid>x@y</jid></never></prefs>",
    ))
    .expect("prefs");
    assert_eq!(full.always.iter().map(Jid::as_str).collect::<Vec<_>>(), ["romeo@montague.lit"], "bare JIDs");
    let bad = |text: &str| MamPrefs::try_from(&xml(text)).map_err(|e| e.condition());
    assert_eq!(bad("<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>"), Err(Refusal::BadRequest));
    assert_eq!(bad("<prefs xmlns='urn:xmpp:mam:2'/>"), Err(Refusal::BadRequest));
    assert_eq!(
        bad("<prefs xmlns='urn:xmpp:mam:2' default='never'><never><jid>@</jid></never></prefs>"),
        Err(Refusal::JidMalformed)
    );
}
