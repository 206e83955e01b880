//! The session layer end to end in one process: clients bound through the [`Gateway`], stanzas
//! through the module registry and the host router, answers read from the clients' queues.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starling_cluster::gateway::{BoundSession, ClientLink, ComponentLink, Gateway, ToClient};
use starling_cluster::store::{ScramCredentials, Store};
use starling_protocol::{ns, Hosts, Jid, Stanza, StanzaKind};
use starling_telemetry::Metrics;
use starling_xml::Element;
use tokio::sync::mpsc;

use super::*;
use crate::modules::ALL;
use crate::registry::{Register, Registrar};
use crate::service::{ServiceContext, ServiceEntity, ServiceKind};

pub(crate) struct Client {
    pub session: Box<dyn BoundSession>,
    pub inbox: mpsc::Receiver<ToClient>,
}

impl Client {
    pub async fn send(&mut self, xml: &str) {
        let mut element = Element::parse(xml.as_bytes()).expect("test stanza parses");
        element.set_attr("from", self.session.jid().as_str());
        let stanza = Stanza::from_element(&element).expect("a stanza");
        self.session.submit(stanza, Instant::now()).await.expect("submitted");
    }

    /// The next stanza (or `<enabled/>`) the server sends this client.
    pub async fn next(&mut self) -> Element {
        match tokio::time::timeout(Duration::from_secs(5), self.inbox.recv()).await {
            Ok(Some(ToClient::Stanza(bytes, _) | ToClient::Enabled(bytes))) => Element::parse(&bytes).expect("the server sends XML"),
            other => panic!("expected a stanza, got {other:?}"),
        }
    }
}

async fn layer_with(store: &Store, extra: Register) -> SessionLayer {
    let mut modules = ALL.to_vec();
    modules.push(extra);
    SessionLayer::start_with_modules(Hosts::single(Jid::new("localhost").expect("domain")), store.clone(), SessionConfig::default(), Metrics::global(), &modules)
}

pub(crate) async fn login(layer: &SessionLayer, store: &Store, user: &str) -> Client {
    let jid = Jid::new(&format!("{user}@localhost")).expect("jid");
    let _ = store.accounts.create(jid.as_str(), ScramCredentials::derive("secret", 1)).await;
    let (sender, inbox) = mpsc::channel(64);
    let session = layer.bind(jid, Some("test".into()), ClientLink::new(rand::random(), sender), Vec::new()).await.expect("bound").session;
    Client { session, inbox }
}

/// A service kind for the test: each entity of `echo.localhost` answers a message with its body.
struct Echo(Jid);

struct EchoEntity;

impl ServiceKind for Echo {
    fn domain(&self) -> &Jid {
        &self.0
    }

    fn entity(&self, _: &Jid) -> Box<dyn ServiceEntity> {
        Box::new(EchoEntity)
    }
}

impl ServiceEntity for EchoEntity {
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, _: Instant) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let reply = Element::new("message", ns::CLIENT).with_attr("type", "chat").with_child(Element::new("body", ns::CLIENT).with_text(format!("echo from {}", context.jid)));
            let from = stanza.to.clone().unwrap_or_else(|| context.jid.clone());
            let _ = context.route(Stanza::build(reply, &from, Some(&stanza.from)));
        })
    }

    fn is_idle(&self) -> bool {
        true
    }
}

fn echo_module(r: &mut Registrar) {
    let host = r.hosts.primary().clone();
    r.service(&host, Arc::new(Echo(Jid::new("echo.localhost").expect("domain"))));
}

fn no_module(_: &mut Registrar) {}

pub(crate) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = starling_store_embedded::EmbeddedStore::open(dir.path()).expect("store");
    (dir, store)
}

#[actix::test]
async fn a_local_service_entity_is_an_actor_addressed_by_its_domain() {
    let (_dir, store) = store();
    let layer = layer_with(&store, echo_module).await;
    let mut alice = login(&layer, &store, "alice").await;
    alice.send("<message xmlns='jabber:client' to='room1@echo.localhost' type='chat'><body>hi</body></message>").await;
    let echoed = alice.next().await;
    assert_eq!(echoed.attr("from"), Some("room1@echo.localhost"));
    assert_eq!(echoed.get_child("body", ns::CLIENT).map(|b| b.text()).as_deref(), Some("echo from room1@echo.localhost"));

    alice.send("<iq xmlns='jabber:client' type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let items = alice.next().await;
    let listed: Vec<&str> = items.get_child("query", ns::DISCO_ITEMS).expect("query").children().filter_map(|i| i.attr("jid")).collect();
    assert!(listed.contains(&"echo.localhost"), "{listed:?}");
}

#[actix::test]
async fn remote_domains_get_remote_server_not_found_and_components_get_their_stanzas() {
    struct Captured(Mutex<Vec<Stanza>>);
    impl ComponentLink for Captured {
        fn send(&self, stanza: Stanza) -> Result<(), Box<Stanza>> {
            self.0.lock().expect("lock").push(stanza);
            Ok(())
        }
    }
    let (_dir, store) = store();
    let layer = layer_with(&store, no_module).await;
    let component = Arc::new(Captured(Mutex::new(Vec::new())));
    layer.attach_component(&Jid::new("gateway.localhost").expect("domain"), component.clone()).expect("attached");
    let mut alice = login(&layer, &store, "alice").await;

    alice.send("<message xmlns='jabber:client' id='m1' to='bob@elsewhere.example' type='chat'><body>hi</body></message>").await;
    let bounced = alice.next().await;
    assert_eq!((bounced.attr("type"), bounced.attr("from"), bounced.attr("id")), (Some("error"), Some("elsewhere.example"), Some("m1")));
    let error = bounced.get_child("error", ns::CLIENT).expect("an error");
    assert!(error.get_child("remote-server-not-found", ns::STANZA_ERRORS).is_some());

    alice.send("<message xmlns='jabber:client' to='sms@gateway.localhost' type='chat'><body>hi</body></message>").await;
    for _ in 0..100 {
        if !component.0.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let captured = component.0.lock().expect("lock");
    assert_eq!(captured.len(), 1);
    assert_eq!((captured[0].kind, captured[0].from.as_str()), (StanzaKind::Message, "alice@localhost/test"));
}

#[actix::test]
async fn entity_time_is_one_module_advertised_in_disco_and_caps() {
    let (_dir, store) = store();
    let layer = layer_with(&store, no_module).await;
    let mut alice = login(&layer, &store, "alice").await;
    alice.send("<iq xmlns='jabber:client' type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>").await;
    let answer = alice.next().await;
    let time = answer.get_child("time", "urn:xmpp:time").expect("a time payload");
    // XEP-0082's TZD for UTC.
    assert_eq!(time.get_child("tzo", "urn:xmpp:time").map(|t| t.text()).as_deref(), Some("Z"));
    assert!(time.get_child("utc", "urn:xmpp:time").is_some_and(|utc| utc.text().ends_with('Z')));

    let (node, ver) = server_caps(&Hosts::single(Jid::new("localhost").expect("domain")), &SessionConfig::default());
    alice.send(&format!("<iq xmlns='jabber:client' type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}#{ver}'/></iq>")).await;
    let info = alice.next().await;
    let query = info.get_child("query", ns::DISCO_INFO).expect("disco#info");
    let features: Vec<&str> = query.children().filter_map(|f| f.attr("var")).collect();
    assert!(features.contains(&"urn:xmpp:time"), "{features:?}");

    alice.send("<iq xmlns='jabber:client' type='get' id='u' to='localhost'><query xmlns='urn:example:unknown'/></iq>").await;
    let refused = alice.next().await;
    assert!(refused.get_child("error", ns::CLIENT).and_then(|e| e.get_child("service-unavailable", ns::STANZA_ERRORS)).is_some());
}
