//! Tests of [`super`] (XEP-0004), with the XEP's own examples.

use super::*;
use crate::payload::test_support::{reparse, xml};

/// XEP-0004 §5.1, "Service Returns Bot Creation Form".
const BOT_FORM: &str = "<x xmlns='jabber:x:data' type='form'>
  <title>Bot Configuration</title>
  <instructions>Fill out this form to configure your new bot!</instructions>
  <field type='hidden'
         var='FORM_TYPE'>
    <value>jabber:bot</value>
  </field>
  <field type='fixed'><value>Section 1: Bot Info</value></field>
  <field type='text-single'
         label='The name of your bot'
         var='botname'/>
  <field type='text-multi'
         label='Helpful description of your bot'
         var='description'/>
  <field type='boolean'
         label='Public bot?'
         var='public'>
    <required/>
  </field>
  <field type='text-private'
         label='Password for special access'
         var='password'/>
  <field type='fixed'><value>Section 2: Features</value></field>
  <field type='list-multi'
         label='What features will the bot support?'
         var='features'>
    <option label='Contests'><value>contests</value></option>
    <option label='News'><value>news</value></option>
    <option label='Polls'><value>polls</value></option>
    <option label='Reminders'><value>reminders</value></option>
    <option label='Search'><value>search</value></option>
    <value>news</value>
    <value>search</value>
  </field>
  <field type='fixed'><value>Section 3: Subscriber List</value></field>
  <field type='list-single'
         label='Maximum number of subscribers'
         var='maxsubs'>
    <value>20</value>
    <option label='10'><value>10</value></option>
    <option label='20'><value>20</value></option>
    <option label='30'><value>30</value></option>
    <option label='50'><value>50</value></option>
    <option label='100'><value>100</value></option>
    <option label='None'><value>none</value></option>
  </field>
  <field type='fixed'><value>Section 4: Invitations</value></field>
  <field type='jid-multi'
         label='People to invite'
         var='invitelist'>
    <desc>Tell all your friends about your new bot!</desc>
  </field>
</x>";

#[test]
fn reads_the_xep_0004_configuration_form() {
    let form = DataForm::try_from(&xml(BOT_FORM)).expect("form");
    assert_eq!(form.type_, FormType::Form);
    assert_eq!(form.title.as_deref(), Some("Bot Configuration"));
    assert_eq!(form.instructions, ["Fill out this form to configure your new bot!"]);
    assert_eq!(form.form_type(), Some("jabber:bot"));
    assert_eq!(form.fields.len(), 12);
    assert_eq!(form.fields[1].var, None, "a fixed field may have no var");
    let public = form.field("public").expect("public");
    assert!(public.required && public.type_ == Some(FieldType::Boolean));
    let features = form.field("features").expect("features");
    assert_eq!(features.options[1], FieldOption { label: Some("News".into()), value: "news".into() });
    assert_eq!(features.values, ["news", "search"]);
    assert_eq!(
        form.field("invitelist").and_then(|f| f.desc.as_deref()),
        Some("Tell all your friends about your new bot!")
    );
    assert_eq!(DataForm::try_from(&reparse(&Element::from(&form))), Ok(form));
}

/// XEP-0004 §5.2, "Service Returns Search Results": a multi-item result.
#[test]
fn reads_the_xep_0004_search_result_table() {
    let element = xml("<x xmlns='jabber:x:data' type='result'>
  <title>Joogle Search: verona</title>
  <reported>
    <field var='name'/>
    <field var='url'/>
  </reported>
  <item>
    <field var='name'>
      <value>Comune di Verona - Benvenuti nel sito ufficiale</value>
    </field>
    <field var='url'>
      <value>http://www.comune.verona.it/</value>
    </field>
  </item>
  <item>
    <field var='name'>
      <value>benvenuto!</value>
    </field>
    <field var='url'>
      <value>http://www.hellasverona.it/</value>
    </field>
  </item>
  <item>
    <field var='name'>
      <value>Universita degli Studi di Verona - Home Page</value>
    </field>
    <field var='url'>
      <value>http://www.univr.it/</value>
    </field>
  </item>
  <item>
    <field var='name'>
      <value>Aeroporti del Garda</value>
    </field>
    <field var='url'>
      <value>http://www.aeroportoverona.it/</value>
    </field>
  </item>
  <item>
    <field var='name'>
      <value>Veronafiere - fiera di Verona</value>
    </field>
    <field var='url'>
      <value>http://www.veronafiere.it/</value>
    </field>
  </item>
</x>");
    let form = DataForm::try_from(&element).expect("form");
    assert_eq!(form.reported.as_ref().map(Vec::len), Some(2));
    assert_eq!(form.items.len(), 5);
    assert_eq!(form.title.as_deref(), Some("Joogle Search: verona"));
    assert_eq!(form.items[1][1].value(), Some("http://www.hellasverona.it/"));
    assert_eq!(DataForm::try_from(&reparse(&Element::from(&form))), Ok(form));
}

#[test]
fn keeps_unknown_children_and_reads_unknown_types_as_absent() {
    let element = xml("<x xmlns='jabber:x:data' type='submit'><field var='ids' type='no-such-type'>\
         <validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:string'><open/></validate>\
         <value>a</value><value>b</value></field></x>");
    let form = DataForm::try_from(&element).expect("form");
    let ids = &form.fields[0];
    assert_eq!((ids.type_, ids.effective_type()), (None, FieldType::TextSingle));
    assert_eq!(ids.values, ["a", "b"]);
    assert!(ids.extra[0].is("validate", ns::DATA_FORMS_VALIDATE));
}

#[test]
fn builders_make_what_they_say() {
    let field = Field::hidden("FORM_TYPE", ns::MAM);
    assert_eq!(
        Element::from(&field).to_bytes(),
        b"<field xmlns='jabber:x:data' var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
    );
    let field = Field::list_multi("x").with_label("X").with_option(Some("One"), "1").required();
    assert_eq!(Field::try_from(&reparse(&Element::from(&field))), Ok(field));
}

#[test]
fn refuses_a_missing_or_unknown_form_type() {
    let missing = DataForm::try_from(&xml("<x xmlns='jabber:x:data'/>"));
    assert_eq!(missing, Err(PayloadError::MissingAttribute { element: "x", attribute: "type" }));
    let unknown = DataForm::try_from(&xml("<x xmlns='jabber:x:data' type='error'/>")).map_err(|e| e.condition());
    assert_eq!(unknown, Err(crate::StanzaErrorCondition::BadRequest));
    assert!(DataForm::try_from(&xml("<x xmlns='jabber:x:oob' type='form'/>")).is_err());
}
