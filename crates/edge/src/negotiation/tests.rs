//! Negotiation over an in-memory pipe, from the client's side: stream headers, STARTTLS, SASL,
//! registration and binding, each as RFC 6120 and XEP-0077 describe them.

use starling_protocol::ns;
use starling_xml::{Element, StreamEvent, NS_STREAMS};

use crate::nonza::NonzaHandlers;
use crate::test_support::{self, connect, sasl_condition, FakeAccounts, DOMAIN};

fn names(features: &Element) -> Vec<String> {
    features.children().map(|feature| feature.name().to_owned()).collect()
}

fn mechanisms(features: &Element) -> Vec<String> {
    features.get_child("mechanisms", ns::SASL).map(|m| m.children().map(Element::text).collect()).unwrap_or_default()
}

#[tokio::test]
async fn rfc6120_4_9_a_bad_stream_header_gets_our_header_then_the_stream_error() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let headers = [
        ("xmlns='jabber:server'", &format!("to='{DOMAIN}' version='1.0'"), "invalid-namespace"),
        ("xmlns='jabber:client'", &"to='elsewhere.example' version='1.0'".to_owned(), "host-unknown"),
        ("xmlns='jabber:client'", &format!("to='{DOMAIN}'"), "unsupported-version"),
        ("xmlns='jabber:client'", &format!("to='{DOMAIN}' version='2.0'"), "unsupported-version"),
    ];
    for (content_ns, attributes, expected) in headers {
        let mut client = connect(&edge, false).await;
        client.send(&format!("<stream:stream {content_ns} xmlns:stream='{NS_STREAMS}' {attributes}>")).await;
        assert!(matches!(client.next().await, StreamEvent::Open(_)), "our header comes first");
        assert_eq!(client.stream_error().await, expected, "{content_ns} {attributes}");
    }
}

#[tokio::test]
async fn rfc6120_4_9_1_1_an_error_before_the_header_still_opens_our_stream() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, false).await;
    client.send("<stream xmlns='urn:not-streams'>").await;
    assert!(matches!(client.next().await, StreamEvent::Open(_)));
    assert_eq!(client.stream_error().await, "invalid-namespace");
}

#[tokio::test]
async fn rfc6120_5_3_1_starttls_is_required_before_anything_else() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, false).await;
    let features = client.open().await;
    let starttls = features.get_child("starttls", ns::TLS).expect("STARTTLS offered");
    assert!(starttls.get_child("required", ns::TLS).is_some());
    assert_eq!(names(&features), ["starttls"], "nothing but STARTTLS before TLS when it is required");
    let failure = client.auth("SCRAM-SHA-256", b"n,,n=juliet,r=abc").await;
    assert_eq!(sasl_condition(&failure), "encryption-required");
    client.send(&format!("<iq type='get' id='early' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(client.stream_error().await, "not-authorized");
}

#[tokio::test]
async fn rfc6120_5_4_3_starttls_upgrades_then_offers_sasl_with_channel_binding() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, false).await;
    client.open().await;
    let features = client.starttls().await;
    assert_eq!(names(&features), ["mechanisms", "authentication", "sasl-channel-binding", "register"]);
    assert_eq!(mechanisms(&features), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
}

#[tokio::test]
async fn rfc6120_5_4_3_3_plaintext_pipelined_after_starttls_is_refused() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, false).await;
    client.open().await;
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><presence/>").await;
    assert!(client.element().await.is("proceed", ns::TLS));
    assert_eq!(client.stream_error().await, "bad-format", "the unprotected bytes are not read as TLS");
}

#[tokio::test]
async fn rfc6120_5_4_2_2_starttls_on_a_secure_stream_fails_and_closes() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    assert!(client.open().await.get_child("starttls", ns::TLS).is_none());
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
    assert!(client.element().await.is("failure", ns::TLS));
    assert!(matches!(client.next().await, StreamEvent::Close));
}

/// With TLS optional, SASL runs on the plain stream, which shows its failures without TLS.
fn plain_sasl_config() -> crate::EdgeConfig {
    let mut config = test_support::config();
    config.c2s.require_tls = false;
    config
}

#[tokio::test]
async fn rfc6120_6_5_sasl_failure_conditions() {
    let (edge, _) = test_support::edge(plain_sasl_config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, false).await;
    let features = client.open().await;
    assert_eq!(mechanisms(&features), ["SCRAM-SHA-256", "SCRAM-SHA-1"], "no PLAIN and no -PLUS without TLS");
    assert_eq!(sasl_condition(&client.auth("X-UNKNOWN", b"").await), "invalid-mechanism");
    assert_eq!(sasl_condition(&client.auth("PLAIN", b"\0juliet\0pencil").await), "encryption-required");
    assert_eq!(sasl_condition(&client.auth("SCRAM-SHA-256", b"no gs2 header").await), "malformed-request");
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>not base64!</auth>").await;
    assert_eq!(sasl_condition(&client.element().await), "incorrect-encoding");
    // A challenge, then the client gives up (RFC 6120 §6.4.4).
    assert_eq!(client.auth("SCRAM-SHA-256", b"n,,n=juliet,r=abc").await.name(), "challenge");
    client.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
    assert_eq!(sasl_condition(&client.element().await), "aborted");
    // Anything but a response during an exchange ends the stream.
    assert_eq!(client.auth("SCRAM-SHA-256", b"n,,n=juliet,r=abc").await.name(), "challenge");
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>=</auth>").await;
    assert_eq!(client.stream_error().await, "not-authorized");
}

#[tokio::test]
async fn rfc6120_6_4_5_failed_attempts_are_bounded_per_stream() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    client.open().await;
    for _ in 0..edge.config.c2s.max_auth_attempts {
        assert_eq!(sasl_condition(&client.auth("PLAIN", b"\0juliet\0wrong").await), "not-authorized");
    }
    assert_eq!(client.stream_error().await, "policy-violation");
}

#[tokio::test]
async fn repeated_failures_throttle_the_account_from_that_address_even_with_the_right_password() {
    let mut config = test_support::config();
    config.c2s.auth_throttle_failures = 2;
    config.c2s.max_auth_attempts = 10;
    let (edge, _) = test_support::edge(config, FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    client.open().await;
    for _ in 0..2 {
        assert_eq!(sasl_condition(&client.auth("PLAIN", b"\0juliet\0wrong").await), "not-authorized");
    }
    assert_eq!(sasl_condition(&client.auth("PLAIN", b"\0juliet\0pencil").await), "temporary-auth-failure");
}

#[tokio::test]
async fn xep0077_registration_is_dispatched_by_the_payload_namespace() {
    let accounts = FakeAccounts::with_user("juliet");
    let (edge, _) = test_support::edge(test_support::config(), accounts.clone(), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    assert!(client.open().await.get_child("register", ns::REGISTER_FEATURE).is_some());
    client.send("<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>").await;
    let form = client.element().await;
    assert_eq!((form.attr("type"), form.attr("id")), (Some("result"), Some("form")));
    let query = form.get_child("query", ns::REGISTER).expect("the form");
    assert!(query.get_child("username", ns::REGISTER).is_some() && query.get_child("password", ns::REGISTER).is_some());
    let register = "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>romeo</username><password>secret</password></query></iq>";
    client.send(register).await;
    assert_eq!(client.element().await.attr("type"), Some("result"));
    assert!(accounts.credentials_of("romeo@example.org").is_some_and(|keys| keys.verify_password("secret")));
    client.send(register).await;
    let conflict = client.element().await;
    assert!(conflict.get_child("error", ns::CLIENT).and_then(|e| e.get_child("conflict", ns::STANZA_ERRORS)).is_some(), "{conflict:?}");
    // An IQ that only mentions the namespace is not a registration.
    client.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'><item name='jabber:iq:register'/></query></iq>").await;
    assert_eq!(client.stream_error().await, "not-authorized");
}

#[tokio::test]
async fn xep0077_registration_needs_tls() {
    let (edge, _) = test_support::edge(plain_sasl_config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, false).await;
    client.open().await;
    client.send("<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>").await;
    let refused = client.element().await;
    assert_eq!(refused.attr("type"), Some("error"));
    assert!(refused.get_child("error", ns::CLIENT).and_then(|e| e.get_child("service-unavailable", ns::STANZA_ERRORS)).is_some());
}

#[tokio::test]
async fn rfc6120_7_bind_after_authentication() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    client.open().await;
    let features = client.login("juliet").await;
    assert_eq!(names(&features), ["bind", "session", "ver", "sub", "c"]);
    assert_eq!(features.get_child("c", ns::CAPS).and_then(|c| c.attr("ver")), Some("ver="));
    // The legacy session IQ is answered and changes nothing (RFC 3921 §3).
    client.send("<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>").await;
    let session = client.element().await;
    assert_eq!((session.attr("type"), session.attr("id")), (Some("result"), Some("sess")));
    client.send("<iq type='get' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>").await;
    assert_eq!(client.element().await.attr("type"), Some("error"), "binding is a set");
    assert_eq!(client.bind("balcony").await, "juliet@example.org/balcony");
}

#[tokio::test]
async fn a_client_gone_before_its_bind_result_leaves_no_session_behind() {
    let (edge, mut sessions) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    client.open().await;
    client.login("juliet").await;
    client.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>").await;
    // Gone before the result can be written: the bound session must be unbound, not leaked.
    drop(client);
    let unbound = tokio::time::timeout(std::time::Duration::from_secs(5), sessions.unbound.recv()).await.expect("unbound in time");
    assert_eq!(unbound.as_ref().map(|jid| jid.as_str()), Some("juliet@example.org/balcony"));
}

#[tokio::test]
async fn rfc6120_7_1_nothing_but_binding_after_authentication() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    client.open().await;
    client.login("juliet").await;
    client.send("<message to='romeo@example.org'><body>too early</body></message>").await;
    assert_eq!(client.stream_error().await, "not-authorized");
}

/// `<authenticate/>` in SASL2 with `initial` as its initial response.
async fn authenticate(client: &mut test_support::TestClient, mechanism: &str, initial: &[u8]) -> Element {
    authenticate_with(client, mechanism, initial, "").await
}

/// [`authenticate`] with inline requests.
async fn authenticate_with(client: &mut test_support::TestClient, mechanism: &str, initial: &[u8], inline: &str) -> Element {
    use base64::Engine;
    let initial = base64::engine::general_purpose::STANDARD.encode(initial);
    client
        .send(&format!(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='{mechanism}'><initial-response>{initial}</initial-response>\
             <user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>test</software></user-agent>{inline}</authenticate>"
        ))
        .await;
    client.element().await
}

/// The HT-SHA-256-NONE initial response for `token`.
fn ht_initial(username: &str, token: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(b"Initiator");
    [username.as_bytes(), b"\0", &mac.finalize().into_bytes()].concat()
}

#[tokio::test]
async fn xep0386_bind2_and_xep0484_fast_tokens() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    let features = client.open().await;
    let inline = features.get_child("authentication", ns::SASL2).and_then(|a| a.get_child("inline", ns::SASL2)).expect("inline features");
    assert!(inline.get_child("bind", ns::BIND2).is_some(), "{inline:?}");
    let fast = inline.get_child("fast", ns::FAST).expect("FAST over TLS");
    assert!(fast.children().any(|m| m.text() == "HT-SHA-256-NONE"), "{fast:?}");

    let request = "<bind xmlns='urn:xmpp:bind:0'><tag>Balcony</tag></bind><request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>";
    let success = authenticate_with(&mut client, "PLAIN", b"\0juliet\0pencil", request).await;
    assert!(success.get_child("bound", ns::BIND2).is_some(), "{success:?}");
    let jid = success.get_child("authorization-identifier", ns::SASL2).map(Element::text).expect("identity");
    assert!(jid.starts_with("juliet@example.org/Balcony/"), "{jid}");
    let token = success.get_child("token", ns::FAST).and_then(|t| t.attr("token")).expect("a token").to_owned();

    // Again with the token, one message: the same client gets the same resource.
    let mut again = connect(&edge, true).await;
    again.open().await;
    let success = authenticate_with(&mut again, "HT-SHA-256-NONE", &ht_initial("juliet", &token), "<bind xmlns='urn:xmpp:bind:0'><tag>Balcony</tag></bind><fast xmlns='urn:xmpp:fast:0' count='1'/>").await;
    assert!(success.is("success", ns::SASL2), "{success:?}");
    assert_eq!(success.get_child("authorization-identifier", ns::SASL2).map(Element::text), Some(jid), "stable per client");
    assert!(success.get_child("additional-data", ns::SASL2).is_some(), "the responder's proof");

    // A replayed count, a wrong token, and a token request for a mechanism not offered fail.
    let mut replay = connect(&edge, true).await;
    replay.open().await;
    let failure = authenticate_with(&mut replay, "HT-SHA-256-NONE", &ht_initial("juliet", &token), "<fast xmlns='urn:xmpp:fast:0' count='1'/>").await;
    assert!(failure.get_child("not-authorized", ns::SASL).is_some(), "{failure:?}");
    let failure = authenticate(&mut replay, "HT-SHA-256-NONE", &ht_initial("juliet", "guess")).await;
    assert!(failure.get_child("not-authorized", ns::SASL).is_some(), "{failure:?}");
    let failure = authenticate_with(&mut replay, "PLAIN", b"\0juliet\0pencil", "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-MD5-NONE'/>").await;
    assert!(failure.get_child("malformed-request", ns::SASL).is_some(), "{failure:?}");

    // Invalidated: the token no longer works.
    let mut logout = connect(&edge, true).await;
    logout.open().await;
    let success = authenticate_with(&mut logout, "HT-SHA-256-NONE", &ht_initial("juliet", &token), "<fast xmlns='urn:xmpp:fast:0' invalidate='true'/>").await;
    assert!(success.is("success", ns::SASL2) && success.get_child("token", ns::FAST).is_none(), "{success:?}");
    let mut after = connect(&edge, true).await;
    after.open().await;
    let failure = authenticate(&mut after, "HT-SHA-256-NONE", &ht_initial("juliet", &token)).await;
    assert!(failure.get_child("not-authorized", ns::SASL).is_some(), "{failure:?}");
}

#[tokio::test]
async fn xep0388_sasl2_success_is_followed_by_the_authenticated_features_without_a_restart() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    let features = client.open().await;
    let authentication = features.get_child("authentication", ns::SASL2).expect("SASL2 offered");
    let offered: Vec<String> = authentication.children().filter(|child| child.name() == "mechanism").map(Element::text).collect();
    assert_eq!(offered, mechanisms(&features), "the same mechanisms as RFC 6120 SASL");
    let binding = features.get_child("sasl-channel-binding", ns::SASL_CHANNEL_BINDING).expect("XEP-0440 over TLS 1.3");
    assert_eq!(binding.children().next().and_then(|b| b.attr("type")), Some("tls-exporter"));

    let success = authenticate(&mut client, "PLAIN", b"\0juliet\0pencil").await;
    assert!(success.is("success", ns::SASL2), "{success:?}");
    assert_eq!(success.get_child("authorization-identifier", ns::SASL2).map(Element::text).as_deref(), Some("juliet@example.org"));
    // The features of the authenticated stream follow at once, on the same stream.
    let features = client.element().await;
    assert!(features.is("features", NS_STREAMS), "{features:?}");
    assert!(features.get_child("bind", ns::BIND).is_some() && features.get_child("authentication", ns::SASL2).is_none(), "{features:?}");
    assert_eq!(client.bind("balcony").await, "juliet@example.org/balcony");
}

#[tokio::test]
async fn xep0388_sasl2_scram_exchange_and_failures() {
    let (edge, _) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = connect(&edge, true).await;
    client.open().await;
    let failure = authenticate(&mut client, "X-UNKNOWN", b"").await;
    assert!(failure.is("failure", ns::SASL2) && failure.get_child("invalid-mechanism", ns::SASL).is_some(), "{failure:?}");
    let failure = authenticate(&mut client, "PLAIN", b"\0juliet\0wrong").await;
    assert!(failure.is("failure", ns::SASL2) && failure.get_child("not-authorized", ns::SASL).is_some(), "{failure:?}");
    // SCRAM: the first message gets a SASL2 challenge; an abort ends the attempt.
    let challenge = authenticate(&mut client, "SCRAM-SHA-256", b"n,,n=juliet,r=abc").await;
    assert!(challenge.is("challenge", ns::SASL2) && !challenge.text().is_empty(), "{challenge:?}");
    client.send("<abort xmlns='urn:xmpp:sasl:2'/>").await;
    let aborted = client.element().await;
    assert!(aborted.is("failure", ns::SASL2) && aborted.get_child("aborted", ns::SASL).is_some(), "{aborted:?}");
}
