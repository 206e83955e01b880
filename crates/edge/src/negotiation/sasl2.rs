//! XEP-0388 SASL2, offered beside RFC 6120 SASL with the same mechanisms: `<authenticate/>` with
//! an `<initial-response/>`, challenges and responses in `urn:xmpp:sasl:2`, and on success what
//! the client asked for inline, in one round trip:
//! - XEP-0198 `<resume/>` of a stream-managed session, answered with `<resumed/>` (or `<failed/>`,
//!   and then the bind goes ahead);
//! - XEP-0386 Bind2 `<bind/>`: a resource `tag/id`, stable per client (the id is derived from
//!   the user-agent id, which it does not reveal), with the session features the session layer
//!   can apply inline (stream management, carbons, client state), answered in `<bound/>`;
//! - XEP-0484 FAST: a token on `<request-token/>` (or a rotation), and logins with one
//!   (`HT-SHA-256-*`, [`fast_login`]).
//!
//! Without a bind or resume the features of the authenticated stream follow at once, without a
//! stream restart. XEP-0440 says which channel bindings the `-PLUS` mechanisms can use.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use starling_protocol::{ns, Jid};
use starling_xml::Element;

use super::authenticate::{self, decode_text, refuse, succeed, Profile, Succeeded};
use super::{bind, resume, Negotiation, NegotiationStep, Next, Received};
use crate::end::End;
use crate::fast::{self, Issued, Refused};

pub(super) struct Sasl2;

/// Longest Bind2 tag kept in a resource; a longer one is dropped.
const MAX_TAG: usize = 64;

#[async_trait]
impl NegotiationStep for Sasl2 {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        let Some(mut authentication) = authenticate::offered(negotiation, "authentication", ns::SASL2) else { return };
        authentication.push_child(inline_features(negotiation));
        features.push_child(authentication);
        if negotiation.channel_binding.is_some() {
            let binding = Element::new("channel-binding", ns::SASL_CHANNEL_BINDING).with_attr("type", "tls-exporter");
            features.push_child(Element::new("sasl-channel-binding", ns::SASL_CHANNEL_BINDING).with_child(binding));
        }
    }

    fn takes(&self, received: &Received, _: &Negotiation<'_>) -> bool {
        received.is("authenticate", ns::SASL2)
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        // Small and rare: parsed whole for its children.
        let Ok(authenticate) = Element::parse(&received.element.rewrite(&[])) else {
            return authenticate::failure(Profile::Sasl2(Box::default()), negotiation, "malformed-request");
        };
        let request = match Sasl2Request::read(&authenticate, negotiation) {
            Ok(request) => request,
            Err(text) => {
                let mut failure = Profile::Sasl2(Box::default()).failure("malformed-request");
                failure.push_child(Element::new("text", ns::SASL2).with_text(text));
                negotiation.reply(failure);
                return Ok(Next::Negotiate);
            }
        };
        let mechanism = authenticate.attr("mechanism").unwrap_or_default();
        // No initial response is an empty one (XEP-0388 §2.2).
        let initial = match authenticate.get_child("initial-response", ns::SASL2) {
            Some(response) => decode_text(&response.text()),
            None => Some(Vec::new()),
        };
        authenticate::start(Profile::Sasl2(Box::new(request)), mechanism, initial, negotiation).await
    }
}

/// `<inline/>`: Bind2 with the session features it can enable, resumption, FAST.
fn inline_features(negotiation: &Negotiation<'_>) -> Element {
    let features = negotiation.edge.gateway.inline_features();
    let bind_inline = features.into_iter().fold(Element::new("inline", ns::BIND2), |inline, var| {
        inline.with_child(Element::new("feature", ns::BIND2).with_attr("var", var))
    });
    let mut inline = Element::new("inline", ns::SASL2).with_child(Element::new("bind", ns::BIND2).with_child(bind_inline));
    if resume::offered(negotiation) {
        inline.push_child(Element::new("sm", ns::SM));
    }
    let fast_mechanisms = offered_fast_mechanisms(negotiation);
    if !fast_mechanisms.is_empty() {
        let fast = fast_mechanisms.iter().fold(Element::new("fast", ns::FAST), |fast, mechanism| {
            fast.with_child(Element::new("mechanism", ns::FAST).with_text(*mechanism))
        });
        inline.push_child(fast);
    }
    inline
}

/// FAST mechanisms usable on this stream: over TLS only, `-EXPR` with tls-exporter only.
fn offered_fast_mechanisms(negotiation: &Negotiation<'_>) -> Vec<&'static str> {
    if negotiation.edge.fast().is_none() || !negotiation.secure {
        return Vec::new();
    }
    fast::MECHANISMS.iter().copied().filter(|mechanism| *mechanism != "HT-SHA-256-EXPR" || negotiation.channel_binding.is_some()).collect()
}

/// What an `<authenticate/>` asks for besides authentication.
#[derive(Default)]
pub(super) struct Sasl2Request {
    /// `<user-agent id='…'/>`: the client instance (FAST tokens and Bind2 resources are bound to it).
    user_agent: Option<String>,
    /// Bind2: the client's tag, and the session features it asks for inline.
    bind: Option<(Option<String>, Vec<Element>)>,
    /// XEP-0198 `<resume previd='…' h='…'/>`.
    resume: Option<(String, u32)>,
    /// XEP-0484 `<request-token mechanism='…'/>`.
    request_token: Option<&'static str>,
    /// XEP-0484 `<fast/>`: a token is used.
    fast: fast::Use,
}

impl Sasl2Request {
    /// Reads the inline requests; malformed ones refuse the whole request, with a text saying which.
    fn read(authenticate: &Element, negotiation: &Negotiation<'_>) -> Result<Sasl2Request, &'static str> {
        let mut request = Sasl2Request::default();
        if let Some(agent) = authenticate.get_child("user-agent", ns::SASL2) {
            let id = agent.attr("id").filter(|id| !id.is_empty() && id.len() <= fast::MAX_CLIENT_ID);
            request.user_agent = Some(id.ok_or("user-agent needs an id of at most 128 characters")?.to_owned());
        }
        if let Some(bind) = authenticate.get_child("bind", ns::BIND2) {
            let tag = bind.get_child("tag", ns::BIND2).map(|tag| tag.text().trim().to_owned());
            let requests = bind.children().filter(|child| child.ns() != ns::BIND2).cloned().collect();
            request.bind = Some((tag.filter(|tag| !tag.is_empty() && tag.len() <= MAX_TAG), requests));
        }
        if let Some(resume) = authenticate.get_child("resume", ns::SM) {
            let previd = resume.attr("previd").filter(|previd| !previd.is_empty());
            let h = resume.attr("h").and_then(|h| h.parse::<u32>().ok());
            let (Some(previd), Some(h)) = (previd, h) else { return Err("resume needs previd and h (0 to 2^32-1)") };
            request.resume = Some((previd.to_owned(), h));
        }
        if let Some(requested) = authenticate.get_child("request-token", ns::FAST) {
            let mechanism = requested.attr("mechanism").unwrap_or_default();
            let offered = offered_fast_mechanisms(negotiation);
            request.request_token = Some(offered.into_iter().find(|m| *m == mechanism).ok_or("request-token names a mechanism not offered")?);
        }
        if let Some(used) = authenticate.get_child("fast", ns::FAST) {
            let count = used.attr("count").map(|count| count.parse::<u32>().map_err(|_| "fast count must be 0 to 2^32-1")).transpose()?;
            request.fast = fast::Use { count, invalidate: matches!(used.attr("invalidate"), Some("true" | "1")) };
        }
        Ok(request)
    }
}

/// A login with a FAST token (XEP-0484 §3.4): one message, checked against the client's tokens.
pub(super) async fn fast_login(request: Sasl2Request, mechanism: &str, initial: Option<Vec<u8>>, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
    let profile = Profile::Sasl2(Box::default());
    let edge = negotiation.edge;
    let Some(fast) = edge.fast().filter(|_| offered_fast_mechanisms(negotiation).contains(&mechanism)) else {
        return authenticate::failure(profile, negotiation, "invalid-mechanism");
    };
    let Some(initial) = initial else { return authenticate::failure(profile, negotiation, "incorrect-encoding") };
    let Some((username, proof)) = fast::parse_initial(&initial) else { return authenticate::failure(profile, negotiation, "malformed-request") };
    if edge.throttle.is_blocked(negotiation.peer.ip(), &negotiation.account_name(&username)).await {
        edge.metrics.login(mechanism, false);
        return authenticate::failure(profile, negotiation, "temporary-auth-failure");
    }
    let (Ok(user), Some(client)) = (Jid::from_parts(Some(&username), negotiation.host.as_str(), None), request.user_agent.as_deref()) else {
        return refuse(&profile, mechanism, &username, "not-authorized", negotiation).await;
    };
    let channel_binding = if mechanism == "HT-SHA-256-EXPR" { negotiation.channel_binding.clone().unwrap_or_default() } else { Vec::new() };
    match fast.verify(user.as_str(), client, mechanism, proof, &channel_binding, request.fast).await {
        Ok(verified) => {
            let succeeded = Succeeded { mechanism, username: &username, user, data: verified.responder, token: verified.rotated };
            succeed(Profile::Sasl2(Box::new(request)), succeeded, negotiation).await
        }
        Err(Refused::Unavailable) => authenticate::failure(profile, negotiation, Refused::Unavailable.condition()),
        Err(refused) => refuse(&profile, mechanism, &username, refused.condition(), negotiation).await,
    }
}

/// Finishes a successful SASL2 authentication (XEP-0388 §2.6.1): resumes or binds as asked,
/// issues a FAST token if asked (or rotated), and answers `<success/>`.
pub(super) async fn complete(request: Sasl2Request, succeeded: Succeeded<'_>, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
    let Succeeded { user, data, token, .. } = succeeded;
    let token = match (token, request.request_token, request.user_agent.as_deref()) {
        (Some(rotated), _, _) if request.request_token.is_none() => Some(rotated),
        (_, Some(mechanism), Some(client)) => issue(negotiation, &user, client, mechanism).await,
        _ => None,
    };
    let mut identity = user.clone();
    let mut answers = Vec::new();
    let mut next = Next::Features;
    if let Some((previd, h)) = &request.resume {
        match resume::resume_session(negotiation, user.clone(), previd, *h).await {
            Ok((bound, resumed)) => {
                identity = bound.session.jid().clone();
                answers.push(resumed);
                next = Next::Bound(bound);
            }
            Err(failed) => answers.push(failed),
        }
    }
    // A resumed session has its resource: the bind is ignored (XEP-0386 §3).
    let resumed = matches!(next, Next::Bound(_));
    if !resumed && let Some((tag, inline)) = request.bind {
        let resource = bind2_resource(&user, tag.as_deref(), request.user_agent.as_deref());
        // If the session layer cannot bind, the client still has the features to bind with.
        if let Some((bound, inline_answers)) = bind::bind(negotiation, user, Some(resource), inline).await {
            identity = bound.session.jid().clone();
            answers.push(inline_answers.into_iter().fold(Element::new("bound", ns::BIND2), Element::with_child));
            next = Next::Bound(bound);
        }
    }
    let mut success = Element::new("success", ns::SASL2);
    if !data.is_empty() {
        let profile = Profile::Sasl2(Box::default());
        success.push_child(Element::new("additional-data", ns::SASL2).with_text(authenticate::base64_text(&profile, &data)));
    }
    success.push_child(Element::new("authorization-identifier", ns::SASL2).with_text(identity.as_str()));
    for answer in answers {
        success.push_child(answer);
    }
    if let Some(Issued { token, expires }) = token {
        success.push_child(Element::new("token", ns::FAST).with_attr("token", token).with_attr("expiry", fast::timestamp(expires)));
    }
    negotiation.reply(success);
    Ok(next)
}

/// A token for `client` after a login that asked for one; none (logged) if the store fails: the
/// login itself succeeded.
async fn issue(negotiation: &Negotiation<'_>, user: &Jid, client: &str, mechanism: &str) -> Option<Issued> {
    let fast = negotiation.edge.fast()?;
    fast.issue(user.as_str(), client, mechanism).await.inspect_err(|error| tracing::warn!(%error, "could not issue a FAST token")).ok()
}

/// The Bind2 resource: `tag/id` (XEP-0386 §3.1), the id stable for one client (derived from the
/// user and its user-agent id, never showing it), random without one.
fn bind2_resource(user: &Jid, tag: Option<&str>, user_agent: Option<&str>) -> String {
    let id = match user_agent {
        Some(agent) => {
            let digest = Sha256::new().chain_update(user.as_str()).chain_update([0]).chain_update(agent).chain_update([0]).chain_update(tag.unwrap_or_default()).finalize();
            digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
        }
        None => format!("{:016x}", rand::random::<u64>()),
    };
    match tag {
        Some(tag) if user.with_resource(&format!("{tag}/{id}")).is_ok() => format!("{tag}/{id}"),
        _ => id,
    }
}
