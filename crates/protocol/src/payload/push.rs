//! Push Notifications (XEP-0357): a client's `<enable/>` (§5) and `<disable/>` (§6), and the
//! notification a user's server publishes to the app server (§7), with the summary form of
//! `urn:xmpp:push:summary`.

use starling_xml::Element;

use super::data_form::{DataForm, Field, FormType};
use super::{PayloadError, expect, jid_attr};
use crate::jid::Jid;
use crate::ns;

/// `<enable jid='…' node='…'>` with optional publish-options (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEnable {
    pub service: Jid,
    pub node: String,
    pub publish_options: Option<DataForm>,
}

/// `<disable jid='…' [node='…']/>` (§6): without a node, every node at the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDisable {
    pub service: Jid,
    pub node: Option<String>,
}

impl TryFrom<&Element> for PushEnable {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<PushEnable, PayloadError> {
        expect(element, "enable", ns::PUSH)?;
        let service = jid_attr(element, "jid", "push service")?;
        let node = element.attr("node").filter(|node| !node.is_empty());
        let node = node.ok_or(PayloadError::MissingAttribute { element: "enable", attribute: "node" })?.to_owned();
        let publish_options = element.get_child("x", ns::DATA_FORMS).map(DataForm::try_from).transpose()?;
        Ok(PushEnable { service, node, publish_options })
    }
}

impl TryFrom<&Element> for PushDisable {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<PushDisable, PayloadError> {
        expect(element, "disable", ns::PUSH)?;
        let service = jid_attr(element, "jid", "push service")?;
        Ok(PushDisable { service, node: element.attr("node").filter(|node| !node.is_empty()).map(str::to_owned) })
    }
}

/// What a notification tells the app server (§7, the `urn:xmpp:push:summary` form); a field is
/// left out when `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushSummary {
    pub message_count: Option<u64>,
    pub last_message_sender: Option<Jid>,
    pub last_message_body: Option<String>,
}

/// The `<pubsub/>` payload of the IQ set that publishes a notification to `node`, with the
/// client's publish-options (§7).
pub fn notification(node: &str, summary: &PushSummary, publish_options: Option<&Element>) -> Element {
    let mut fields = vec![Field::hidden("FORM_TYPE", ns::PUSH_SUMMARY)];
    if let Some(count) = summary.message_count {
        fields.push(Field::text_single("message-count").with_value(count.to_string()));
    }
    if let Some(sender) = &summary.last_message_sender {
        fields.push(Field::text_single("last-message-sender").with_value(sender.as_str()));
    }
    if let Some(body) = &summary.last_message_body {
        fields.push(Field::text_single("last-message-body").with_value(body.as_str()));
    }
    let form = Element::from(&DataForm::new(FormType::Submit, fields));
    let item = Element::new("item", ns::PUBSUB).with_child(Element::new("notification", ns::PUSH).with_child(form));
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(Element::new("publish", ns::PUBSUB).with_attr("node", node).with_child(item));
    if let Some(options) = publish_options {
        pubsub.push_child(Element::new("publish-options", ns::PUBSUB).with_child(options.clone()));
    }
    pubsub
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        Element::parse(xml.as_bytes()).expect("xml")
    }

    #[test]
    fn xep0357_enable_with_publish_options() {
        // XEP-0357 Example 9.
        let enable = PushEnable::try_from(&parse(
            "<enable xmlns='urn:xmpp:push:0' jid='push-5.client.example' node='yxs32uqsflafdk3iuqo'>\
               <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='secret'><value>eruio234vzxc2kla-91</value></field>\
               </x></enable>",
        ))
        .expect("valid");
        assert_eq!(enable.service.as_str(), "push-5.client.example");
        assert_eq!(enable.node, "yxs32uqsflafdk3iuqo");
        assert_eq!(enable.publish_options.and_then(|form| form.field("secret").and_then(|f| f.value().map(str::to_owned))).as_deref(), Some("eruio234vzxc2kla-91"));
    }

    #[test]
    fn enable_needs_a_service_and_a_node() {
        let missing_node = PushEnable::try_from(&parse("<enable xmlns='urn:xmpp:push:0' jid='push.example'/>"));
        assert!(matches!(missing_node, Err(PayloadError::MissingAttribute { attribute: "node", .. })));
        let bad_jid = PushEnable::try_from(&parse("<enable xmlns='urn:xmpp:push:0' jid='a@@b' node='n'/>"));
        assert!(matches!(bad_jid, Err(PayloadError::MalformedJid { .. })));
        let disable = PushDisable::try_from(&parse("<disable xmlns='urn:xmpp:push:0' jid='push.example'/>")).expect("valid");
        assert_eq!(disable.node, None);
    }

    #[test]
    fn notification_carries_the_summary_and_the_options() {
        let summary = PushSummary { message_count: Some(2), last_message_sender: Some(Jid::new("juliet@capulet.example/balcony").expect("jid")), last_message_body: None };
        let options = parse("<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>s</value></field></x>");
        let pubsub = notification("yxs32uqsflafdk3iuqo", &summary, Some(&options));
        let publish = pubsub.get_child("publish", ns::PUBSUB).expect("publish");
        assert_eq!(publish.attr("node"), Some("yxs32uqsflafdk3iuqo"));
        let form = publish.get_child("item", ns::PUBSUB).and_then(|item| item.get_child("notification", ns::PUSH)).and_then(|n| n.get_child("x", ns::DATA_FORMS)).expect("form");
        let form = DataForm::try_from(form).expect("form");
        assert_eq!(form.form_type(), Some(ns::PUSH_SUMMARY));
        assert_eq!(form.field("message-count").and_then(Field::value), Some("2"));
        assert_eq!(form.field("last-message-sender").and_then(Field::value), Some("juliet@capulet.example/balcony"));
        assert!(form.field("last-message-body").is_none(), "the body only when configured");
        assert!(pubsub.get_child("publish-options", ns::PUBSUB).is_some());
    }
}
