//! What the edge's unit tests share: an [`Edge`] over in-memory fakes of the session layer and the
//! account store, a self-signed certificate, and a client speaking the XML stream over a
//! `tokio::io::duplex` pipe (no network), reading the server's stream with the server's reader.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use starling_cluster::failure_counts::LocalFailureCounts;
use starling_cluster::gateway::{server_chosen_resource, Binding, BoundSession, ClientLink, Gateway, GatewayError, StreamEnd};
use starling_cluster::store::{Accounts, FastTokenSlots, FastTokens, ScramCredentials, StoreError};
use starling_protocol::{Jid, Stanza};
use starling_telemetry::Metrics;
use starling_xml::{Element, StreamEvent, StreamReader, NS_STREAMS};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::EdgeConfig;
use crate::connection;
use crate::edge::{Edge, EdgeBackends};
use crate::framing::xml_stream::{Accepted, BoxedIo, XmlStream};
use crate::nonza::NonzaHandlers;

pub const DOMAIN: &str = "example.org";
pub const PASSWORD: &str = "pencil";
const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// Accounts in a map.
#[derive(Default)]
pub struct FakeAccounts(Mutex<HashMap<String, ScramCredentials>>);

impl FakeAccounts {
    /// Accounts with `localpart`@[`DOMAIN`] and the password [`PASSWORD`].
    pub fn with_user(localpart: &str) -> Arc<FakeAccounts> {
        let accounts = FakeAccounts::default();
        accounts.lock().insert(format!("{localpart}@{DOMAIN}"), ScramCredentials::derive(PASSWORD, 4096));
        Arc::new(accounts)
    }

    pub fn credentials_of(&self, user: &str) -> Option<ScramCredentials> {
        self.lock().get(user).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ScramCredentials>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Accounts for FakeAccounts {
    async fn create(&self, user: &str, credentials: ScramCredentials) -> Result<(), StoreError> {
        match self.lock().entry(user.to_owned()) {
            Entry::Occupied(_) => Err(StoreError::Conflict),
            Entry::Vacant(slot) => {
                slot.insert(credentials);
                Ok(())
            }
        }
    }

    async fn credentials(&self, user: &str) -> Result<Option<ScramCredentials>, StoreError> {
        Ok(self.lock().get(user).cloned())
    }

    async fn set_credentials(&self, _: &str, _: ScramCredentials) -> Result<bool, StoreError> {
        unimplemented!("the edge never changes a password")
    }

    async fn remove(&self, _: &str) -> Result<bool, StoreError> {
        unimplemented!("the edge never removes an account")
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        unimplemented!("the edge never lists accounts")
    }

    async fn exists(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self.lock().contains_key(user))
    }
}

/// A session layer that binds every request and hands the test each link and submitted stanza.
struct FakeGateway {
    links: mpsc::UnboundedSender<ClientLink>,
    submitted: mpsc::UnboundedSender<Stanza>,
    unbound: mpsc::UnboundedSender<Jid>,
}

/// The test's side of the fake session layer.
pub struct SessionLayer {
    /// The link of each bind: writing to it is writing to the client as the session layer would.
    pub links: mpsc::UnboundedReceiver<ClientLink>,
    /// Each stanza a bound client submitted.
    pub submitted: mpsc::UnboundedReceiver<Stanza>,
    /// Each full JID whose session was unbound.
    pub unbound: mpsc::UnboundedReceiver<Jid>,
}

#[async_trait]
impl Gateway for FakeGateway {
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink, _: Vec<Element>) -> Result<Binding, GatewayError> {
        let jid = user.with_resource(&resource.unwrap_or_else(server_chosen_resource)).map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let _ = self.links.send(link);
        let session = Box::new(FakeSession { jid, submitted: self.submitted.clone(), unbound: self.unbound.clone() });
        Ok(Binding { session, inline_answers: Vec::new() })
    }
}

struct FakeSession {
    jid: Jid,
    submitted: mpsc::UnboundedSender<Stanza>,
    unbound: mpsc::UnboundedSender<Jid>,
}

#[async_trait]
impl BoundSession for FakeSession {
    fn jid(&self) -> &Jid {
        &self.jid
    }

    async fn submit(&mut self, stanza: Stanza, _: Instant) -> Result<(), GatewayError> {
        self.submitted.send(stanza).map_err(|_| GatewayError::Closed)
    }

    async fn unbind(self: Box<Self>, _: StreamEnd) {
        let _ = self.unbound.send(self.jid);
    }
}

/// The configuration tests start from: registration on and unthrottled.
pub fn config() -> EdgeConfig {
    let mut config = EdgeConfig::new(Jid::new(DOMAIN).expect("domain"));
    config.registration.enabled = true;
    config.registration.interval_seconds = 0;
    config.caps_node = "https://starling.example".into();
    config.caps_ver = "ver=".into();
    config
}

fn certificate() -> &'static (CertificateDer<'static>, PrivateKeyDer<'static>) {
    static CERTIFICATE: OnceLock<(CertificateDer<'static>, PrivateKeyDer<'static>)> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let certified = rcgen::generate_simple_self_signed(vec![DOMAIN.to_owned()]).expect("certificate");
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).expect("key");
        (certified.cert.der().clone(), key)
    })
}

fn server_tls() -> Arc<rustls::ServerConfig> {
    let (cert, key) = certificate();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .expect("server config");
    Arc::new(config)
}

/// FAST tokens in a map.
#[derive(Default)]
pub struct FakeTokens(Mutex<HashMap<(String, String), FastTokenSlots>>);

impl FakeTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), FastTokenSlots>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl FastTokens for FakeTokens {
    async fn get(&self, user: &str, client: &str) -> Result<FastTokenSlots, StoreError> {
        Ok(self.lock().get(&(user.to_owned(), client.to_owned())).cloned().unwrap_or_default())
    }

    async fn put(&self, user: &str, client: &str, slots: &FastTokenSlots) -> Result<(), StoreError> {
        self.lock().insert((user.to_owned(), client.to_owned()), slots.clone());
        Ok(())
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.lock().retain(|(owner, _), _| owner != user);
        Ok(())
    }
}

/// A client trusting the test certificate only.
fn client_tls() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate().0.clone()).expect("trust anchor");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

pub fn edge(config: EdgeConfig, accounts: Arc<FakeAccounts>, nonzas: NonzaHandlers) -> (Arc<Edge>, SessionLayer) {
    let (links, links_out) = mpsc::unbounded_channel();
    let (submitted, submitted_out) = mpsc::unbounded_channel();
    let (unbound, unbound_out) = mpsc::unbounded_channel();
    let gateway = Arc::new(FakeGateway { links, submitted, unbound });
    let backends = EdgeBackends { accounts, fast_tokens: Arc::new(FakeTokens::default()), failure_counts: Arc::new(LocalFailureCounts::default()), upload: None };
    let edge = Edge::with_nonza_handlers(config, server_tls(), gateway, backends, Metrics::global(), nonzas);
    (edge, SessionLayer { links: links_out, submitted: submitted_out, unbound: unbound_out })
}

/// Starts a connection on `edge` as the listener would, returning the client's end: plain (for
/// STARTTLS) or, with `direct_tls`, after the TLS handshake.
pub async fn connect(edge: &Arc<Edge>, direct_tls: bool) -> TestClient {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: std::net::SocketAddr = "192.0.2.1:5222".parse().expect("address");
    let admitted = connection::Admitted::check(edge, peer.ip());
    tokio::spawn(connection::run::<XmlStream>(edge.clone(), 1, peer, Accepted { io: Box::new(server), direct_tls }, admitted));
    let io: BoxedIo = if direct_tls { handshake(Box::new(client)).await } else { Box::new(client) };
    TestClient { reader: StreamReader::new(io, Default::default()) }
}

async fn handshake(io: BoxedIo) -> BoxedIo {
    let name = ServerName::try_from(DOMAIN).expect("name");
    Box::new(client_tls().connect(name, io).await.expect("TLS handshake"))
}

/// A client that connected over direct TLS, logged in as `localpart` and bound `resource`.
pub async fn bound_client(edge: &Arc<Edge>, localpart: &str, resource: &str) -> TestClient {
    let mut client = connect(edge, true).await;
    client.open().await;
    client.login(localpart).await;
    assert_eq!(client.bind(resource).await, format!("{localpart}@{DOMAIN}/{resource}"));
    client
}

/// The client's end of a connection.
pub struct TestClient {
    reader: StreamReader<BoxedIo>,
}

impl TestClient {
    pub async fn send(&mut self, xml: &str) {
        let io = self.reader.get_mut();
        io.write_all(xml.as_bytes()).await.expect("write");
        io.flush().await.expect("flush");
    }

    pub async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(Duration::from_secs(10), self.reader.next())
            .await
            .expect("the server answers in time")
            .expect("a well-formed server stream")
    }

    pub async fn element(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Element(element) => {
                // Parsed inside a copy of the stream's context: the element may use its default
                // namespace and the `stream` prefix its header bound.
                let mut in_context = format!("<context xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'>").into_bytes();
                in_context.extend_from_slice(&element.bytes);
                in_context.extend_from_slice(b"</context>");
                let context = Element::parse(&in_context).expect("the server's element parses");
                context.into_children().next().expect("the element")
            }
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Opens a stream to `to` and reads the server's header.
    pub async fn open_to(&mut self, to: &str) {
        self.send(&format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' to='{to}' version='1.0'>"))
            .await;
        match self.next().await {
            StreamEvent::Open(header) => assert_eq!(header.from.as_deref(), Some(DOMAIN)),
            other => panic!("expected the server's header, got {other:?}"),
        }
    }

    /// Opens a stream and returns the server's features.
    pub async fn open(&mut self) -> Element {
        self.open_to(DOMAIN).await;
        let features = self.element().await;
        assert!(features.is("features", NS_STREAMS), "{features:?}");
        features
    }

    /// Reads the stream error that ends the stream, and the close after it; returns its condition.
    pub async fn stream_error(&mut self) -> String {
        let error = self.element().await;
        assert!(error.is("error", NS_STREAMS), "expected a stream error, got {error:?}");
        let condition = error.children().next().expect("a condition").name().to_owned();
        assert!(matches!(self.next().await, StreamEvent::Close), "the stream is closed after the error");
        condition
    }

    /// Negotiates STARTTLS and opens the encrypted stream; returns its features.
    pub async fn starttls(&mut self) -> Element {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
        let proceed = self.element().await;
        assert_eq!(proceed.name(), "proceed", "{proceed:?}");
        let plain = std::mem::replace(&mut self.reader, detached()).into_inner().expect("nothing after <proceed/>");
        self.reader = StreamReader::new(handshake(plain).await, Default::default());
        self.open().await
    }

    /// Sends `<auth/>` with `initial` as the initial response and returns the server's answer.
    pub async fn auth(&mut self, mechanism: &str, initial: &[u8]) -> Element {
        let initial = base64::engine::general_purpose::STANDARD.encode(initial);
        self.send(&format!("<auth xmlns='{SASL}' mechanism='{mechanism}'>{initial}</auth>")).await;
        self.element().await
    }

    /// Authenticates `localpart` with PLAIN and opens the restarted stream; returns its features.
    pub async fn login(&mut self, localpart: &str) -> Element {
        let success = self.auth("PLAIN", format!("\0{localpart}\0{PASSWORD}").as_bytes()).await;
        assert_eq!(success.name(), "success", "{success:?}");
        self.reader = std::mem::replace(&mut self.reader, detached()).restart();
        self.open().await
    }

    /// Binds `resource` and returns the full JID the server bound.
    pub async fn bind(&mut self, resource: &str) -> String {
        self.send(&format!("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"))
            .await;
        let result = self.element().await;
        assert_eq!(result.attr("type"), Some("result"), "{result:?}");
        let bind = result.get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind").expect("bind");
        bind.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind").expect("jid").text()
    }
}

/// The SASL condition of a `<failure/>`.
pub fn sasl_condition(failure: &Element) -> &str {
    assert!(failure.is("failure", SASL), "expected a SASL failure, got {failure:?}");
    failure.children().next().expect("a condition").name()
}

fn detached() -> StreamReader<BoxedIo> {
    StreamReader::new(Box::new(tokio::io::empty()), Default::default())
}
