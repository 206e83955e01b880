//! Tests of [`super`] (XEP-0030, XEP-0115 §5), with the XEPs' own examples.

use super::*;
use crate::StanzaErrorCondition;
use crate::payload::data_form::{Field, FormType};
use crate::payload::test_support::{reparse, xml};

/// XEP-0030 §3.1, "Result-set for information request".
const INFO_RESULT: &str = "<query xmlns='http://jabber.org/protocol/disco#info'>
    <identity
        category='conference'
        type='text'
        name='Play-Specific Chatrooms'/>
    <identity
        category='directory'
        type='chatroom'
        name='Play-Specific Chatrooms'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <feature var='jabber:iq:register'/>
    <feature var='jabber:iq:search'/>
    <feature var='jabber:iq:time'/>
    <feature var='jabber:iq:version'/>
  </query>";

/// XEP-0115 §5.3, the disco#info result of the complex generation example.
const CAPS_COMPLEX: &str = "<query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
    <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:dataforms:softwareinfo</value>
      </field>
      <field var='ip_version' type='text-multi' >
        <value>ipv4</value>
        <value>ipv6</value>
      </field>
      <field var='os'>
        <value>Mac</value>
      </field>
      <field var='os_version'>
        <value>10.5.1</value>
      </field>
      <field var='software'>
        <value>Psi</value>
      </field>
      <field var='software_version'>
        <value>0.11</value>
      </field>
    </x>
  </query>";

#[test]
fn reads_the_xep_0030_info_examples() {
    let result = DiscoInfoResult::try_from(&xml(INFO_RESULT)).expect("info");
    assert_eq!(result.identities[1], Identity::new("directory", "chatroom", Some("Play-Specific Chatrooms")));
    assert_eq!(result.features.len(), 7);
    assert_eq!(DiscoInfoResult::try_from(&reparse(&Element::from(&result))), Ok(result));

    // §3.2, "Querying a specific JID and node combination" and its result.
    let query = DiscoInfoQuery::try_from(&xml(
        "<query xmlns='http://jabber.org/protocol/disco#info' node='http://jabber.org/protocol/commands'/>",
    ))
    .expect("query");
    assert_eq!(query.node.as_deref(), Some("http://jabber.org/protocol/commands"));
    assert_eq!(DiscoInfoQuery::try_from(&reparse(&Element::from(&query))), Ok(query));
    let node_result = DiscoInfoResult::try_from(&xml(
        "<query xmlns='http://jabber.org/protocol/disco#info' node='http://jabber.org/protocol/commands'>
            <identity category='automation' type='command-list'/>
            <feature var='http://jabber.org/protocol/disco#info'/>
          </query>",
    ))
    .expect("node result");
    assert_eq!(node_result.identities[0].name, None);
    assert_eq!(DiscoInfoResult::try_from(&reparse(&Element::from(&node_result))), Ok(node_result));
}

#[test]
fn reads_the_xep_0030_items_examples() {
    // §4.2, "Service returns nodes".
    let result = DiscoItemsResult::try_from(&xml("<query xmlns='http://jabber.org/protocol/disco#items'>
        <item jid='catalog.shakespeare.lit'
              node='books'
              name='Books by and about Shakespeare'/>
        <item jid='catalog.shakespeare.lit'
              node='clothing'
              name='Wear your literary taste with pride'/>
        <item jid='catalog.shakespeare.lit'
              node='music'
              name='Music from the time of Shakespeare'/>
      </query>"))
    .expect("items");
    assert_eq!(result.items.len(), 3);
    assert_eq!(result.items[1].node.as_deref(), Some("clothing"));
    assert_eq!(DiscoItemsResult::try_from(&reparse(&Element::from(&result))), Ok(result));

    let query = DiscoItemsQuery::try_from(&xml("<query xmlns='http://jabber.org/protocol/disco#items' node='music'/>"))
        .expect("query");
    assert_eq!(query, DiscoItemsQuery { node: Some("music".into()), rsm: None });
    assert_eq!(DiscoItemsQuery::try_from(&reparse(&Element::from(&query))), Ok(query));

    let paged = DiscoItemsResult {
        node: None,
        items: vec![DiscoItem { jid: Jid::new("a.example").expect("jid"), node: None, name: None }],
        rsm: Some(RsmSet { count: Some(1), ..RsmSet::default() }),
    };
    assert_eq!(DiscoItemsResult::try_from(&reparse(&Element::from(&paged))), Ok(paged));
}

#[test]
fn refusals() {
    let refusal = |text: &str| DiscoInfoResult::try_from(&xml(text)).map_err(|e| e.condition());
    let info = |children: &str| format!("<query xmlns='http://jabber.org/protocol/disco#info'>{children}</query>");
    use StanzaErrorCondition::*;
    assert_eq!(refusal(&info("<identity type='pc'/>")), Err(BadRequest), "no category");
    assert_eq!(refusal(&info("<identity category='client'/>")), Err(BadRequest), "no type");
    assert_eq!(refusal(&info("<feature/>")), Err(BadRequest), "no var");
    assert_eq!(refusal(&info("<feature var='a'/><feature var='a'/>")), Err(BadRequest), "a feature twice");
    assert_eq!(
        refusal(&info(
            "<identity category='client' type='pc' name='A'/><identity category='client' type='pc' name='B'/>"
        )),
        Err(BadRequest),
        "same category/type/lang with another name"
    );
    assert_eq!(refusal(&info("<x xmlns='jabber:x:data'/>")), Err(BadRequest), "a form without type");
    let items = DiscoItemsResult::try_from(&xml(
        "<query xmlns='http://jabber.org/protocol/disco#items'><item jid='@@'/></query>",
    ));
    assert_eq!(items.map_err(|e| e.condition()), Err(JidMalformed));
    let items = DiscoItemsQuery::try_from(&xml(
        "<query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set></query>",
    ));
    assert_eq!(items.map_err(|e| e.condition()), Err(BadRequest));
}

/// XEP-0115 §5.2, the simple generation example.
#[test]
fn caps_ver_of_the_simple_example() {
    let result = DiscoInfoResult {
        identities: vec![Identity::new("client", "pc", Some("Exodus 0.9.1"))],
        features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::MUC, ns::CAPS].map(str::to_owned).to_vec(),
        ..DiscoInfoResult::default()
    };
    assert_eq!(result.caps_ver(), "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

/// XEP-0115 §5.3, the complex generation example: two languages, an extension form.
#[test]
fn caps_ver_of_the_complex_example() {
    let result = DiscoInfoResult::try_from(&xml(CAPS_COMPLEX)).expect("info");
    assert_eq!(result.caps_ver(), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    assert_eq!(result.extensions[0].form_type(), Some("urn:xmpp:dataforms:softwareinfo"));
    let reparsed = DiscoInfoResult::try_from(&reparse(&Element::from(&result))).expect("round trip");
    assert_eq!(reparsed.caps_ver(), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    assert_eq!(reparsed, result);
    // A form without FORM_TYPE does not count (§5.4), whatever else it holds.
    let mut extra = result.clone();
    extra.extensions.push(DataForm::new(FormType::Result, vec![Field::text_single("x").with_value("y")]));
    assert_eq!(extra.caps_ver(), result.caps_ver());
}

/// The session's `features::caps_ver` hashes `category/type//name<` then the sorted features;
/// for an identity and features only, this gives the same string.
#[test]
fn caps_ver_matches_the_servers_ad_hoc_hash() {
    let features = [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::LAST,
        ns::BLOCKING,
        ns::CARBONS,
        ns::VCARD,
        ns::PRIVATE,
        ns::ROSTER_VER,
        ns::PRE_APPROVAL,
        ns::REGISTER,
        "msgoffline",
    ];
    let mut sorted = features.to_vec();
    sorted.sort_unstable();
    let mut input = "server/im//Starling<".to_owned();
    for feature in sorted {
        input.push_str(feature);
        input.push('<');
    }
    let ad_hoc = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()));
    let result = DiscoInfoResult {
        identities: vec![Identity::new("server", "im", Some("Starling"))],
        features: features.map(str::to_owned).to_vec(),
        ..DiscoInfoResult::default()
    };
    assert_eq!(result.caps_ver(), ad_hoc);
}
