//! The XEP-0065 SOCKS5 bytestreams proxy at `proxy.DOMAIN` (`[bytestreams]`), for file transfer
//! between clients that cannot reach each other. Each edge serves it on its own: a client's IQs to
//! the proxy's domain are answered by its edge (the bound loop hands them here instead of to the
//! session layer), the streamhost it is given is that edge's SOCKS5 listener, and the requester's
//! activation comes on its own stream, so to the same edge that holds both connections. In a
//! cluster every edge announces its own address and a transfer never crosses edges.
//!
//! Bounded: a connection waits at most `activation_timeout_seconds` to be paired and activated, a
//! user relays at most `max_streams_per_user` streams at once, and each direction of a stream is
//! paced to `rate_bytes` a second (the read shaper's token bucket: a delay, never an error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::{Digest, Sha1};
use starling_protocol::{ns, Jid, StanzaError, StanzaErrorCondition};
use starling_xml::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::BytestreamsConfig;
use crate::edge::Edge;
use crate::listener::accept;
use crate::shaper::ReadShaper;

const NS_BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";
/// SOCKS5 (RFC 1928): version, "no authentication", CONNECT, a domain-name address.
const SOCKS_VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;
const DOMAIN_NAME: u8 = 3;
const SUCCEEDED: u8 = 0;
const NOT_ALLOWED: u8 = 2;
const COMMAND_NOT_SUPPORTED: u8 = 7;
/// A stream's address is the hex SHA-1 of its sid and both JIDs (XEP-0065 §5.3.2).
const HASH_LENGTH: usize = 40;
/// How long a client may take over the SOCKS5 greeting and request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Proxy {
    config: BytestreamsConfig,
    pub(crate) jid: Jid,
    /// The SOCKS5 address clients are told to connect to.
    host: String,
    port: u16,
    /// Connections by stream hash, waiting for their activation: the target's, then the requester's.
    waiting: Mutex<HashMap<String, Vec<TcpStream>>>,
    /// Streams being relayed, by the bare JID of the user who activated them.
    relaying: Arc<Mutex<HashMap<Jid, u32>>>,
}

impl Proxy {
    /// The proxy `config` describes, or `None` when it has no listener.
    pub(crate) fn new(config: &BytestreamsConfig, domain: &Jid) -> Option<Proxy> {
        let first = config.listen.first()?;
        let (listen_host, port) = first.rsplit_once(':')?;
        let host = if config.host.is_empty() { listen_host.trim_matches(['[', ']']).to_owned() } else { config.host.clone() };
        let jid = Jid::new(&config.domain_for(domain)).ok()?;
        Some(Proxy {
            config: config.clone(),
            jid,
            host,
            port: port.parse().ok()?,
            waiting: Mutex::new(HashMap::new()),
            relaying: Arc::default(),
        })
    }

    /// The answer to an IQ a client sent to the proxy's domain: disco#info, the streamhost query,
    /// or an activation.
    pub(crate) fn answer(&self, iq: &Element, from: &Jid) -> Element {
        let payload = iq.children().next();
        let is_get = iq.attr("type") == Some("get");
        let outcome = match payload {
            Some(query) if is_get && query.is("query", ns::DISCO_INFO) => Ok(Some(
                Element::new("query", ns::DISCO_INFO)
                    .with_child(Element::new("identity", ns::DISCO_INFO).with_attr("category", "proxy").with_attr("type", "bytestreams").with_attr("name", "SOCKS5 Bytestreams"))
                    .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO))
                    .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", NS_BYTESTREAMS)),
            )),
            Some(query) if is_get && query.is("query", NS_BYTESTREAMS) => Ok(Some(Element::new("query", NS_BYTESTREAMS).with_child(
                Element::new("streamhost", NS_BYTESTREAMS).with_attr("jid", self.jid.as_str()).with_attr("host", self.host.as_str()).with_attr("port", self.port.to_string()),
            ))),
            Some(query) if !is_get && query.is("query", NS_BYTESTREAMS) => self.activate(query, from).map(|()| None),
            Some(_) => Err(StanzaErrorCondition::ServiceUnavailable),
            None => Err(StanzaErrorCondition::BadRequest),
        };
        let mut reply = crate::iq::reply(iq.attr("id").unwrap_or_default(), outcome.map_err(StanzaError::new));
        reply.set_attr("from", self.jid.as_str());
        reply.set_attr("to", from.as_str());
        reply
    }

    /// Joins the two connections of the stream `query` names (§6.3.3) and relays between them.
    fn activate(&self, query: &Element, requester: &Jid) -> Result<(), StanzaErrorCondition> {
        let sid = query.attr("sid").ok_or(StanzaErrorCondition::BadRequest)?;
        let target = query.get_child("activate", NS_BYTESTREAMS).map(Element::text).ok_or(StanzaErrorCondition::BadRequest)?;
        let target = Jid::new(target.trim()).map_err(|_| StanzaErrorCondition::JidMalformed)?;
        let hash = stream_hash(sid, requester, &target);
        let user = requester.bare();
        // The limit is checked and the stream counted under one lock: two resources of one user
        // activating at once cannot both pass it.
        let (target_socket, requester_socket) = {
            let mut relaying = lock(&self.relaying);
            if relaying.get(&user).copied().unwrap_or(0) >= self.config.max_streams_per_user {
                return Err(StanzaErrorCondition::ResourceConstraint);
            }
            let mut waiting = lock(&self.waiting);
            // Both must have connected: the target, then the requester (§6.3.3).
            if waiting.get(&hash).map(Vec::len) != Some(2) {
                return Err(StanzaErrorCondition::ItemNotFound);
            }
            let Some([target_socket, requester_socket]) = waiting.remove(&hash).and_then(|pair| <[TcpStream; 2]>::try_from(pair).ok()) else {
                return Err(StanzaErrorCondition::ItemNotFound);
            };
            *relaying.entry(user.clone()).or_default() += 1;
            (target_socket, requester_socket)
        };
        tracing::debug!(%requester, %target, "bytestream activated");
        let (relaying, rate, burst) = (self.relaying.clone(), self.config.rate_bytes, self.config.burst_bytes);
        tokio::spawn(async move {
            relay(target_socket, requester_socket, rate, burst).await;
            let mut relaying = lock(&relaying);
            if let Some(count) = relaying.get_mut(&user) {
                *count -= 1;
                if *count == 0 {
                    relaying.remove(&user);
                }
            }
        });
        Ok(())
    }

    fn has_both(&self, hash: &str) -> bool {
        lock(&self.waiting).get(hash).is_some_and(|pair| pair.len() >= 2)
    }

    /// Keeps a connection with its stream hash until its activation, or the timeout. (A third
    /// connecting at the same moment as the second is dropped here.)
    fn wait_for_activation(self: &Arc<Self>, hash: String, socket: TcpStream) {
        let mut waiting = lock(&self.waiting);
        let pair = waiting.entry(hash.clone()).or_default();
        if pair.len() >= 2 {
            return;
        }
        pair.push(socket);
        let proxy = self.clone();
        let timeout = Duration::from_secs(self.config.activation_timeout_seconds);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            // Still not activated: its sockets are dropped, and so closed.
            lock(&proxy.waiting).remove(&hash);
        });
    }
}

impl Edge {
    /// Serves the SOCKS5 side of the bytestreams proxy. Runs until the listener fails.
    pub async fn serve_bytestreams(self: Arc<Self>, listener: TcpListener) {
        let Some(proxy) = self.proxy.clone() else { return };
        loop {
            let (socket, _) = accept(&listener).await;
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(socket, &proxy)).await;
            });
        }
    }
}

/// The SOCKS5 greeting and CONNECT request (RFC 1928, as XEP-0065 §5.3.2 uses it: no
/// authentication, the stream hash as a domain name, port 0). A connection that passes waits for
/// its activation; one that does not is told why and closed.
async fn handshake(mut socket: TcpStream, proxy: &Arc<Proxy>) -> std::io::Result<()> {
    let mut header = [0u8; 2];
    socket.read_exact(&mut header).await?;
    if header[0] != SOCKS_VERSION {
        return socket.write_all(&[SOCKS_VERSION, NO_ACCEPTABLE_METHOD]).await;
    }
    let mut methods = vec![0u8; usize::from(header[1])];
    socket.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTHENTICATION) {
        return socket.write_all(&[SOCKS_VERSION, NO_ACCEPTABLE_METHOD]).await;
    }
    socket.write_all(&[SOCKS_VERSION, NO_AUTHENTICATION]).await?;
    let mut request = [0u8; 5];
    socket.read_exact(&mut request).await?;
    let [version, command, _, address_type, length] = request;
    if version != SOCKS_VERSION || command != CONNECT || address_type != DOMAIN_NAME || usize::from(length) != HASH_LENGTH {
        return socket.write_all(&[SOCKS_VERSION, COMMAND_NOT_SUPPORTED, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    }
    let mut address = vec![0u8; HASH_LENGTH + 2];
    socket.read_exact(&mut address).await?;
    let hash = String::from_utf8_lossy(&address[..HASH_LENGTH]).to_ascii_lowercase();
    if !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) || proxy.has_both(&hash) {
        // Not a stream hash, or a third connection for one stream (§5.3.2 allows two).
        return socket.write_all(&[SOCKS_VERSION, NOT_ALLOWED, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    }
    let mut reply = vec![SOCKS_VERSION, SUCCEEDED, 0, DOMAIN_NAME, length];
    reply.extend_from_slice(&address);
    socket.write_all(&reply).await?;
    proxy.wait_for_activation(hash, socket);
    Ok(())
}

/// Copies both ways until either side closes, each direction paced to `rate` bytes a second.
async fn relay(mut target: TcpStream, mut requester: TcpStream, rate: u64, burst: u64) {
    let (mut target_read, mut target_write) = target.split();
    let (mut requester_read, mut requester_write) = requester.split();
    let forward = pump(&mut requester_read, &mut target_write, rate, burst);
    let backward = pump(&mut target_read, &mut requester_write, rate, burst);
    tokio::select! {
        () = forward => {}
        () = backward => {}
    }
}

async fn pump<R: AsyncReadExt + Unpin, W: AsyncWriteExt + Unpin>(from: &mut R, to: &mut W, rate: u64, burst: u64) {
    let mut shaper = ReadShaper::new(rate, burst);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if let Some(shaper) = &shaper {
            shaper.wait().await;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Some(shaper) = shaper.as_mut() {
            shaper.charge(read);
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// SHA-1 of the sid, the requester's and the target's full JIDs, in lowercase hex (§5.3.2).
fn stream_hash(sid: &str, requester: &Jid, target: &Jid) -> String {
    let digest = Sha1::new().chain_update(sid).chain_update(requester.as_str()).chain_update(target.as_str()).finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_hash_is_the_sha1_of_sid_requester_and_target() {
        // python3 -c "import hashlib; print(hashlib.sha1(b'vxf9n471bn46requester@example.com/footarget@example.org/bar').hexdigest())"
        let hash = stream_hash("vxf9n471bn46", &Jid::new("requester@example.com/foo").expect("jid"), &Jid::new("target@example.org/bar").expect("jid"));
        assert_eq!(hash, "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff");
    }
}
