//! Which nodes each resource wants notifications of (XEP-0163 §4.2, "filtered notifications"):
//! a client lists `NODE+notify` among the features of its entity capabilities (XEP-0115), which
//! its presence names by a hash. The account's actor hears the presence of its own resources
//! (what they broadcast) and of its contacts' (what reaches it), asks a resource whose hash it
//! does not know for its features (disco#info from the account's bare JID), and keeps, per
//! resource, the nodes it wants. When a resource's interests become known, it gets the last
//! items of those nodes (`send_last_items`). After a takeover in a cluster this is learnt again:
//! the restored resources' presence is heard and the contacts are probed.
//!
//! Notifications to contacts' resources go, in a cluster, one bus record per edge (`reach`, the
//! direct routes kept here).
//!
//! Verified hashes (SHA-1 over what the client answered, XEP-0115 §5.4) are shared by every
//! account in the process: a hash names one feature set wherever it comes from, so a client
//! version is asked once, not once per contact. Unverified answers count for that resource only.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use starling_protocol::payload::DiscoInfoResult;
use starling_protocol::{ns, Jid, Stanza, StanzaKind};
use starling_xml::Element;

use crate::fan_out::{direct_route, Via};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

/// The ids of the disco#info requests this module sends.
const QUERY_PREFIX: &str = "pep-caps-";

/// Verified hashes kept, at most: past that the map starts again (they are asked again).
const VERIFIED_MOST: usize = 10_000;

/// Verified hash → the nodes its feature set asks notifications of.
static VERIFIED: LazyLock<Mutex<HashMap<String, Arc<HashSet<String>>>>> = LazyLock::new(Mutex::default);

fn verified() -> std::sync::MutexGuard<'static, HashMap<String, Arc<HashSet<String>>>> {
    VERIFIED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn register(r: &mut Registrar) {
    // Before presence (20), which takes presence for good.
    r.inbound(&[StanzaKind::Presence], 19, Hook::Later(|state, stanza, _| Box::pin(contact_presence(state, stanza))));
    r.outbound(&[StanzaKind::Presence], 19, Hook::Later(|state, sender, stanza, _| Box::pin(own_presence(state, sender, stanza))));
    r.inbound(&[StanzaKind::Iq], 5, Hook::Later(|state, stanza, _| Box::pin(answer(state, stanza))));
    r.outbound(&[StanzaKind::Iq], 5, Hook::Later(|state, _, stanza, _| Box::pin(answer(state, stanza))));
    r.restored(|state| Box::pin(restored(state)));
}

/// In a cluster, the account's actor took over from a node that died: what it had heard is gone.
/// Its own restored resources' presence (from their routes) is heard again, and its contacts are
/// probed, so their answers (with their caps) say again who wants what.
async fn restored(state: &mut UserState) {
    let own: Vec<(Jid, Stanza)> = state.resources().iter().filter_map(|resource| Some((resource.jid().clone(), resource.presence()?.clone()))).collect();
    for (resource, presence) in own {
        hear(state, resource, &presence).await;
    }
    for (contact, subscription) in super::roster::contacts(state).await {
        if super::roster::has_to(subscription) {
            let probe = Element::new("presence", ns::CLIENT).with_attr("type", "probe");
            let probe = Stanza::build(probe, state.user(), Some(&contact));
            state.route(probe, Instant::now());
        }
    }
}

/// What is known of one resource's interests.
enum Interest {
    Known(Arc<HashSet<String>>),
    /// Its features were asked for with this request id.
    Asked { id: String, ver: String, hash: String },
}

/// On the user: the resources it hears from, by full JID, with the caps hash they announced.
#[derive(Default)]
struct Heard {
    resources: HashMap<Jid, (String, Interest)>,
    /// In a cluster, the direct routes of contacts' resources (`fan_out`), read once and kept
    /// until the resource's next presence.
    routes: HashMap<Jid, Option<Via>>,
    queries: u64,
}

/// The full JIDs (the account's own available resources and its contacts') that want
/// notifications of `node`.
pub(super) fn interested(state: &UserState, node: &str) -> Vec<Jid> {
    let Some(heard) = state.ext.get::<Heard>() else { return Vec::new() };
    heard
        .resources
        .iter()
        .filter(|(_, (_, interest))| matches!(interest, Interest::Known(nodes) if nodes.contains(node)))
        .map(|(jid, _)| jid.clone())
        .collect()
}

/// How to reach each of `recipients`: in a cluster, a contact's resource by its direct route if it
/// has one; the account's own resources, and everyone in one process, through the router.
pub(super) async fn reach(state: &mut UserState, recipients: Vec<Jid>) -> Vec<(Jid, Option<Via>)> {
    let Some(cluster) = state.services().cluster.get().cloned() else { return recipients.into_iter().map(|recipient| (recipient, None)).collect() };
    let mut reached = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        if recipient.bare() == *state.user() {
            reached.push((recipient, None));
            continue;
        }
        let via = match state.ext.get::<Heard>().and_then(|heard| heard.routes.get(&recipient).cloned()) {
            Some(via) => via,
            None => {
                let via = direct_route(cluster.as_ref(), &recipient).await;
                state.ext.get_or_insert_with(Heard::default).routes.insert(recipient.clone(), via.clone());
                via
            }
        };
        reached.push((recipient, via));
    }
    reached
}

/// The account approved `contact`'s subscription: the contact's resources heard before, when they
/// could not see the account's nodes yet, get the last items of the nodes they want now.
pub(super) async fn contact_approved(state: &mut UserState, contact: &Jid) {
    let known: Vec<(Jid, Arc<HashSet<String>>)> = state
        .ext
        .get::<Heard>()
        .map(|heard| {
            heard
                .resources
                .iter()
                .filter(|(jid, _)| jid.bare() == *contact)
                .filter_map(|(jid, (_, interest))| match interest {
                    Interest::Known(nodes) => Some((jid.clone(), nodes.clone())),
                    Interest::Asked { .. } => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for (resource, nodes) in known {
        super::send_last_items(state, &resource, &|node| nodes.contains(node)).await;
    }
}

async fn contact_presence(state: &mut UserState, stanza: Stanza) -> Flow {
    if stanza.from.bare() != *state.user() && !stanza.from.is_bare() {
        hear(state, stanza.from.clone(), &stanza).await;
    }
    Flow::Continue(stanza)
}

async fn own_presence(state: &mut UserState, sender: &Jid, stanza: Stanza) -> Flow {
    if stanza.to.is_none() {
        hear(state, sender.clone(), &stanza).await;
    }
    Flow::Continue(stanza)
}

/// A resource's presence: forgotten when unavailable; when available with a caps hash not seen
/// for it before, its interests looked up (or asked for) and its last items sent.
async fn hear(state: &mut UserState, resource: Jid, stanza: &Stanza) {
    // A presence may come from a new connection of the same resource.
    if let Some(heard) = state.ext.get_mut::<Heard>() {
        heard.routes.remove(&resource);
    }
    match stanza.stanza_type.as_deref() {
        None => {}
        Some("unavailable") => {
            if let Some(heard) = state.ext.get_mut::<Heard>() {
                heard.resources.remove(&resource);
            }
            return;
        }
        Some(_) => return,
    }
    let Some((node, ver, hash)) = caps_of(stanza) else { return };
    let heard = state.ext.get_or_insert_with(Heard::default);
    if heard.resources.get(&resource).is_some_and(|(known, _)| *known == ver) {
        return;
    }
    let shared = verified().get(&ver).cloned();
    if let Some(nodes) = shared {
        heard.resources.insert(resource.clone(), (ver, Interest::Known(nodes.clone())));
        return super::send_last_items(state, &resource, &|node| nodes.contains(node)).await;
    }
    heard.queries += 1;
    let id = format!("{QUERY_PREFIX}{}", heard.queries);
    heard.resources.insert(resource.clone(), (ver.clone(), Interest::Asked { id: id.clone(), ver: ver.clone(), hash }));
    let query = Element::new("query", ns::DISCO_INFO).with_attr("node", format!("{node}#{ver}"));
    let iq = Element::new("iq", ns::CLIENT).with_attr("type", "get").with_attr("id", id).with_child(query);
    let request = Stanza::build(iq, state.user(), Some(&resource));
    tracing::debug!(user = %state.user(), %resource, ver, "asking a resource for its features");
    state.route(request, Instant::now());
}

/// `(node, ver, hash)` of a presence's XEP-0115 `<c/>`.
fn caps_of(stanza: &Stanza) -> Option<(String, String, String)> {
    if !stanza.mentions(ns::CAPS) {
        return None;
    }
    let element = stanza.element().ok()?;
    let c = element.get_child("c", ns::CAPS)?;
    Some((c.attr("node")?.to_owned(), c.attr("ver")?.to_owned(), c.attr("hash").unwrap_or_default().to_owned()))
}

/// The answer to one of this module's disco#info requests, from a contact's resource (inbound)
/// or one of the account's own (outbound, to its bare JID): taken here, nowhere else.
async fn answer(state: &mut UserState, stanza: Stanza) -> Flow {
    let to_account = stanza.to.as_ref().is_none_or(|to| to == state.user());
    let ours = to_account && !stanza.is_iq_request() && stanza.id.as_deref().is_some_and(|id| id.starts_with(QUERY_PREFIX));
    if !ours {
        return Flow::Continue(stanza);
    }
    let Some(heard) = state.ext.get_mut::<Heard>() else { return Flow::Stop };
    let id = stanza.id.as_deref().unwrap_or_default();
    let asked = heard.resources.iter().find_map(|(jid, (_, interest))| match interest {
        Interest::Asked { id: asked, ver, hash } if asked == id => Some((jid.clone(), ver.clone(), hash.clone())),
        _ => None,
    });
    let Some((resource, ver, hash)) = asked else { return Flow::Stop };
    let info: Option<DiscoInfoResult> = stanza.element().ok().and_then(|iq| iq.get_child("query", ns::DISCO_INFO).and_then(|query| DiscoInfoResult::try_from(query).ok()));
    let nodes: Arc<HashSet<String>> = Arc::new(
        info.iter().flat_map(|info| info.features.iter()).filter_map(|feature| feature.strip_suffix("+notify").map(str::to_owned)).collect(),
    );
    if info.is_some_and(|info| hash == "sha-1" && info.caps_ver() == ver) {
        let mut shared = verified();
        if shared.len() >= VERIFIED_MOST {
            shared.clear();
        }
        shared.insert(ver.clone(), nodes.clone());
    }
    heard.resources.insert(resource.clone(), (ver, Interest::Known(nodes.clone())));
    tracing::debug!(user = %state.user(), %resource, nodes = nodes.len(), "a resource's interests are known");
    super::send_last_items(state, &resource, &|node| nodes.contains(node)).await;
    Flow::Stop
}
