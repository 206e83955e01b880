use super::*;

fn parse(xml: &str) -> Element {
    Element::parse(xml.as_bytes()).expect("parses")
}

fn request(xml: &str) -> Result<RegistryRequest, PayloadError> {
    RegistryRequest::read(&parse(xml), 8)
}

#[test]
fn a_registration_reads_its_tags_upper_cased_and_its_node() {
    let read = request(
        "<register xmlns='urn:xmpp:iot:discovery' nodeId='imc1' sourceId='MeteringTopology' selfOwned='true'>\
         <str name='sn' value='394872348732948723'/><num name='V' value=' 1.2 '/><str name='KEY' value='4857402340298342'/></register>",
    )
    .expect("a registration");
    let RegistryRequest::Register { node, self_owned, tags } = read else { panic!("{read:?}") };
    assert!(self_owned);
    assert_eq!((node.node_id.as_deref(), node.source_id.as_deref(), node.cache_type.as_deref()), (Some("imc1"), Some("MeteringTopology"), None));
    assert_eq!(tags.iter().map(|tag| tag.name.as_str()).collect::<Vec<_>>(), ["SN", "V", "KEY"]);
    assert!(tags[1].same_as(&MetaTag { name: "V".into(), value: TagValue::Num(1.20, "1.20".into()) }), "numbers compare as numbers");
    assert!(!tags[1].same_as(&MetaTag { name: "V".into(), value: TagValue::Str("1.2".into()) }), "a string is not a number");
    assert!(tags[2].is_key());
    assert_eq!(tags[1].to_element().to_bytes(), b"<num xmlns='urn:xmpp:iot:discovery' name='V' value='1.2'/>".to_vec());
}

#[test]
fn bad_tags_are_refused() {
    let refused = |tags: &str| request(&format!("<register xmlns='urn:xmpp:iot:discovery'>{tags}</register>")).expect_err(tags).condition();
    assert_eq!(refused("<str name='SN' value='1'/><str name='sn' value='2'/>"), crate::StanzaErrorCondition::BadRequest, "a name twice");
    assert_eq!(refused(&format!("<str name='{}' value='1'/>", "N".repeat(33))), crate::StanzaErrorCondition::BadRequest);
    assert_eq!(refused("<str name='A:B' value='1'/>"), crate::StanzaErrorCondition::BadRequest);
    assert_eq!(refused(&format!("<str name='SN' value='{}'/>", "v".repeat(129))), crate::StanzaErrorCondition::BadRequest);
    assert_eq!(refused("<num name='V' value='many'/>"), crate::StanzaErrorCondition::BadRequest);
    assert_eq!(refused("<num name='V' value='inf'/>"), crate::StanzaErrorCondition::BadRequest);
    assert_eq!(refused("<str value='1'/>"), crate::StanzaErrorCondition::BadRequest);
    let nine: String = (0..9).map(|n| format!("<str name='T{n}' value='x'/>")).collect();
    assert_eq!(refused(&nine), crate::StanzaErrorCondition::NotAcceptable, "more than the registry takes");
}

#[test]
fn owners_requests_name_the_thing_by_its_bare_jid() {
    assert_eq!(request("<mine xmlns='urn:xmpp:iot:discovery'><str name='KEY' value='k'/></mine>").expect("mine"), RegistryRequest::Mine { public: true, tags: vec![MetaTag { name: "KEY".into(), value: TagValue::Str("k".into()) }] });
    let RegistryRequest::Disown { jid, node } = request("<disown xmlns='urn:xmpp:iot:discovery' jid='rack@example.org/plcs' nodeId='imc1'/>").expect("disown") else { panic!() };
    assert_eq!((jid.as_str(), node.node_id.as_deref()), ("rack@example.org", Some("imc1")));
    assert_eq!(request("<remove xmlns='urn:xmpp:iot:discovery'/>").expect_err("no jid").condition(), crate::StanzaErrorCondition::JidMalformed);
    assert!(matches!(request("<update xmlns='urn:xmpp:iot:discovery'><str name='KEY' value=''/></update>"), Ok(RegistryRequest::Update { jid: None, .. })));
    assert_eq!(request("<frobnicate xmlns='urn:xmpp:iot:discovery'/>").expect_err("unknown").condition(), crate::StanzaErrorCondition::FeatureNotImplemented);
}

#[test]
fn searches_read_every_operator_and_compare_as_the_xep_says() {
    let read = request(
        "<search xmlns='urn:xmpp:iot:discovery' offset='2' maxCount='20'><strEq name='man' value='www.ktc.se'/>\
         <strMask name='SN' value='39487*' wildcard='*'/><numRange name='V' min='1' max='2' maxIncluded='false'/>\
         <numNRange name='LAT' min='0' max='10'/><strGtEq name='MODEL' value='I'/></search>",
    )
    .expect("a search");
    let RegistryRequest::Search(search) = read else { panic!() };
    assert_eq!((search.offset, search.max_count, search.operators.len()), (2, Some(20), 5));
    let SearchOperator::Num { test: range, .. } = &search.operators[2] else { panic!() };
    assert!(range.holds(&1.0) && range.holds(&1.5) && !range.holds(&2.0));
    let SearchOperator::Num { test: outside, .. } = &search.operators[3] else { panic!() };
    assert!(outside.holds(&-1.0) && !outside.holds(&0.0) && !outside.holds(&5.0) && outside.holds(&11.0));
    assert!(matches!(&search.operators[0], SearchOperator::Str { name, test: Comparison::Eq(value) } if name == "MAN" && value == "www.ktc.se"));
    assert!(request("<search xmlns='urn:xmpp:iot:discovery'/>").is_err(), "at least one operator");
    assert!(request("<search xmlns='urn:xmpp:iot:discovery'><numEq name='V' value='x'/></search>").is_err());
    assert!(request("<search xmlns='urn:xmpp:iot:discovery'><strMask name='SN' value='a' wildcard=''/></search>").is_err());
}

#[test]
fn answers_are_written_as_the_xep_shows_them() {
    let thing = Jid::new("thing@example.org").expect("jid");
    let node = NodeInfo { node_id: Some("imc1".into()), ..NodeInfo::default() };
    assert_eq!(claimed(&thing, &node, Some(false)).to_bytes(), b"<claimed xmlns='urn:xmpp:iot:discovery' jid='thing@example.org' nodeId='imc1' public='false'/>".to_vec());
    let hit = FoundThing { owner: Jid::new("owner@example.org").expect("jid"), jid: thing, node: NodeInfo::default(), tags: vec![MetaTag { name: "SN".into(), value: TagValue::Str("1".into()) }] };
    let found = found(&[hit], true);
    assert_eq!(found.attr("more"), Some("true"));
    let thing = found.get_child("thing", ns::IOT_DISCOVERY).expect("a thing");
    assert_eq!((thing.attr("owner"), thing.attr("jid"), thing.children().count()), (Some("owner@example.org"), Some("thing@example.org"), 1));
}
