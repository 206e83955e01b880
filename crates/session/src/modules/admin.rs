//! Service administration: XEP-0133 commands (over XEP-0050 ad-hoc commands) for the accounts in
//! `[admin] jids`, and the server's order to end a user's streams, which those commands and the
//! admin API give.
//!
//! The order is a message from the server's own domain to the user's bare JID carrying
//! `<end-sessions xmlns='urn:starling:admin:0'/>`. Clients cannot send it (the edge stamps their
//! stanzas with their own JIDs); it reaches the user's actor wherever the user is served, as any
//! stanza does (through the bus in a cluster), and is taken by the first inbound hook there, so
//! neither the archive nor a client ever sees it.

use std::time::Instant;

use starling_cluster::store::{ScramCredentials, DEFAULT_SCRAM_ITERATIONS};
use starling_protocol::payload::{DataForm, DiscoItem, DiscoItemsResult, Field, FieldType, FormType};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::Element;

use crate::iq::{Iq, IqTo};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(crate) const COMMANDS: &str = "http://jabber.org/protocol/commands";
const ADMIN: &str = "http://jabber.org/protocol/admin";
const END_SESSIONS: &str = "urn:starling:admin:0";

/// The XEP-0133 commands served, by node suffix, with their names.
const SERVED: &[(&str, &str)] = &[
    ("add-user", "Add a User"),
    ("delete-user", "Delete a User"),
    ("change-user-password", "Change User Password"),
    ("end-user-session", "End User Session"),
];

/// Why the server ends a user's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// An administrator ended them (`policy-violation`).
    Ended,
    /// The account was deleted (`not-authorized`, as after XEP-0077 cancellation).
    AccountRemoved,
}

pub(super) fn register(r: &mut Registrar) {
    r.inbound(&[StanzaKind::Message], 0, Hook::Now(|state, stanza, _| take_order(state, stanza)));
    r.iq(IqTo::Server, COMMANDS, "command", |state, iq| Box::pin(command(state, iq)));
    r.server_feature(COMMANDS);
}

/// The order to end `user`'s streams (only `resource`'s, when given), from `domain`.
pub fn end_sessions_order(domain: &Jid, user: &Jid, resource: Option<&str>, reason: EndReason) -> Stanza {
    let mut order = Element::new("end-sessions", END_SESSIONS);
    order.set_attr("reason", if reason == EndReason::AccountRemoved { "account-removed" } else { "ended" });
    if let Some(resource) = resource {
        order.set_attr("resource", resource);
    }
    Stanza::build(Element::new("message", ns::CLIENT).with_child(order), domain, Some(&user.bare()))
}

/// Ends the streams an order from the server names; any other stanza goes on. Only a message from
/// the domain itself is looked into (rare: the common path compares one JID).
fn take_order(state: &mut UserState, stanza: Stanza) -> Flow {
    if stanza.from != *state.domain() {
        return Flow::Continue(stanza);
    }
    let Some(order) = Element::parse(&stanza.bytes).ok().and_then(|message| message.get_child("end-sessions", END_SESSIONS).cloned()) else {
        return Flow::Continue(stanza);
    };
    if order.attr("reason") == Some("account-removed") {
        state.account_removed(StreamError::new(StreamErrorCondition::NotAuthorized).with_text("the account was deleted"));
        return Flow::Stop;
    }
    let error = StreamError::new(StreamErrorCondition::PolicyViolation).with_text("ended by an administrator");
    state.end_streams(|jid| order.attr("resource").is_none_or(|name| jid.resource() == Some(name)), &error);
    Flow::Stop
}

/// Whether the sender of `iq` is one of the server's administrators.
fn is_admin(state: &UserState) -> bool {
    state.services().config.admins.iter().any(|admin| admin == state.user())
}

/// The commands an administrator sees (XEP-0050 §2.2); nobody else sees any.
pub(super) fn command_items(state: &mut UserState, iq: &Iq) {
    let domain = state.domain().clone();
    let items = if is_admin(state) {
        SERVED.iter().map(|(node, name)| DiscoItem { jid: domain.clone(), node: Some(format!("{ADMIN}#{node}")), name: Some((*name).to_owned()) }).collect()
    } else {
        Vec::new()
    };
    state.reply(iq, Some(DiscoItemsResult { node: Some(COMMANDS.to_owned()), items, rsm: None }.into()));
}

/// XEP-0050 execution, stateless: a request without a submitted form gets the command's form
/// (status `executing`); the submitted form is carried out at once (`completed`).
async fn command(state: &mut UserState, iq: Iq) {
    if iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    }
    if !is_admin(state) {
        return state.refuse(&iq, StanzaErrorCondition::Forbidden);
    }
    let node = iq.payload.attr("node").unwrap_or_default().to_owned();
    let Some(command) = node.strip_prefix(ADMIN).and_then(|rest| rest.strip_prefix('#')).filter(|name| SERVED.iter().any(|(served, _)| served == name)) else {
        return state.refuse(&iq, StanzaErrorCondition::ItemNotFound);
    };
    let session = iq.payload.attr("sessionid").map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned);
    let answer = |status: &str| {
        let mut answer = Element::new("command", COMMANDS);
        answer.set_attr("node", &node);
        answer.set_attr("sessionid", &session);
        answer.set_attr("status", status);
        answer
    };
    if iq.payload.attr("action") == Some("cancel") {
        return state.reply(&iq, Some(answer("canceled")));
    }
    let submitted = iq.payload.get_child("x", ns::DATA_FORMS).and_then(|x| DataForm::try_from(x).ok()).filter(|form| form.type_ == FormType::Submit);
    let Some(form) = submitted else {
        let actions = Element::new("actions", COMMANDS).with_attr("execute", "complete").with_child(Element::new("complete", COMMANDS));
        let form = Element::from(&DataForm::new(FormType::Form, form_fields(command)));
        return state.reply(&iq, Some(answer("executing").with_child(actions).with_child(form)));
    };
    match carry_out(state, command, &form).await {
        Ok(done) => {
            let note = Element::new("note", COMMANDS).with_attr("type", "info").with_text(done);
            state.reply(&iq, Some(answer("completed").with_child(note)));
        }
        Err(condition) => state.refuse(&iq, condition),
    }
}

fn form_fields(command: &str) -> Vec<Field> {
    let form_type = Field::hidden("FORM_TYPE", ADMIN);
    let password = || Field::new("password", FieldType::TextPrivate).with_label("Password").required();
    match command {
        "add-user" => vec![form_type, Field::jid_single("accountjid").with_label("The Jabber ID for the account to be added").required(), password(), Field::new("password-verify", FieldType::TextPrivate).with_label("Retype password").required()],
        "change-user-password" => vec![form_type, Field::jid_single("accountjid").with_label("The Jabber ID for this account").required(), password()],
        _ => vec![form_type, Field::new("accountjids", FieldType::JidMulti).with_label("The Jabber ID(s)").required()],
    }
}

/// The local accounts a form's field names (bare JIDs on this domain), or `bad-request`.
fn accounts(state: &UserState, form: &DataForm, var: &str) -> Result<Vec<Jid>, StanzaErrorCondition> {
    let values = form.field(var).map(|field| field.values.as_slice()).unwrap_or_default();
    if values.is_empty() {
        return Err(StanzaErrorCondition::BadRequest);
    }
    values
        .iter()
        .map(|value| {
            let jid = Jid::new(value).map_err(|_| StanzaErrorCondition::JidMalformed)?;
            let local = jid.node().is_some() && jid.domain() == state.domain().as_str();
            local.then_some(jid).ok_or(StanzaErrorCondition::NotAcceptable)
        })
        .collect()
}

fn password(form: &DataForm) -> Result<String, StanzaErrorCondition> {
    let password = form.field("password").and_then(Field::value).filter(|password| !password.is_empty()).ok_or(StanzaErrorCondition::NotAcceptable)?;
    if form.field("password-verify").is_some_and(|verify| verify.value() != Some(password)) {
        return Err(StanzaErrorCondition::NotAcceptable);
    }
    Ok(password.to_owned())
}

async fn carry_out(state: &mut UserState, command: &str, form: &DataForm) -> Result<String, StanzaErrorCondition> {
    let store = state.services().store.clone();
    let stored = crate::state::store_condition;
    match command {
        "add-user" | "change-user-password" => {
            let account = accounts(state, form, "accountjid")?.remove(0).bare();
            let credentials = ScramCredentials::derive(&password(form)?, DEFAULT_SCRAM_ITERATIONS);
            if command == "add-user" {
                store.accounts.create(account.as_str(), credentials).await.map_err(stored)?;
                Ok(format!("{account} was added"))
            } else if store.accounts.set_credentials(account.as_str(), credentials).await.map_err(stored)? {
                Ok(format!("the password of {account} was changed"))
            } else {
                Err(StanzaErrorCondition::ItemNotFound)
            }
        }
        "delete-user" => {
            let mut deleted = Vec::new();
            for account in accounts(state, form, "accountjids")? {
                if store.remove_user(account.bare().as_str()).await.map_err(stored)? {
                    let order = end_sessions_order(state.domain(), &account, None, EndReason::AccountRemoved);
                    state.route(order, Instant::now());
                    deleted.push(account.bare().to_string());
                }
            }
            Ok(format!("deleted: {}", deleted.join(", ")))
        }
        _ => {
            let accounts = accounts(state, form, "accountjids")?;
            for account in &accounts {
                let order = end_sessions_order(state.domain(), account, account.resource(), EndReason::Ended);
                state.route(order, Instant::now());
            }
            Ok(format!("ended the sessions of {}", accounts.iter().map(Jid::as_str).collect::<Vec<_>>().join(", ")))
        }
    }
}
