//! Publish-Subscribe (XEP-0060) as PEP (XEP-0163) and a PubSub service use it: the requests of
//! `<pubsub/>` (publish with publish-options, retract, items, create with configure, subscribe,
//! unsubscribe, subscriptions, affiliations) and of `<pubsub xmlns='…#owner'/>` (configure,
//! delete, purge, default); the answers; the event notifications; and the `pubsub#errors`
//! conditions.

use starling_xml::Element;

use super::data_form::DataForm;
use super::{PayloadError, expect, jid_attr};
use crate::error::{StanzaError, StanzaErrorCondition};
use crate::jid::Jid;
use crate::ns;

/// An `<item/>`: its id (the service gives one when a publisher does not) and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: Option<String>,
    pub payload: Option<Element>,
}

/// What a `<pubsub/>` request asks (XEP-0060 §6, §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubRequest {
    /// §7.1, with XEP-0060 §7.1.5 publish-options.
    Publish { node: String, item: Item, options: Option<DataForm> },
    /// §7.2; `notify`: the subscribers are told.
    Retract { node: String, ids: Vec<String>, notify: bool },
    /// §6.5: every item (newest first, at most `max`), or those named.
    Items { node: String, ids: Vec<String>, max: Option<usize> },
    /// §8.1: a node (a service picks the id when `None`), configured with the form if given.
    Create { node: Option<String>, config: Option<DataForm> },
    /// §6.1.
    Subscribe { node: String, jid: Jid },
    /// §6.2.
    Unsubscribe { node: String, jid: Jid },
    /// §5.6: the requester's subscriptions (to one node, or all).
    Subscriptions { node: Option<String> },
    /// §5.7: the requester's affiliations.
    Affiliations { node: Option<String> },
}

/// What a `<pubsub xmlns='…#owner'/>` request asks (XEP-0060 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubOwnerRequest {
    /// §8.2: the form (get), or a submitted one (set).
    Configure { node: String, form: Option<DataForm> },
    /// §8.3: the default configuration.
    Default,
    /// §8.4.
    Delete { node: String },
    /// §8.5.
    Purge { node: String },
    /// §8.8: a node's subscriptions (get), or changes to them as `(jid, state)` (set).
    Subscriptions { node: String, changes: Vec<(Jid, String)> },
    /// §8.9: a node's affiliations (get), or changes to them as `(jid, affiliation)` (set).
    Affiliations { node: String, changes: Vec<(Jid, String)> },
}

fn node_attr(element: &Element, name: &'static str) -> Result<String, PayloadError> {
    element
        .attr("node")
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .ok_or(PayloadError::MissingAttribute { element: name, attribute: "node" })
}

fn item_ids(element: &Element, ns: &str) -> Vec<String> {
    element.children().filter(|child| child.is("item", ns)).filter_map(|item| item.attr("id").map(str::to_owned)).collect()
}

fn form_in(element: Option<&Element>) -> Result<Option<DataForm>, PayloadError> {
    element.and_then(|wrapper| wrapper.get_child("x", ns::DATA_FORMS)).map(DataForm::try_from).transpose()
}

impl TryFrom<&Element> for PubSubRequest {
    type Error = PayloadError;

    fn try_from(pubsub: &Element) -> Result<PubSubRequest, PayloadError> {
        expect(pubsub, "pubsub", ns::PUBSUB)?;
        let child = |name: &str| pubsub.get_child(name, ns::PUBSUB);
        // `<publish-options/>` and `<configure/>` go beside an action; alone they are none.
        let action = pubsub
            .children()
            .find(|c| c.ns() == ns::PUBSUB && !matches!(c.name(), "publish-options" | "configure"))
            .ok_or(PayloadError::MissingChild { element: "pubsub", child: "an action" })?;
        match action.name() {
            "publish" => {
                let node = node_attr(action, "publish")?;
                let mut items = action.children().filter(|c| c.is("item", ns::PUBSUB));
                let item = match (items.next(), items.next()) {
                    (Some(item), None) => Item { id: item.attr("id").filter(|id| !id.is_empty()).map(str::to_owned), payload: item.children().next().cloned() },
                    (None, _) => Item { id: None, payload: None },
                    (Some(_), Some(_)) => return Err(PayloadError::NotAcceptable("one item per publish")),
                };
                Ok(PubSubRequest::Publish { node, item, options: form_in(child("publish-options"))? })
            }
            "retract" => {
                let notify = matches!(action.attr("notify"), Some("true" | "1"));
                Ok(PubSubRequest::Retract { node: node_attr(action, "retract")?, ids: item_ids(action, ns::PUBSUB), notify })
            }
            "items" => {
                let max = action.attr("max_items").map(|max| max.parse().map_err(|_| PayloadError::InvalidValue { what: "max_items", value: max.to_owned() })).transpose()?;
                Ok(PubSubRequest::Items { node: node_attr(action, "items")?, ids: item_ids(action, ns::PUBSUB), max })
            }
            "create" => Ok(PubSubRequest::Create {
                node: action.attr("node").filter(|node| !node.is_empty()).map(str::to_owned),
                config: form_in(child("configure"))?,
            }),
            "subscribe" => Ok(PubSubRequest::Subscribe { node: node_attr(action, "subscribe")?, jid: jid_attr(action, "jid", "subscriber")? }),
            "unsubscribe" => Ok(PubSubRequest::Unsubscribe { node: node_attr(action, "unsubscribe")?, jid: jid_attr(action, "jid", "subscriber")? }),
            "subscriptions" => Ok(PubSubRequest::Subscriptions { node: action.attr("node").map(str::to_owned) }),
            "affiliations" => Ok(PubSubRequest::Affiliations { node: action.attr("node").map(str::to_owned) }),
            other => Err(PayloadError::Unsupported(format!("pubsub <{other}/>"))),
        }
    }
}

impl TryFrom<&Element> for PubSubOwnerRequest {
    type Error = PayloadError;

    fn try_from(pubsub: &Element) -> Result<PubSubOwnerRequest, PayloadError> {
        expect(pubsub, "pubsub", ns::PUBSUB_OWNER)?;
        let action = pubsub.children().find(|c| c.ns() == ns::PUBSUB_OWNER).ok_or(PayloadError::MissingChild { element: "pubsub", child: "an action" })?;
        match action.name() {
            "configure" => Ok(PubSubOwnerRequest::Configure { node: node_attr(action, "configure")?, form: form_in(Some(action))? }),
            "default" => Ok(PubSubOwnerRequest::Default),
            "delete" => Ok(PubSubOwnerRequest::Delete { node: node_attr(action, "delete")? }),
            "purge" => Ok(PubSubOwnerRequest::Purge { node: node_attr(action, "purge")? }),
            "subscriptions" => {
                Ok(PubSubOwnerRequest::Subscriptions { node: node_attr(action, "subscriptions")?, changes: changes(action, "subscription", "subscription")? })
            }
            "affiliations" => {
                Ok(PubSubOwnerRequest::Affiliations { node: node_attr(action, "affiliations")?, changes: changes(action, "affiliation", "affiliation")? })
            }
            other => Err(PayloadError::Unsupported(format!("pubsub#owner <{other}/>"))),
        }
    }
}

/// The `(jid, value)` pairs of an owner's list of changes (§8.8.2, §8.9.2).
fn changes(list: &Element, child: &'static str, value: &'static str) -> Result<Vec<(Jid, String)>, PayloadError> {
    list.children()
        .filter(|c| c.is(child, ns::PUBSUB_OWNER))
        .map(|c| {
            let jid = jid_attr(c, "jid", child)?;
            let state = c.attr(value).ok_or(PayloadError::MissingAttribute { element: child, attribute: value })?;
            Ok((jid, state.to_owned()))
        })
        .collect()
}

/// One subscription as the service reports it (§6.1.2, §5.6, §8.8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState<'a> {
    pub node: &'a str,
    pub jid: &'a Jid,
    /// `subscribed`, `pending`, `unconfigured` or `none`.
    pub state: &'a str,
    pub subid: Option<&'a str>,
}

impl SubscriptionState<'_> {
    fn to_element(&self, ns: &str, with_node: bool) -> Element {
        let mut element = Element::new("subscription", ns).with_attr("jid", self.jid.as_str()).with_attr("subscription", self.state);
        if with_node {
            element.set_attr("node", self.node);
        }
        if let Some(subid) = self.subid {
            element.set_attr("subid", subid);
        }
        element
    }
}

/// §6.1.2: the subscription a subscribe request made.
pub fn subscription_result(subscription: &SubscriptionState<'_>) -> Element {
    Element::new("pubsub", ns::PUBSUB).with_child(subscription.to_element(ns::PUBSUB, true))
}

/// §5.6 (the requester's, in `pubsub`) and §8.8.1 (a node's, in `pubsub#owner`, `node` given).
pub fn subscriptions_result(ns: &str, node: Option<&str>, subscriptions: &[SubscriptionState<'_>]) -> Element {
    let mut list = Element::new("subscriptions", ns);
    if let Some(node) = node {
        list.set_attr("node", node);
    }
    for subscription in subscriptions {
        list.push_child(subscription.to_element(ns, node.is_none()));
    }
    Element::new("pubsub", ns).with_child(list)
}

/// §5.7 (the requester's, `(node, affiliation)`, in `pubsub`) and §8.9.1 (a node's,
/// `(jid, affiliation)`, in `pubsub#owner`, `node` given).
pub fn affiliations_result<'a>(ns: &str, node: Option<&str>, affiliations: impl IntoIterator<Item = (&'a str, &'a str)>) -> Element {
    let mut list = Element::new("affiliations", ns);
    if let Some(node) = node {
        list.set_attr("node", node);
    }
    for (who, affiliation) in affiliations {
        let key = if node.is_some() { "jid" } else { "node" };
        list.push_child(Element::new("affiliation", ns).with_attr(key, who).with_attr("affiliation", affiliation));
    }
    Element::new("pubsub", ns).with_child(list)
}

/// An item as a result or a notification carries it.
fn item_element(id: &str, payload: Option<&Element>, ns: &str) -> Element {
    let mut item = Element::new("item", ns).with_attr("id", id);
    if let Some(payload) = payload {
        item.push_child(payload.clone());
    }
    item
}

/// §7.1.2: `<pubsub><publish node=…><item id=…/></publish></pubsub>`, the id the item got.
pub fn publish_result(node: &str, id: &str) -> Element {
    let publish = Element::new("publish", ns::PUBSUB).with_attr("node", node).with_child(Element::new("item", ns::PUBSUB).with_attr("id", id));
    Element::new("pubsub", ns::PUBSUB).with_child(publish)
}

/// §6.5.2: the items, as `(id, payload)`.
pub fn items_result<'a>(node: &str, items: impl IntoIterator<Item = (&'a str, Option<&'a Element>)>) -> Element {
    let mut list = Element::new("items", ns::PUBSUB).with_attr("node", node);
    for (id, payload) in items {
        list.push_child(item_element(id, payload, ns::PUBSUB));
    }
    Element::new("pubsub", ns::PUBSUB).with_child(list)
}

/// §8.1.1: the node a service created (when it picked the id).
pub fn create_result(node: &str) -> Element {
    Element::new("pubsub", ns::PUBSUB).with_child(Element::new("create", ns::PUBSUB).with_attr("node", node))
}

/// §8.2.1: the configuration form of a node.
pub fn configure_result(node: Option<&str>, form: &DataForm) -> Element {
    let mut configure = Element::new(if node.is_some() { "configure" } else { "default" }, ns::PUBSUB_OWNER).with_child(form.into());
    if let Some(node) = node {
        configure.set_attr("node", node);
    }
    Element::new("pubsub", ns::PUBSUB_OWNER).with_child(configure)
}

/// What a notification says happened to a node (§7.1.2.1, §7.2.2.1, §8.4.3.1, §8.5.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Items published (with payload or without, as the node is configured).
    Published { node: &'a str, items: Vec<(&'a str, Option<&'a Element>)> },
    Retracted { node: &'a str, ids: Vec<&'a str> },
    Deleted { node: &'a str },
    Purged { node: &'a str },
    /// §8.6.3 (approved or denied), §8.8.2.3 (changed by an owner): a subscription's new state.
    Subscription(SubscriptionState<'a>),
}

impl Event<'_> {
    /// The `<event xmlns='…#event'/>` a notification message carries.
    pub fn to_element(&self) -> Element {
        let child = match self {
            Event::Published { node, items } => {
                let mut list = Element::new("items", ns::PUBSUB_EVENT).with_attr("node", *node);
                for (id, payload) in items {
                    list.push_child(item_element(id, *payload, ns::PUBSUB_EVENT));
                }
                list
            }
            Event::Retracted { node, ids } => {
                let mut list = Element::new("items", ns::PUBSUB_EVENT).with_attr("node", *node);
                for id in ids {
                    list.push_child(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", *id));
                }
                list
            }
            Event::Deleted { node } => Element::new("delete", ns::PUBSUB_EVENT).with_attr("node", *node),
            Event::Purged { node } => Element::new("purge", ns::PUBSUB_EVENT).with_attr("node", *node),
            Event::Subscription(subscription) => subscription.to_element(ns::PUBSUB_EVENT, true),
        };
        Element::new("event", ns::PUBSUB_EVENT).with_child(child)
    }
}

/// An error with a `pubsub#errors` condition (§7.1.3, §6.1.3 …), and for `unsupported` the
/// feature (`feature='…'`).
pub fn pubsub_error(condition: StanzaErrorCondition, app: &str, feature: Option<&str>) -> StanzaError {
    let mut element = Element::new(app, ns::PUBSUB_ERRORS);
    if let Some(feature) = feature {
        element.set_attr("feature", feature);
    }
    StanzaError::new(condition).with_app(element)
}

/// §8.6.1: the form asking a node's owner to approve a subscription (`pubsub#subscribe_authorization`).
pub fn authorization_request(node: &str, subscriber: &Jid, subid: &str) -> DataForm {
    use super::data_form::{Field, FieldType, FormType};
    DataForm::new(
        FormType::Form,
        vec![
            Field::hidden("FORM_TYPE", ns::PUBSUB_SUBSCRIBE_AUTHORIZATION),
            Field::text_single("pubsub#node").with_value(node),
            Field::new("pubsub#subscriber_jid", FieldType::JidSingle).with_value(subscriber.as_str()),
            Field::text_single("pubsub#subid").with_value(subid),
            Field::boolean("pubsub#allow").with_value("0"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        Element::parse(xml.as_bytes()).expect("xml")
    }

    #[test]
    fn a_publish_with_publish_options_as_omemo_clients_send_it() {
        // XEP-0384 §5.3.2, XEP-0060 §7.1.5.
        let request = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
               <publish node='urn:xmpp:omemo:2:devices'><item id='current'><devices xmlns='urn:xmpp:omemo:2'><device id='12345'/></devices></item></publish>\
               <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub>",
        );
        let PubSubRequest::Publish { node, item, options } = PubSubRequest::try_from(&request).expect("publish") else { panic!("kind") };
        assert_eq!(node, "urn:xmpp:omemo:2:devices");
        assert_eq!(item.id.as_deref(), Some("current"));
        assert!(item.payload.expect("payload").is("devices", "urn:xmpp:omemo:2"));
        assert_eq!(options.expect("options").field("pubsub#access_model").and_then(|field| field.value()), Some("open"));
    }

    #[test]
    fn items_retract_create_and_owner_requests() {
        let items = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='princely_musings' max_items='2'/></pubsub>");
        assert_eq!(PubSubRequest::try_from(&items), Ok(PubSubRequest::Items { node: "princely_musings".into(), ids: vec![], max: Some(2) }));
        let by_id = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item id='a'/><item id='b'/></items></pubsub>");
        assert_eq!(PubSubRequest::try_from(&by_id), Ok(PubSubRequest::Items { node: "n".into(), ids: vec!["a".into(), "b".into()], max: None }));
        let retract = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='n' notify='true'><item id='ae890ac52d0df67ed7cfdf51b644e901'/></retract></pubsub>");
        assert_eq!(
            PubSubRequest::try_from(&retract),
            Ok(PubSubRequest::Retract { node: "n".into(), ids: vec!["ae890ac52d0df67ed7cfdf51b644e901".into()], notify: true })
        );
        let create = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='n'/><configure/></pubsub>");
        assert_eq!(PubSubRequest::try_from(&create), Ok(PubSubRequest::Create { node: Some("n".into()), config: None }));
        let no_node = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish/></pubsub>");
        assert_eq!(PubSubRequest::try_from(&no_node), Err(PayloadError::MissingAttribute { element: "publish", attribute: "node" }));
        let delete = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='n'/></pubsub>");
        assert_eq!(PubSubOwnerRequest::try_from(&delete), Ok(PubSubOwnerRequest::Delete { node: "n".into() }));
        let configure = parse("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'/></pubsub>");
        assert_eq!(PubSubOwnerRequest::try_from(&configure), Ok(PubSubOwnerRequest::Configure { node: "n".into(), form: None }));
    }

    #[test]
    fn notifications_and_errors_are_written_as_the_xep_shows() {
        let payload = parse("<geoloc xmlns='http://jabber.org/protocol/geoloc'><lat>45.44</lat></geoloc>");
        let event = Event::Published { node: "http://jabber.org/protocol/geoloc", items: vec![("d41d8cd9", Some(&payload))] }.to_element();
        let expected = parse(
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='http://jabber.org/protocol/geoloc'>\
             <item id='d41d8cd9'><geoloc xmlns='http://jabber.org/protocol/geoloc'><lat>45.44</lat></geoloc></item></items></event>",
        );
        assert_eq!(event, expected);
        let retracted = Event::Retracted { node: "n", ids: vec!["a"] }.to_element();
        assert_eq!(retracted, parse("<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><retract id='a'/></items></event>"));
        let error = pubsub_error(StanzaErrorCondition::Conflict, "precondition-not-met", None).to_element();
        assert!(error.get_child("precondition-not-met", ns::PUBSUB_ERRORS).is_some(), "{error:?}");
        let read = StanzaError::from_element(&error).expect("reads back");
        assert_eq!(read.app.as_ref().map(Element::name), Some("precondition-not-met"));
    }
}
