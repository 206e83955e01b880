//! The client side of XEP-0388 SASL2 with a XEP-0386 Bind2 bind (and XEP-0198 enabled inline when
//! asked) in the same round trip, and of XEP-0484 FAST: a login with a token (HT-SHA-256-NONE:
//! `user NUL HMAC-SHA-256(token, "Initiator")`) instead of SCRAM. This is how a mobile app comes
//! back; `--login sasl2|fast` measures it against RFC 6120 SASL and a separate bind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use starling_xml::escape_attr;

use crate::cli::LoginMethod;
use crate::sasl::{Exchange, Next};
use crate::sm::NS_SM;
use crate::xmpp::{self, LoginConfig, LoginError, Phase, PhaseTimes, Session, lap, tree};

const NS_SASL2: &str = "urn:xmpp:sasl:2";
const NS_BIND2: &str = "urn:xmpp:bind:0";
const NS_FAST: &str = "urn:xmpp:fast:0";
const FAST_MECHANISM: &str = "HT-SHA-256-NONE";

/// FAST tokens by user, as the server issued (or rotated) them.
#[derive(Default, Clone)]
pub struct Tokens(Arc<Mutex<HashMap<String, String>>>);

impl Tokens {
    fn get(&self, user: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(user).cloned()
    }

    fn put(&self, user: &str, token: String) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(user.to_owned(), token);
    }
}

/// Secures the stream, authenticates and binds in one `<authenticate/>`: with the user's FAST
/// token when it has one (`--login fast`), else with `--mechanism`, asking for a token under
/// `--login fast`.
pub async fn login(config: &LoginConfig, user: &str, source: Option<IpAddr>, phase: &mut Phase, times: &mut PhaseTimes) -> Result<Session, LoginError> {
    let (mut reader, mut writer, features) = config.secured_stream(source, phase, times).await?;
    let mut mark = Instant::now();
    // SASL mechanisms in `<authentication/>`, FAST ones in its `<inline><fast/>`.
    let authentication = features.get_child("authentication", NS_SASL2);
    let fast = authentication.and_then(|a| a.get_child("inline", NS_SASL2)).and_then(|inline| inline.get_child("fast", NS_FAST));
    let offered: Vec<String> = [authentication.map(|a| (a, NS_SASL2)), fast.map(|f| (f, NS_FAST))]
        .into_iter()
        .flatten()
        .flat_map(|(list, ns)| list.children().filter(move |child| child.is("mechanism", ns)).map(|child| child.text().trim().to_owned()))
        .collect();
    let token = if config.method == LoginMethod::Fast { config.tokens.get(user) } else { None };
    let (mechanism, initial, mut exchange) = match &token {
        Some(token) => (FAST_MECHANISM, initiator_proof(user, token), None),
        None => {
            let (exchange, initial) = Exchange::start(config.mechanism, user, config.password.clone(), config.cache.clone())?;
            (config.mechanism.name(), initial, Some(exchange))
        }
    };
    if !offered.iter().any(|offered| offered == mechanism) {
        return Err(LoginError::MechanismNotOffered(mechanism));
    }
    let request_token = config.method == LoginMethod::Fast && token.is_none();
    xmpp::send(&mut writer, &authenticate(config, user, mechanism, &initial, request_token)).await?;
    let (jid, sm_id) = loop {
        let element = xmpp::next_element(&mut reader).await?;
        if element.ns != NS_SASL2 {
            return Err(LoginError::Unexpected(format!("<{}/> during SASL2", element.name)));
        }
        match element.name.as_str() {
            "challenge" => {
                let data = xmpp::sasl_payload(&element)?;
                let exchange = exchange.as_mut().ok_or_else(|| LoginError::Unexpected("a challenge to a FAST login".into()))?;
                let response = match exchange.step(Some(&data))? {
                    Next::Respond(bytes) => bytes,
                    Next::Done => Vec::new(),
                };
                xmpp::send(&mut writer, format!("<response xmlns='{NS_SASL2}'>{}</response>", BASE64.encode(response)).as_bytes()).await?;
            }
            "success" => {
                let success = tree(&element)?;
                if let Some(exchange) = exchange.as_mut().filter(|exchange| !exchange.is_finished()) {
                    let data = success.get_child("additional-data", NS_SASL2).map(|data| BASE64.decode(data.text().trim())).transpose();
                    let data = data.map_err(|_| LoginError::Unexpected("additional-data is not base64".into()))?.unwrap_or_default();
                    exchange.step(Some(&data))?;
                    if !exchange.is_finished() {
                        return Err(LoginError::Unexpected("<success/> before the exchange finished".into()));
                    }
                }
                if let Some(issued) = success.get_child("token", NS_FAST).and_then(|token| token.attr("token")) {
                    config.tokens.put(user, issued.to_owned());
                }
                let jid = success.get_child("authorization-identifier", NS_SASL2).map(|id| id.text().trim().to_owned()).unwrap_or_default();
                if !jid.contains('/') {
                    return Err(LoginError::Bind(format!("no Bind2 resource in <success/> ({jid})")));
                }
                let sm_id = success.get_child("bound", NS_BIND2).and_then(|bound| bound.get_child("enabled", NS_SM)).and_then(|enabled| enabled.attr("id")).map(str::to_owned);
                if config.stream_management && sm_id.is_none() {
                    return Err(LoginError::Unexpected("stream management not enabled inline".into()));
                }
                break (jid, sm_id);
            }
            "failure" => {
                let failure = tree(&element)?;
                let condition = failure.children().next().map(|c| c.name().to_owned()).unwrap_or_else(|| "unspecified".into());
                return Err(LoginError::SaslFailure(condition));
            }
            other => return Err(LoginError::Unexpected(format!("<{other}/> during SASL2"))),
        }
    };
    times.sasl = lap(&mut mark);
    *phase = Phase::Bind;
    if config.presence {
        xmpp::send(&mut writer, b"<presence/>").await?;
    }
    times.bind = lap(&mut mark);
    Ok(Session { jid, reader, writer, times: *times, sm_id })
}

/// `user NUL HMAC-SHA-256(token, "Initiator")`: no channel binding (the -NONE variant).
fn initiator_proof(user: &str, token: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"Initiator");
    let mut initial = user.as_bytes().to_vec();
    initial.push(0);
    initial.extend_from_slice(&mac.finalize().into_bytes());
    initial
}

/// The `<authenticate/>`: one user-agent per user (tokens and Bind2 resources are tied to it), a
/// Bind2 bind with stream management inline if asked, a token request if asked.
fn authenticate(config: &LoginConfig, user: &str, mechanism: &str, initial: &[u8], request_token: bool) -> Vec<u8> {
    let mut out = format!("<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'><initial-response>{}</initial-response>", BASE64.encode(initial)).into_bytes();
    out.extend_from_slice(b"<user-agent id='loadtest-");
    escape_attr(&mut out, user);
    out.extend_from_slice(b"'><software>starling-loadtest</software></user-agent>");
    if request_token {
        out.extend_from_slice(format!("<request-token xmlns='{NS_FAST}' mechanism='{FAST_MECHANISM}'/>").as_bytes());
    }
    out.extend_from_slice(format!("<bind xmlns='{NS_BIND2}'><tag>loadtest</tag>").as_bytes());
    if config.stream_management {
        out.extend_from_slice(format!("<enable xmlns='{NS_SM}' resume='true'/>").as_bytes());
    }
    out.extend_from_slice(b"</bind></authenticate>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initiator_proof_is_the_user_a_nul_and_the_hmac() {
        let proof = initiator_proof("alice", "secret-token");
        let (user, mac) = proof.split_at(5);
        assert_eq!(user, b"alice");
        assert_eq!(mac[0], 0);
        let mut expected = Hmac::<Sha256>::new_from_slice(b"secret-token").expect("key");
        expected.update(b"Initiator");
        expected.verify_slice(&mac[1..]).expect("HMAC-SHA-256 over \"Initiator\"");
    }
}
