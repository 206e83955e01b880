//! SASL on the wire, in both profiles: RFC 6120 §6 (`<auth/>` in `urn:ietf:params:xml:ns:xmpp-sasl`,
//! a stream restart after `<success/>`) and XEP-0388 SASL2 (`<authenticate/>` in `urn:xmpp:sasl:2`,
//! the features of the authenticated stream right after `<success/>`, no restart). The exchange
//! itself is [`crate::sasl`]'s; this module adds what the wire and the server need around it: the
//! mechanisms offered in the current state, the account's keys fetched before the exchange
//! starts, throttling, and the bound on retries.

use async_trait::async_trait;
use base64::Engine;
use starling_protocol::{ns, Jid, StreamErrorCondition};
use starling_xml::{Element, RawElement};

use super::sasl2::{self, Sasl2Request};
use super::{Continuation, Negotiation, NegotiationStep, Next, Received};
use crate::end::End;
use crate::sasl::{self, Exchange, Step};

/// The SASL profile an exchange speaks; SASL2 with what the client asked for besides
/// authentication.
pub(super) enum Profile {
    Rfc6120,
    Sasl2(Box<Sasl2Request>),
}

impl Profile {
    fn ns(&self) -> &'static str {
        match self {
            Profile::Rfc6120 => ns::SASL,
            Profile::Sasl2(_) => ns::SASL2,
        }
    }

    /// `<challenge/>` with its data in base64.
    fn challenge(&self, data: &[u8]) -> Element {
        Element::new("challenge", self.ns()).with_text(base64_text(self, data))
    }

    /// `<failure/>` with a condition of RFC 6120 §6.5 (in SASL2 too, XEP-0388 §2.6.2).
    pub(super) fn failure(&self, condition: &str) -> Element {
        Element::new("failure", self.ns()).with_child(Element::new(condition, ns::SASL))
    }
}

pub(super) struct Authenticate;

#[async_trait]
impl NegotiationStep for Authenticate {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        if let Some(mechanisms) = offered(negotiation, "mechanisms", ns::SASL) {
            features.push_child(mechanisms);
        }
    }

    fn takes(&self, received: &Received, _: &Negotiation<'_>) -> bool {
        received.is("auth", ns::SASL)
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        let auth = &received.element;
        let mechanism = auth.attr("mechanism").unwrap_or_default();
        let initial = decode(auth);
        start(Profile::Rfc6120, mechanism, initial, negotiation).await
    }
}

/// The mechanisms offered in the current state, as `<name xmlns='ns'>` with a `<mechanism/>` child
/// each; none once authenticated, or before TLS when it is required.
pub(super) fn offered(negotiation: &Negotiation<'_>, name: &str, ns: &str) -> Option<Element> {
    let allowed_here = negotiation.secure || !negotiation.edge.config.c2s.require_tls;
    if negotiation.authenticated.is_some() || !allowed_here {
        return None;
    }
    let mechanisms = sasl::mechanisms(negotiation.channel_binding.is_some(), negotiation.secure);
    Some(mechanisms.into_iter().fold(Element::new(name, ns), |list, mechanism| list.with_child(Element::new("mechanism", ns).with_text(mechanism))))
}

/// Starts an exchange with `mechanism` and the client's `initial` response (`None` when it was
/// not valid base64), in `profile`.
pub(super) async fn start(profile: Profile, mechanism: &str, initial: Option<Vec<u8>>, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
    let mechanism = mechanism.to_owned();
    let edge = negotiation.edge;
    if !negotiation.secure && edge.config.c2s.require_tls {
        return failure(profile, negotiation, "encryption-required");
    }
    if crate::fast::MECHANISMS.contains(&mechanism.as_str())
        && let Profile::Sasl2(request) = profile
    {
        return sasl2::fast_login(*request, &mechanism, initial, negotiation).await;
    }
    let offered = sasl::mechanisms(negotiation.channel_binding.is_some(), negotiation.secure);
    if negotiation.authenticated.is_some() || !offered.contains(&mechanism.as_str()) {
        // PLAIN exists but is offered over TLS only.
        let condition = if mechanism == "PLAIN" { "encryption-required" } else { "invalid-mechanism" };
        return failure(profile, negotiation, condition);
    }
    let Some(initial) = initial else { return failure(profile, negotiation, "incorrect-encoding") };
    let Some(username) = sasl::initial_username(&mechanism, &initial) else {
        return failure(profile, negotiation, "malformed-request");
    };
    if edge.throttle.is_blocked(negotiation.peer.ip(), &negotiation.account_name(&username)).await {
        edge.metrics.login(&mechanism, false);
        return failure(profile, negotiation, "temporary-auth-failure");
    }
    let account = Jid::from_parts(Some(&username), negotiation.host.as_str(), None).ok();
    // rsasl's callbacks are synchronous: the keys are fetched before the exchange starts.
    let credentials = match &account {
        Some(jid) => edge.accounts.credentials(jid.as_str()).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "credential lookup failed");
            None
        }),
        None => None,
    };
    let exchange = match Exchange::start(&mechanism, username.clone(), credentials, negotiation.channel_binding.clone()) {
        Ok(exchange) => exchange,
        Err(condition) => return failure(profile, negotiation, condition),
    };
    Box::new(SaslExchange { profile, exchange, mechanism, username, account }).step(&initial, negotiation).await
}

/// One SASL exchange between its challenges.
struct SaslExchange {
    profile: Profile,
    exchange: Exchange,
    mechanism: String,
    username: String,
    account: Option<Jid>,
}

impl SaslExchange {
    async fn step(mut self: Box<Self>, input: &[u8], negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        match self.exchange.step(input) {
            Step::Challenge(data) => {
                negotiation.reply(self.profile.challenge(&data));
                Ok(Next::Exchange(self))
            }
            Step::Success(data) => {
                let SaslExchange { profile, mechanism, username, account, .. } = *self;
                let Some(account) = account else { return refuse(&profile, &mechanism, &username, "not-authorized", negotiation).await };
                succeed(profile, Succeeded { mechanism: &mechanism, username: &username, user: account, data, token: None }, negotiation).await
            }
            Step::Failure(condition) => refuse(&self.profile, &self.mechanism, &self.username, condition, negotiation).await,
        }
    }
}

/// A successful authentication, as the profiles finish it.
pub(super) struct Succeeded<'a> {
    pub mechanism: &'a str,
    pub username: &'a str,
    pub user: Jid,
    /// The mechanism's final data for the client.
    pub data: Vec<u8>,
    /// A FAST token issued by the authentication itself (a rotation).
    pub token: Option<crate::fast::Issued>,
}

/// Counts a success and answers it as the profile does: RFC 6120 with `<success/>` and a stream
/// restart, SASL2 with its inline requests carried out first (XEP-0388 §2.6.1).
pub(super) async fn succeed(profile: Profile, succeeded: Succeeded<'_>, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
    let edge = negotiation.edge;
    edge.metrics.login(succeeded.mechanism, true);
    edge.throttle.record_success(negotiation.peer.ip(), &negotiation.account_name(succeeded.username)).await;
    negotiation.authenticated = succeeded.user.node().map(str::to_owned);
    match profile {
        Profile::Rfc6120 => {
            negotiation.reply(Element::new("success", ns::SASL).with_text(base64_text(&profile, &succeeded.data)));
            Ok(Next::Restart)
        }
        Profile::Sasl2(request) => sasl2::complete(*request, succeeded, negotiation).await,
    }
}

/// Counts a failed authentication and answers `<failure/>`, later for each further failure for
/// the account from the address (see [`Throttle`](crate::sasl::Throttle)); too many on one
/// connection end it.
pub(super) async fn refuse(profile: &Profile, mechanism: &str, username: &str, condition: &str, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
    let edge = negotiation.edge;
    edge.metrics.login(mechanism, false);
    let delay = edge.throttle.record_failure(negotiation.peer.ip(), &negotiation.account_name(username)).await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    negotiation.reply(profile.failure(condition));
    negotiation.failed_auths += 1;
    if negotiation.failed_auths >= edge.config.c2s.max_auth_attempts {
        return Err(End::error(StreamErrorCondition::PolicyViolation, "too many failed authentication attempts"));
    }
    Ok(Next::Negotiate)
}

#[async_trait]
impl Continuation for SaslExchange {
    async fn resume(self: Box<Self>, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        if received.is("response", self.profile.ns()) {
            let data = match self.profile {
                Profile::Rfc6120 => decode(&received.element),
                Profile::Sasl2(_) => element_text(&received.element).and_then(|text| decode_text(&text)),
            };
            return match data {
                Some(data) => self.step(&data, negotiation).await,
                None => failure(self.profile, negotiation, "incorrect-encoding"),
            };
        }
        if received.is("abort", self.profile.ns()) {
            return failure(self.profile, negotiation, "aborted");
        }
        Err(End::error(StreamErrorCondition::NotAuthorized, "SASL exchange interrupted"))
    }
}

/// Answers with `<failure/>` and lets the client try again (RFC 6120 §6.4.5).
pub(super) fn failure(profile: Profile, negotiation: &mut Negotiation<'_>, condition: &str) -> Result<Next, End> {
    negotiation.reply(profile.failure(condition));
    Ok(Next::Negotiate)
}

/// Data in base64. RFC 6120 writes empty data as `=` (§6.4.2), as its clients expect; SASL2 as
/// nothing (XEP-0388 §2.2).
pub(super) fn base64_text(profile: &Profile, data: &[u8]) -> String {
    match (profile, data.is_empty()) {
        (Profile::Rfc6120, true) => "=".to_owned(),
        (Profile::Sasl2(_), true) => String::new(),
        (_, false) => base64::engine::general_purpose::STANDARD.encode(data),
    }
}

/// The base64 payload of `<auth/>`/`<response/>`, read from the bytes after the start tag; `=`
/// is an empty response (RFC 6120 §6.4.2).
fn decode(element: &RawElement) -> Option<Vec<u8>> {
    let body = &element.bytes[element.body_offset..];
    let end = body.iter().rposition(|&b| b == b'<').unwrap_or(body.len());
    decode_text(std::str::from_utf8(&body[..end]).ok()?)
}

/// Base64 text, whitespace ignored; empty or `=` is no data.
pub(super) fn decode_text(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if text.is_empty() || text == "=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The text of a small element (a SASL2 response), parsed from its bytes.
fn element_text(element: &RawElement) -> Option<String> {
    Element::parse(&element.rewrite(&[])).ok().map(|parsed| parsed.text())
}
