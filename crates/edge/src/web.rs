//! The HTTP listeners of `[websocket]`: `GET {path}` upgrades to XMPP over WebSocket (RFC 7395
//! §3.1, subprotocol `xmpp`), and `/.well-known/host-meta` and `host-meta.json` tell clients where
//! that is (XEP-0156); `/upload/…` is XEP-0363 file upload's, when `[upload]` is on. Anything
//! else is a 404. An upgraded connection is served by the same negotiation and bound loop as TCP,
//! on the WebSocket framing.
//!
//! HTTP/1.1 only (a WebSocket upgrade is an HTTP/1.1 thing; RFC 8441 over HTTP/2 is not built).
//! Requests' headers must arrive within `header_timeout_seconds` (slowloris); a connection counts
//! against its address's limits from the accept, or, through a trusted proxy, from the upgrade
//! with the address the proxy forwarded — the proxy itself carries many clients.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use starling_upload::{plain_response as text, Body, Upload};
use starling_xml::escape_attr;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig as ProtocolConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::connection::{self, Admitted};
use crate::edge::Edge;
use crate::framing::websocket::{Upgraded, WebSocket};
use crate::framing::xml_stream::{accept_tls, BoxedIo};
use crate::listener::accept;

const HOST_META: &str = "/.well-known/host-meta";
const HOST_META_JSON: &str = "/.well-known/host-meta.json";
const WEBSOCKET_LINK: &str = "urn:xmpp:alt-connections:websocket";
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// tungstenite's buffers, per connection: it allocates the read buffer up front, and every idle
/// byte is multiplied by every connection a process holds. Stanzas are small; a large one is read
/// in several chunks. Writes are gathered up to this much, then flushed at the end of each burst.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 4 * 1024;

impl Edge {
    /// Serves `[websocket] listen` (plain HTTP) or, with `tls`, `tls_listen` (HTTPS with the c2s
    /// certificate). Runs until the edge drains.
    pub async fn serve_websocket(self: Arc<Self>, listener: TcpListener, tls: bool) {
        let drained = self.drained();
        tokio::pin!(drained);
        loop {
            let (socket, peer) = tokio::select! {
                accepted = accept(&listener) => accepted,
                () = &mut drained => return,
            };
            tokio::spawn(serve_http(self.clone(), Box::new(socket), peer, tls));
        }
    }
}

/// One HTTP connection: requests until it is upgraded, closed or timed out.
async fn serve_http(edge: Arc<Edge>, socket: BoxedIo, peer: SocketAddr, tls: bool) {
    let admitted = (!edge.config.websocket.is_trusted_proxy(peer.ip())).then(|| Admitted::check(&edge, peer.ip()));
    let (io, channel_binding) = if tls {
        match accept_tls(&edge, &edge.web_tls, socket).await {
            Ok(accepted) => accepted,
            Err(_) => return,
        }
    } else {
        (socket, None)
    };
    let header_timeout = edge.config.websocket.header_timeout();
    let drained = edge.drained();
    let connection = Arc::new(HttpConnection { edge, peer, tls, channel_binding, admitted: Mutex::new(admitted) });
    let service = hyper::service::service_fn(move |request| {
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(connection.respond(request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(served);
    // A draining edge lets the request in progress finish, then closes (an upgraded WebSocket
    // stream is drained as any bound stream).
    let served = tokio::select! {
        served = served.as_mut() => served,
        () = drained => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, %peer, "HTTP connection ended");
    }
}

struct HttpConnection {
    edge: Arc<Edge>,
    peer: SocketAddr,
    tls: bool,
    channel_binding: Option<Vec<u8>>,
    /// This connection as the per-address limits counted it at the accept (`None` from a trusted
    /// proxy); handed to the WebSocket session at the upgrade.
    admitted: Mutex<Option<Admitted>>,
}

impl HttpConnection {
    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        if let Some(upload) = self.edge.upload.as_ref().filter(|_| Upload::serves(request.uri().path())) {
            // Over its address's limits, a connection is kept only to say so.
            if let Some(why) = self.refused() {
                return text(StatusCode::TOO_MANY_REQUESTS, why);
            }
            return upload.serve(request).await;
        }
        let config = &self.edge.config.websocket;
        let path = request.uri().path();
        let known = path == config.path || path == HOST_META || path == HOST_META_JSON;
        if !known {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        if request.method() != Method::GET {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET");
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        if path == config.path {
            return self.upgrade(request);
        }
        let href = self.websocket_url(request.headers());
        let (content_type, body) = if path == HOST_META {
            let mut out = b"<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  <Link rel='".to_vec();
            out.extend_from_slice(WEBSOCKET_LINK.as_bytes());
            out.extend_from_slice(b"' href='");
            escape_attr(&mut out, &href);
            out.extend_from_slice(b"'/>\n</XRD>\n");
            ("application/xrd+xml; charset=utf-8", out)
        } else {
            let links = serde_json::json!({ "links": [{ "rel": WEBSOCKET_LINK, "href": href }] });
            ("application/json", links.to_string().into_bytes())
        };
        let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // A web client on another origin reads it (XEP-0156 §3.2.1).
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        response
    }

    /// The WebSocket handshake (RFC 6455 §4.2.2) with the `xmpp` subprotocol, or the HTTP error
    /// that says what is wrong with the request.
    fn upgrade(&self, mut request: Request<Incoming>) -> Response<Body> {
        let headers = request.headers();
        if !has_token(headers, &header::UPGRADE, "websocket") || !has_token(headers, &header::CONNECTION, "upgrade") {
            let mut response = text(StatusCode::UPGRADE_REQUIRED, "this is an XMPP over WebSocket endpoint (RFC 7395)");
            response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return response;
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version != "13") {
            let mut response = text(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 required");
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return response;
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return text(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing");
        };
        if !has_token(headers, &header::SEC_WEBSOCKET_PROTOCOL, "xmpp") {
            return text(StatusCode::BAD_REQUEST, "the WebSocket subprotocol 'xmpp' is required (RFC 7395 §3.1)");
        }
        if !self.origin_allowed(headers) {
            return text(StatusCode::FORBIDDEN, "this origin may not connect");
        }
        let secure = self.tls || self.forwarded_https(headers);
        // A redirect carries nothing TLS would protect.
        if !secure && self.edge.config.c2s.require_tls && self.edge.config.websocket.see_other_uri.is_none() {
            // Negotiation could offer nothing: no SASL without TLS, and no STARTTLS on a WebSocket.
            return text(StatusCode::FORBIDDEN, "TLS is required: connect with wss://");
        }
        let client = self.client_address(headers);
        // A connection refused at its accept stays refused, and counted, for as long as it is open.
        if let Some(why) = self.refused() {
            return text(StatusCode::TOO_MANY_REQUESTS, why);
        }
        let held = self.admitted.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let admitted = held.unwrap_or_else(|| Admitted::check(&self.edge, client.ip()));
        if let Some(why) = admitted.refused {
            return text(StatusCode::TOO_MANY_REQUESTS, why);
        }
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut request);
        let (edge, channel_binding) = (self.edge.clone(), self.channel_binding.clone());
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let io: BoxedIo = Box::new(TokioIo::new(upgraded));
            let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(protocol_config(&edge))).await;
            if let Some(uri) = &edge.config.websocket.see_other_uri {
                return redirect(&mut socket, uri, edge.config.websocket.header_timeout()).await;
            }
            let id = edge.next_connection_id();
            connection::run::<WebSocket>(edge, id, client, Upgraded { socket, secure, channel_binding }, admitted).await;
        });
        let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("xmpp"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }

    /// Why this connection was refused at its accept, if it was.
    fn refused(&self) -> Option<&'static str> {
        self.admitted.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref().and_then(|admitted| admitted.refused)
    }

    /// A browser says which page opened the socket; clients that are not browsers say nothing.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let allowed = &self.edge.config.websocket.allowed_origins;
        match headers.get(header::ORIGIN).and_then(|origin| origin.to_str().ok()) {
            Some(origin) => allowed.is_empty() || allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)),
            None => true,
        }
    }

    /// The client's address: the peer's, or through trusted proxies the last address in
    /// `X-Forwarded-For` that is not one of them.
    fn client_address(&self, headers: &HeaderMap) -> SocketAddr {
        let config = &self.edge.config.websocket;
        if !config.is_trusted_proxy(self.peer.ip()) {
            return self.peer;
        }
        let forwarded = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(','));
        let hops: Vec<IpAddr> = forwarded.filter_map(|hop| hop.trim().parse().ok()).collect();
        match hops.into_iter().rev().find(|hop| !config.is_trusted_proxy(*hop)) {
            Some(client) => SocketAddr::new(client, 0),
            None => self.peer,
        }
    }

    /// Whether a trusted proxy says the client reached it over HTTPS.
    fn forwarded_https(&self, headers: &HeaderMap) -> bool {
        self.edge.config.websocket.is_trusted_proxy(self.peer.ip())
            && headers.get(&X_FORWARDED_PROTO).and_then(|proto| proto.to_str().ok()).is_some_and(|proto| {
                proto.split(',').next().is_some_and(|first| first.trim().eq_ignore_ascii_case("https"))
            })
    }

    /// Where clients should connect, for host-meta: the configured URL, or this request's host.
    fn websocket_url(&self, headers: &HeaderMap) -> String {
        let config = &self.edge.config.websocket;
        if let Some(url) = &config.public_url {
            return url.clone();
        }
        let scheme = if self.tls || self.forwarded_https(headers) { "wss" } else { "ws" };
        let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).filter(|host| is_host(host));
        format!("{scheme}://{}{}", host.unwrap_or(self.edge.config.domain().as_str()), config.path)
    }
}

/// Sends a WebSocket stream elsewhere (RFC 7395 §3.6.1): once the client's `<open/>` has come
/// (or `wait` has passed), `<close see-other-uri='uri'/>` and the WebSocket close.
async fn redirect(socket: &mut WebSocketStream<BoxedIo>, uri: &str, wait: Duration) {
    let _ = tokio::time::timeout(wait, socket.next()).await;
    let mut close = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='".to_vec();
    escape_attr(&mut close, uri);
    close.extend_from_slice(b"'/>");
    if let Ok(close) = String::from_utf8(close) {
        let _ = socket.send(Message::Text(close.into())).await;
    }
    let _ = socket.close(None).await;
}

/// A `Host` header that can go into a URL as it is: a name or address and a port, nothing else.
fn is_host(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
}

/// Whether a comma-separated header holds `token`, ignoring case (`Connection: keep-alive,
/// Upgrade`; `Sec-WebSocket-Protocol: xmpp, other`).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(',')).any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Messages are bounded like stanzas on a stream: a bigger one is refused with `policy-violation`
/// before it is buffered whole.
fn protocol_config(edge: &Edge) -> ProtocolConfig {
    let max = edge.config.c2s.max_stanza_bytes;
    ProtocolConfig::default().read_buffer_size(READ_BUFFER).write_buffer_size(WRITE_BUFFER).max_message_size(Some(max)).max_frame_size(Some(max))
}
