//! A room's configuration (XEP-0045 §10.2, the `muc#roomconfig` form) and what disco says of it
//! (§6.4, the `muc#roominfo` form and the `muc_…` features).

use starling_protocol::payload::muc::Role;
use starling_protocol::payload::data_form::parse_boolean;
use starling_protocol::payload::{DataForm, Field, FieldType, FormType};
use starling_protocol::{ns, StanzaErrorCondition};

use crate::config::MucConfig;

const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
const ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// Who may see occupants' real JIDs (`muc#roomconfig_whois`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Whois {
    Moderators,
    Anyone,
}

/// What an owner configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// `None`: no password.
    pub password: Option<String>,
    pub max_occupants: usize,
    pub whois: Whois,
    pub history_length: usize,
    pub allow_private_messages: bool,
    pub allow_invites: bool,
    pub occupants_change_subject: bool,
    /// Roles whose presence everyone sees (`muc#roomconfig_presencebroadcast`); in a big room,
    /// broadcasting only moderators' keeps joins from becoming presence storms.
    pub presence_broadcast: Vec<Role>,
}

impl RoomConfig {
    pub fn new(service: &MucConfig) -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_occupants: service.max_occupants,
            whois: Whois::Moderators,
            history_length: service.history_length,
            allow_private_messages: true,
            allow_invites: false,
            occupants_change_subject: false,
            presence_broadcast: vec![Role::Moderator, Role::Participant, Role::Visitor],
        }
    }

    /// Whether occupants see the presence of an occupant with `role` (its own, it always sees).
    pub fn broadcasts(&self, role: Role) -> bool {
        self.presence_broadcast.contains(&role)
    }

    /// The form an owner fills in, with the current values.
    pub fn form(&self) -> DataForm {
        let boolean = |var: &str, label: &str, value: bool| Field::boolean(var).with_label(label).with_value(if value { "1" } else { "0" });
        let text = |var: &str, label: &str, value: &str| Field::text_single(var).with_label(label).with_value(value);
        DataForm::new(
            FormType::Form,
            vec![
                Field::hidden("FORM_TYPE", ROOMCONFIG),
                text("muc#roomconfig_roomname", "Name", &self.name),
                text("muc#roomconfig_roomdesc", "Description", &self.description),
                boolean("muc#roomconfig_persistentroom", "Keep the room when it empties", self.persistent),
                boolean("muc#roomconfig_publicroom", "List the room publicly", self.public),
                boolean("muc#roomconfig_membersonly", "Members only", self.members_only),
                boolean("muc#roomconfig_moderatedroom", "Moderated", self.moderated),
                boolean("muc#roomconfig_passwordprotectedroom", "Password protected", self.password.is_some()),
                Field::new("muc#roomconfig_roomsecret", FieldType::TextPrivate).with_label("Password").with_value(self.password.clone().unwrap_or_default()),
                text("muc#roomconfig_maxusers", "Most occupants", &self.max_occupants.to_string()),
                Field::new("muc#roomconfig_whois", FieldType::ListSingle)
                    .with_label("Who may see real JIDs")
                    .with_option(Some("Moderators"), "moderators")
                    .with_option(Some("Anyone"), "anyone")
                    .with_value(if self.whois == Whois::Anyone { "anyone" } else { "moderators" }),
                text("muc#maxhistoryfetch", "Messages kept for joiners", &self.history_length.to_string()),
                boolean("muc#roomconfig_allowpm", "Private messages between occupants", self.allow_private_messages),
                boolean("muc#roomconfig_allowinvites", "Occupants may invite", self.allow_invites),
                boolean("muc#roomconfig_changesubject", "Occupants may change the subject", self.occupants_change_subject),
                Field {
                    values: self.presence_broadcast.iter().map(|role| role.as_str().to_owned()).collect(),
                    ..Field::list_multi("muc#roomconfig_presencebroadcast")
                        .with_label("Roles whose presence is broadcast")
                        .with_option(Some("Moderator"), "moderator")
                        .with_option(Some("Participant"), "participant")
                        .with_option(Some("Visitor"), "visitor")
                },
            ],
        )
    }

    /// This configuration with a submitted form applied; fields not in the form keep their
    /// value, and fields this room does not know are ignored (§10.2). `not-acceptable` for a value
    /// out of range or of the wrong type.
    pub fn with_submitted(&self, form: &DataForm, service: &MucConfig) -> Result<RoomConfig, StanzaErrorCondition> {
        let mut config = self.clone();
        let mut password_protected = None;
        for field in &form.fields {
            let Some(var) = field.var.as_deref() else { continue };
            let value = field.value().unwrap_or_default();
            let flag = || parse_boolean(value).ok_or(StanzaErrorCondition::NotAcceptable);
            let count = |most: usize| value.parse::<usize>().ok().filter(|n| *n <= most).ok_or(StanzaErrorCondition::NotAcceptable);
            match var {
                "muc#roomconfig_roomname" => config.name = value.to_owned(),
                "muc#roomconfig_roomdesc" => config.description = value.to_owned(),
                "muc#roomconfig_persistentroom" => config.persistent = flag()?,
                "muc#roomconfig_publicroom" => config.public = flag()?,
                "muc#roomconfig_membersonly" => config.members_only = flag()?,
                "muc#roomconfig_moderatedroom" => config.moderated = flag()?,
                "muc#roomconfig_passwordprotectedroom" => password_protected = Some(flag()?),
                "muc#roomconfig_roomsecret" => config.password = (!value.is_empty()).then(|| value.to_owned()),
                "muc#roomconfig_maxusers" => config.max_occupants = count(service.max_occupants)?.max(1),
                "muc#roomconfig_whois" => {
                    config.whois = match value {
                        "anyone" => Whois::Anyone,
                        "moderators" => Whois::Moderators,
                        _ => return Err(StanzaErrorCondition::NotAcceptable),
                    }
                }
                "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => config.history_length = count(service.max_history_length)?,
                "muc#roomconfig_allowpm" => config.allow_private_messages = flag()?,
                "muc#roomconfig_allowinvites" => config.allow_invites = flag()?,
                "muc#roomconfig_changesubject" => config.occupants_change_subject = flag()?,
                "muc#roomconfig_presencebroadcast" => {
                    config.presence_broadcast = field
                        .values
                        .iter()
                        .map(|value| Role::parse(value).filter(|role| *role != Role::None).ok_or(StanzaErrorCondition::NotAcceptable))
                        .collect::<Result<_, _>>()?;
                }
                _ => {}
            }
        }
        if password_protected == Some(false) {
            config.password = None;
        } else if password_protected == Some(true) && config.password.is_none() {
            return Err(StanzaErrorCondition::NotAcceptable);
        }
        Ok(config)
    }

    /// The `muc_…` features disco announces for the room (§6.4).
    pub fn features(&self) -> Vec<String> {
        let pick = |on: bool, yes: &str, no: &str| if on { yes.to_owned() } else { no.to_owned() };
        vec![
            ns::MUC.to_owned(),
            ns::STANZA_ID.to_owned(),
            pick(self.persistent, "muc_persistent", "muc_temporary"),
            pick(self.public, "muc_public", "muc_hidden"),
            pick(self.members_only, "muc_membersonly", "muc_open"),
            pick(self.moderated, "muc_moderated", "muc_unmoderated"),
            pick(self.whois == Whois::Anyone, "muc_nonanonymous", "muc_semianonymous"),
            pick(self.password.is_some(), "muc_passwordprotected", "muc_unsecured"),
        ]
    }

    /// The `muc#roominfo` form of disco#info (§6.4).
    pub fn info_form(&self, occupants: usize, subject: &str) -> DataForm {
        DataForm::new(
            FormType::Result,
            vec![
                Field::hidden("FORM_TYPE", ROOMINFO),
                Field::text_single("muc#roominfo_description").with_label("Description").with_value(self.description.as_str()),
                Field::text_single("muc#roominfo_occupants").with_label("Occupants").with_value(occupants.to_string()),
                Field::text_single("muc#roominfo_subject").with_label("Subject").with_value(subject),
                Field::boolean("muc#roominfo_subjectmod").with_label("Occupants may change the subject").with_value(if self.occupants_change_subject { "1" } else { "0" }),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submitted_form_changes_what_it_names_and_refuses_what_is_out_of_range() {
        let service = MucConfig::default();
        let config = RoomConfig::new(&service);
        let changed = config
            .with_submitted(&DataForm::submit(&[("muc#roomconfig_roomname", "Coven"), ("muc#roomconfig_passwordprotectedroom", "1"), ("muc#roomconfig_roomsecret", "cauldron"), ("x-unknown", "?")]), &service)
            .expect("valid");
        assert_eq!((changed.name.as_str(), changed.password.as_deref(), changed.public), ("Coven", Some("cauldron"), true));
        assert!(changed.features().contains(&"muc_passwordprotected".to_owned()));
        for bad in [("muc#roomconfig_maxusers", "1000000"), ("muc#roomconfig_moderatedroom", "maybe"), ("muc#roomconfig_whois", "everyone")] {
            assert_eq!(config.with_submitted(&DataForm::submit(&[bad]), &service), Err(StanzaErrorCondition::NotAcceptable), "{bad:?}");
        }
        assert_eq!(config.with_submitted(&DataForm::submit(&[("muc#roomconfig_passwordprotectedroom", "1")]), &service), Err(StanzaErrorCondition::NotAcceptable), "no password given");
    }
}
