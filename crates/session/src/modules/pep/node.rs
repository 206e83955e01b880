//! A PEP node's configuration (XEP-0060 §16.4.4, the `pubsub#node_config` form), who may see it
//! (its access model, XEP-0060 §4.5), how publish-options are checked against it (§7.1.5), and
//! its stored record: the configuration as a submitted form, read back through the same checks,
//! and the whitelist.

use starling_protocol::payload::data_form::parse_boolean;
use starling_protocol::payload::{DataForm, Field, FieldType, FormType};
use starling_protocol::{ns, Jid, StanzaErrorCondition};
use starling_xml::Element;

use crate::config::PepConfig;

const RECORD: &str = "urn:starling:pubsub:node:0";

/// Who may retrieve a node's items and be notified (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AccessModel {
    Open,
    /// Contacts with a subscription to the owner's presence (the PEP default, XEP-0163 §1.1).
    Presence,
    /// Contacts in the roster groups allowed.
    Roster,
    /// Those the owner listed.
    Whitelist,
}

impl AccessModel {
    fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }

    fn parse(text: &str) -> Option<AccessModel> {
        [AccessModel::Open, AccessModel::Presence, AccessModel::Roster, AccessModel::Whitelist].into_iter().find(|model| model.as_str() == text)
    }
}

/// When the last published item is sent (`pubsub#send_last_published_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendLast {
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
pub(super) struct NodeConfig {
    pub access: AccessModel,
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
    pub fn form(&self, limits: &PepConfig) -> DataForm {
        let boolean = |var: &str, value: bool| Field::boolean(var).with_value(if value { "1" } else { "0" });
        let list = |var: &str, options: &[&str], value: &str| {
            options.iter().fold(Field::new(var, FieldType::ListSingle), |field, option| field.with_option(None, *option)).with_value(value)
        };
        let max_items = if self.max_items >= limits.max_items { "max".to_owned() } else { self.max_items.to_string() };
        DataForm::new(
            FormType::Form,
            vec![
                Field::hidden("FORM_TYPE", ns::PUBSUB_NODE_CONFIG),
                list("pubsub#access_model", &["open", "presence", "roster", "whitelist"], self.access.as_str()),
                Field { values: self.roster_groups.clone(), ..Field::new("pubsub#roster_groups_allowed", FieldType::ListMulti) },
                Field::text_single("pubsub#max_items").with_value(max_items),
                boolean("pubsub#persist_items", self.persist_items),
                list("pubsub#send_last_published_item", &["never", "on_sub", "on_sub_and_presence"], self.send_last.as_str()),
                boolean("pubsub#deliver_payloads", self.deliver_payloads),
                boolean("pubsub#notify_retract", self.notify_retract),
                boolean("pubsub#notify_delete", self.notify_delete),
                Field::text_single("pubsub#title").with_value(self.title.as_str()),
                Field::text_single("pubsub#type").with_value(self.payload_type.as_str()),
                list("pubsub#publish_model", &["publishers"], "publishers"),
            ],
        )
    }

    /// This configuration with a submitted form (or publish-options) applied; fields not in the
    /// form keep their value. `not-acceptable` for a value out of range or unknown.
    pub fn with_submitted(&self, form: &DataForm, limits: &PepConfig) -> Result<NodeConfig, StanzaErrorCondition> {
        let mut config = self.clone();
        for field in &form.fields {
            let Some(var) = field.var.as_deref() else { continue };
            let value = field.value().unwrap_or_default();
            let flag = || parse_boolean(value).ok_or(StanzaErrorCondition::NotAcceptable);
            match var {
                "pubsub#access_model" => config.access = AccessModel::parse(value).ok_or(StanzaErrorCondition::NotAcceptable)?,
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
                "pubsub#publish_model" if value != "publishers" => return Err(StanzaErrorCondition::NotAcceptable),
                _ => {}
            }
        }
        Ok(config)
    }

    /// XEP-0060 §7.1.5: whether every publish-option is what the node has (a field the node
    /// does not know is not met).
    pub fn meets(&self, options: &DataForm, limits: &PepConfig) -> bool {
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

/// A node as stored: its configuration and whitelist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub config: NodeConfig,
    /// Bare JIDs allowed by the whitelist access model (besides the owner).
    pub whitelist: Vec<Jid>,
}

impl Node {
    pub fn encode(&self, limits: &PepConfig) -> Vec<u8> {
        let mut form = self.config.form(limits);
        form.type_ = FormType::Submit;
        let mut record = Element::new("node", RECORD).with_child((&form).into());
        for jid in &self.whitelist {
            record.push_child(Element::new("member", RECORD).with_attr("jid", jid.as_str()));
        }
        record.to_bytes()
    }

    pub fn decode(bytes: &[u8], limits: &PepConfig) -> Option<Node> {
        let record = Element::parse(bytes).ok().filter(|record| record.is("node", RECORD))?;
        let form = DataForm::try_from(record.get_child("x", ns::DATA_FORMS)?).ok()?;
        let config = NodeConfig::new().with_submitted(&form, limits).ok()?;
        let whitelist = record.children().filter(|child| child.is("member", RECORD)).filter_map(|child| Jid::new(child.attr("jid")?).ok()).collect();
        Some(Node { config, whitelist })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_options_are_met_only_by_a_node_configured_alike() {
        let limits = PepConfig::default();
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
        let limits = PepConfig::default();
        let config = NodeConfig { title: "Bookmarks".into(), access: AccessModel::Whitelist, max_items: 7, ..NodeConfig::new() };
        let node = Node { config, whitelist: vec![Jid::new("crone@example.com").expect("jid")] };
        assert_eq!(Node::decode(&node.encode(&limits), &limits), Some(node));
        assert_eq!(Node::decode(b"<other/>", &limits), None);
    }
}
