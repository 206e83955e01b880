//! SASL on the wire (RFC 6120 §6): `<auth/>`, challenges and responses in base64, `<success/>`
//! or `<failure/>` with its condition. The exchange itself is [`crate::sasl`]'s; this step adds
//! what the wire and the server need around it: the mechanisms offered in the current state, the
//! account's keys fetched before the exchange starts, throttling, and the bound on retries.

use async_trait::async_trait;
use base64::Engine;
use starling_protocol::{ns, Jid, StreamErrorCondition};
use starling_xml::{Element, RawElement};

use super::{Continuation, Negotiation, NegotiationStep, Next, Received};
use crate::end::End;
use crate::sasl::{self, Exchange, Step};

pub(super) struct Authenticate;

#[async_trait]
impl NegotiationStep for Authenticate {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        let allowed_here = negotiation.secure || !negotiation.edge.config.c2s.require_tls;
        if negotiation.authenticated.is_some() || !allowed_here {
            return;
        }
        let mut mechanisms = Element::new("mechanisms", ns::SASL);
        for mechanism in sasl::mechanisms(negotiation.channel_binding.is_some(), negotiation.secure) {
            mechanisms.push_child(Element::new("mechanism", ns::SASL).with_text(mechanism));
        }
        features.push_child(mechanisms);
    }

    fn takes(&self, received: &Received, _: &Negotiation<'_>) -> bool {
        received.is("auth", ns::SASL)
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        let auth = &received.element;
        let mechanism = auth.attr("mechanism").unwrap_or_default().to_owned();
        let edge = negotiation.edge;
        if !negotiation.secure && edge.config.c2s.require_tls {
            return failure(negotiation, "encryption-required");
        }
        let offered = sasl::mechanisms(negotiation.channel_binding.is_some(), negotiation.secure);
        if negotiation.authenticated.is_some() || !offered.contains(&mechanism.as_str()) {
            // PLAIN exists but is offered over TLS only.
            let condition = if mechanism == "PLAIN" { "encryption-required" } else { "invalid-mechanism" };
            return failure(negotiation, condition);
        }
        let Some(initial) = decode(auth) else { return failure(negotiation, "incorrect-encoding") };
        let Some(username) = sasl::initial_username(&mechanism, &initial) else {
            return failure(negotiation, "malformed-request");
        };
        if edge.throttle.is_blocked(negotiation.peer.ip(), &username) {
            edge.metrics.login(&mechanism, false);
            return failure(negotiation, "temporary-auth-failure");
        }
        let account = Jid::from_parts(Some(&username), edge.config.domain.as_str(), None).ok();
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
            Err(condition) => return failure(negotiation, condition),
        };
        Box::new(SaslExchange { exchange, mechanism, username, account }).step(&initial, negotiation)
    }
}

/// One SASL exchange between its challenges.
struct SaslExchange {
    exchange: Exchange,
    mechanism: String,
    username: String,
    account: Option<Jid>,
}

impl SaslExchange {
    fn step(mut self: Box<Self>, input: &[u8], negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        let edge = negotiation.edge;
        let address = negotiation.peer.ip();
        match self.exchange.step(input) {
            Step::Challenge(data) => {
                negotiation.reply(with_data("challenge", &data));
                Ok(Next::Exchange(self))
            }
            Step::Success(data) => {
                edge.metrics.login(&self.mechanism, true);
                edge.throttle.record_success(address, &self.username);
                negotiation.reply(with_data("success", &data));
                negotiation.authenticated = self.account.and_then(|jid| jid.node().map(str::to_owned));
                Ok(if negotiation.authenticated.is_some() { Next::Restart } else { Next::Negotiate })
            }
            Step::Failure(condition) => {
                edge.metrics.login(&self.mechanism, false);
                edge.throttle.record_failure(address, &self.username);
                negotiation.reply(failure_element(condition));
                negotiation.failed_auths += 1;
                if negotiation.failed_auths >= edge.config.c2s.max_auth_attempts {
                    return Err(End::error(StreamErrorCondition::PolicyViolation, "too many failed authentication attempts"));
                }
                Ok(Next::Negotiate)
            }
        }
    }
}

#[async_trait]
impl Continuation for SaslExchange {
    async fn resume(self: Box<Self>, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        let response = &received.element;
        if received.is("response", ns::SASL) {
            return match decode(response) {
                Some(data) => self.step(&data, negotiation),
                None => failure(negotiation, "incorrect-encoding"),
            };
        }
        if received.is("abort", ns::SASL) {
            return failure(negotiation, "aborted");
        }
        Err(End::error(StreamErrorCondition::NotAuthorized, "SASL exchange interrupted"))
    }
}

/// Answers with `<failure/>` and lets the client try again (RFC 6120 §6.4.5).
fn failure(negotiation: &mut Negotiation<'_>, condition: &str) -> Result<Next, End> {
    negotiation.reply(failure_element(condition));
    Ok(Next::Negotiate)
}

fn failure_element(condition: &str) -> Element {
    Element::new("failure", ns::SASL).with_child(Element::new(condition, ns::SASL))
}

/// `<challenge/>` or `<success/>` with its data in base64; `=` stands for empty data (RFC 6120
/// §6.4.2), as clients expect it.
fn with_data(name: &str, data: &[u8]) -> Element {
    let text = if data.is_empty() { "=".to_owned() } else { base64::engine::general_purpose::STANDARD.encode(data) };
    Element::new(name, ns::SASL).with_text(text)
}

/// The base64 payload of `<auth/>`/`<response/>`, read from the bytes after the start tag; `=`
/// is an empty response (RFC 6120 §6.4.2).
fn decode(element: &RawElement) -> Option<Vec<u8>> {
    let body = &element.bytes[element.body_offset..];
    let end = body.iter().rposition(|&b| b == b'<').unwrap_or(body.len());
    let text: Vec<u8> = body[..end].iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if text.is_empty() || text == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
