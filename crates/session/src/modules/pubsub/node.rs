//! A XEP-0060 node — on an account (PEP) or on the PubSub service — as configured and stored:
//! its configuration (§16.4.4, the `pubsub#node_config` form), who may see it (its access model,
//! §4.5), how publish-options are checked against it (§7.1.5), and its record: the configuration
//! as a submitted form, read back through the same checks, with the affiliations (§4.1) and, on
//! the service, the subscriptions (§4.2).

use std::collections::BTreeMap;

use starling_protocol::payload::data_form::parse_boolean;
use starling_protocol::payload::{DataForm, Field, FieldType, FormType};
use starling_protocol::{ns, Jid, StanzaErrorCondition};
use starling_xml::Element;

const RECORD: &str = "urn:starling:pubsub:node:0";

/// Who may retrieve a node's items and be notified (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessModel {
    Open,
    /// Contacts with a subscription to the owner's presence (the PEP default, XEP-0163 §1.1).
    Presence,
    /// Contacts in the roster groups allowed.
    Roster,
    /// Those the owner affiliated (members, publishers).
    Whitelist,
    /// Anyone the owner approves, one subscription request at a time (§8.6; not on PEP, where
    /// nobody subscribes explicitly).
    Authorize,
}

impl AccessModel {
    pub const PEP: &[AccessModel] = &[AccessModel::Open, AccessModel::Presence, AccessModel::Roster, AccessModel::Whitelist];
    pub const SERVICE: &[AccessModel] = &[AccessModel::Open, AccessModel::Presence, AccessModel::Roster, AccessModel::Whitelist, AccessModel::Authorize];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
            AccessModel::Authorize => "authorize",
        }
    }

    fn parse(text: &str, allowed: &[AccessModel]) -> Option<AccessModel> {
        allowed.iter().copied().find(|model| model.as_str() == text)
    }
}

/// Who may publish (`pubsub#publish_model`, §16.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishModel {
    /// Owners and publishers.
    Publishers,
    /// Those, and subscribers.
    Subscribers,
    /// Anyone the access model lets in.
    Open,
}

impl PublishModel {
    fn as_str(self) -> &'static str {
        match self {
            PublishModel::Publishers => "publishers",
            PublishModel::Subscribers => "subscribers",
            PublishModel::Open => "open",
        }
    }
}

/// What bounds a node's configuration where it lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The most items a node keeps (`max` in a form).
    pub max_items: usize,
    pub access_models: &'static [AccessModel],
}

/// When the last published item is sent (`pubsub#send_last_published_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendLast {
    Never,
    OnSubscription,
    /// On subscription and whenever an interested resource comes online (the PEP default).
    OnSubscriptionAndPresence,
}

impl SendLast {
    fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSubscription => "on_sub",
            SendLast::OnSubscriptionAndPresence => "on_sub_and_presence",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeConfig {
    pub access: AccessModel,
    pub publish: PublishModel,
    pub roster_groups: Vec<String>,
    /// At most `[pep] max_items`; `max` in a form is that.
    pub max_items: usize,
    pub persist_items: bool,
    pub send_last: SendLast,
    pub deliver_payloads: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub title: String,
    /// `pubsub#type`: the payload's namespace, as the creator declared it.
    pub payload_type: String,
}

impl NodeConfig {
    pub fn new() -> NodeConfig {
        NodeConfig {
            access: AccessModel::Presence,
            publish: PublishModel::Publishers,
            roster_groups: Vec::new(),
            max_items: 1,
            persist_items: true,
            send_last: SendLast::OnSubscriptionAndPresence,
            deliver_payloads: true,
            notify_retract: true,
            notify_delete: true,
            title: String::new(),
            payload_type: String::new(),
        }
    }

    /// The form an owner fills in, with the current values.
    pub fn form(&self, limits: &Limits) -> DataForm {
        let boolean = |var: &str, value: bool| Field::boolean(var).with_value(if value { "1" } else { "0" });
        let list = |var: &str, options: &[&str], value: &str| {
            options.iter().fold(Field::new(var, FieldType::ListSingle), |field, option| field.with_option(None, *option)).with_value(value)
        };
        let max_items = if self.max_items >= limits.max_items { "max".to_owned() } else { self.max_items.to_string() };
        DataForm::new(
            FormType::Form,
            vec![
                Field::hidden("FORM_TYPE", ns::PUBSUB_NODE_CONFIG),
                Field {
                    values: vec![self.access.as_str().to_owned()],
                    ..limits.access_models.iter().fold(Field::new("pubsub#access_model", FieldType::ListSingle), |field, model| field.with_option(None, model.as_str()))
                },
                Field { values: self.roster_groups.clone(), ..Field::new("pubsub#roster_groups_allowed", FieldType::ListMulti) },
                Field::text_single("pubsub#max_items").with_value(max_items),
                boolean("pubsub#persist_items", self.persist_items),
                list("pubsub#send_last_published_item", &["never", "on_sub", "on_sub_and_presence"], self.send_last.as_str()),
                boolean("pubsub#deliver_payloads", self.deliver_payloads),
                boolean("pubsub#notify_retract", self.notify_retract),
                boolean("pubsub#notify_delete", self.notify_delete),
                Field::text_single("pubsub#title").with_value(self.title.as_str()),
                Field::text_single("pubsub#type").with_value(self.payload_type.as_str()),
                list("pubsub#publish_model", &["publishers", "subscribers", "open"], self.publish.as_str()),
            ],
        )
    }

    /// This configuration with a submitted form (or publish-options) applied; fields not in the
    /// form keep their value. `not-acceptable` for a value out of range or unknown.
    pub fn with_submitted(&self, form: &DataForm, limits: &Limits) -> Result<NodeConfig, StanzaErrorCondition> {
        let mut config = self.clone();
        for field in &form.fields {
            let Some(var) = field.var.as_deref() else { continue };
            let value = field.value().unwrap_or_default();
            let flag = || parse_boolean(value).ok_or(StanzaErrorCondition::NotAcceptable);
            match var {
                "pubsub#access_model" => config.access = AccessModel::parse(value, limits.access_models).ok_or(StanzaErrorCondition::NotAcceptable)?,
                "pubsub#roster_groups_allowed" => config.roster_groups = field.values.clone(),
                "pubsub#max_items" => {
                    config.max_items = match value {
                        "max" => limits.max_items,
                        _ => value.parse::<usize>().ok().filter(|n| (1..=limits.max_items).contains(n)).ok_or(StanzaErrorCondition::NotAcceptable)?,
                    }
                }
                "pubsub#persist_items" => config.persist_items = flag()?,
                "pubsub#send_last_published_item" => {
                    config.send_last = match value {
                        "never" => SendLast::Never,
                        "on_sub" => SendLast::OnSubscription,
                        "on_sub_and_presence" => SendLast::OnSubscriptionAndPresence,
                        _ => return Err(StanzaErrorCondition::NotAcceptable),
                    }
                }
                "pubsub#deliver_payloads" => config.deliver_payloads = flag()?,
                "pubsub#notify_retract" => config.notify_retract = flag()?,
                "pubsub#notify_delete" => config.notify_delete = flag()?,
                "pubsub#title" => config.title = value.to_owned(),
                "pubsub#type" => config.payload_type = value.to_owned(),
                "pubsub#publish_model" => {
                    config.publish = [PublishModel::Publishers, PublishModel::Subscribers, PublishModel::Open]
                        .into_iter()
                        .find(|model| model.as_str() == value)
                        .ok_or(StanzaErrorCondition::NotAcceptable)?
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// XEP-0060 §7.1.5: whether every publish-option is what the node has (a field the node
    /// does not know is not met).
    pub fn meets(&self, options: &DataForm, limits: &Limits) -> bool {
        let own = self.form(limits);
        options.fields.iter().filter(|field| field.var.as_deref().is_some_and(|var| var != "FORM_TYPE")).all(|wanted| {
            let Some(have) = own.field(wanted.var.as_deref().unwrap_or_default()) else { return false };
            let normal = |values: &[String]| -> Vec<String> {
                values.iter().map(|value| match value.as_str() {
                    "true" => "1".to_owned(),
                    "false" => "0".to_owned(),
                    other => other.to_owned(),
                }).collect()
            };
            let wanted_values = normal(&wanted.values);
            // "max" and the most a node may keep are the same.
            let wanted_values = if have.var.as_deref() == Some("pubsub#max_items") && wanted_values == [limits.max_items.to_string()] { vec!["max".to_owned()] } else { wanted_values };
            normal(&have.values) == wanted_values
        })
    }
}

/// An entity's affiliation with a node (§4.1); none is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affiliation {
    Owner,
    Publisher,
    /// On the whitelist (§4.5).
    Member,
    Outcast,
}

impl Affiliation {
    pub const ALL: [Affiliation; 4] = [Affiliation::Owner, Affiliation::Publisher, Affiliation::Member, Affiliation::Outcast];

    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::Member => "member",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(text: &str) -> Option<Affiliation> {
        Affiliation::ALL.into_iter().find(|affiliation| affiliation.as_str() == text)
    }
}

/// A subscription to a service node (§4.2): one per JID, approved or waiting for an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub subid: String,
    pub pending: bool,
}

/// A node as stored: its configuration, affiliations and subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub config: NodeConfig,
    /// By bare JID; a PEP node's owner is its account, not listed.
    pub affiliations: BTreeMap<Jid, Affiliation>,
    /// By the subscriber's JID, bare or full (only on the service).
    pub subscriptions: BTreeMap<Jid, Subscription>,
}

impl Node {
    pub fn new(config: NodeConfig) -> Node {
        Node { config, affiliations: BTreeMap::new(), subscriptions: BTreeMap::new() }
    }

    pub fn affiliation(&self, bare: &Jid) -> Option<Affiliation> {
        self.affiliations.get(bare).copied()
    }

    /// Whether the whitelist access model lets `bare` in.
    pub fn whitelisted(&self, bare: &Jid) -> bool {
        matches!(self.affiliation(bare), Some(Affiliation::Owner | Affiliation::Publisher | Affiliation::Member))
    }

    pub fn encode(&self, limits: &Limits) -> Vec<u8> {
        let mut form = self.config.form(limits);
        form.type_ = FormType::Submit;
        let mut record = Element::new("node", RECORD).with_child((&form).into());
        for (jid, affiliation) in &self.affiliations {
            // Members as PEP's whitelists were first written.
            record.push_child(match affiliation {
                Affiliation::Member => Element::new("member", RECORD).with_attr("jid", jid.as_str()),
                other => Element::new("affiliation", RECORD).with_attr("jid", jid.as_str()).with_attr("affiliation", other.as_str()),
            });
        }
        for (jid, subscription) in &self.subscriptions {
            let mut element = Element::new("subscription", RECORD).with_attr("jid", jid.as_str()).with_attr("subid", subscription.subid.as_str());
            if subscription.pending {
                element.set_attr("pending", "1");
            }
            record.push_child(element);
        }
        record.to_bytes()
    }

    pub fn decode(bytes: &[u8], limits: &Limits) -> Option<Node> {
        let record = Element::parse(bytes).ok().filter(|record| record.is("node", RECORD))?;
        let form = DataForm::try_from(record.get_child("x", ns::DATA_FORMS)?).ok()?;
        let mut node = Node::new(NodeConfig::new().with_submitted(&form, limits).ok()?);
        for child in record.children() {
            let Some(jid) = child.attr("jid").and_then(|jid| Jid::new(jid).ok()) else { continue };
            if child.is("member", RECORD) {
                node.affiliations.insert(jid, Affiliation::Member);
            } else if child.is("affiliation", RECORD)
                && let Some(affiliation) = child.attr("affiliation").and_then(Affiliation::parse)
            {
                node.affiliations.insert(jid, affiliation);
            } else if child.is("subscription", RECORD) {
                let subid = child.attr("subid").unwrap_or_default().to_owned();
                node.subscriptions.insert(jid, Subscription { subid, pending: child.attr("pending").is_some() });
            }
        }
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_options_are_met_only_by_a_node_configured_alike() {
        let limits = Limits { max_items: 1000, access_models: AccessModel::PEP };
        let omemo = NodeConfig::new().with_submitted(&DataForm::submit(&[("pubsub#access_model", "open"), ("pubsub#max_items", "max")]), &limits).expect("valid");
        assert_eq!((omemo.access, omemo.max_items), (AccessModel::Open, limits.max_items));
        let options = DataForm::submit(&[("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS), ("pubsub#access_model", "open"), ("pubsub#persist_items", "true"), ("pubsub#max_items", "max")]);
        assert!(omemo.meets(&options, &limits));
        assert!(!NodeConfig::new().meets(&options, &limits), "presence access is not open");
        assert!(!omemo.meets(&DataForm::submit(&[("pubsub#unknown", "1")]), &limits), "an unknown option is not met");
        for bad in [("pubsub#max_items", "0"), ("pubsub#access_model", "authorize"), ("pubsub#persist_items", "maybe")] {
            assert_eq!(NodeConfig::new().with_submitted(&DataForm::submit(&[bad]), &limits), Err(StanzaErrorCondition::NotAcceptable), "{bad:?}");
        }
    }

    #[test]
    fn a_node_record_reads_back_as_it_was_written() {
        let limits = Limits { max_items: 1000, access_models: AccessModel::SERVICE };
        let config = NodeConfig { title: "Bookmarks".into(), access: AccessModel::Authorize, max_items: 7, publish: PublishModel::Open, ..NodeConfig::new() };
        let mut node = Node::new(config);
        node.affiliations.insert(Jid::new("crone@example.com").expect("jid"), Affiliation::Member);
        node.affiliations.insert(Jid::new("hag@example.com").expect("jid"), Affiliation::Owner);
        node.subscriptions.insert(Jid::new("hag@example.com/broom").expect("jid"), Subscription { subid: "s1".into(), pending: true });
        assert_eq!(Node::decode(&node.encode(&limits), &limits), Some(node));
        let pep = Limits { access_models: AccessModel::PEP, ..limits };
        assert_eq!(Node::decode(&Node::new(NodeConfig { access: AccessModel::Authorize, ..NodeConfig::new() }).encode(&limits), &pep), None, "authorize is not PEP's");
        assert_eq!(Node::decode(b"<other/>", &limits), None);
    }
}
