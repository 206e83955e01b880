//! Streams to other servers: found through [`Resolver`](crate::resolve::Resolver), secured with
//! TLS (STARTTLS or direct), authenticated with SASL EXTERNAL when our certificate is accepted
//! and theirs verifies, else with dialback (when allowed). One stream per pair of domains (ours,
//! theirs) carries that pair's stanzas, in order, from a bounded queue; a stream that cannot be
//! set up bounces what waited for it, and an idle one is closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::ServerName;
use starling_protocol::{ns, Stanza, StanzaErrorCondition, StreamErrorCondition};
use starling_xml::{StreamEvent, NS_STREAMS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::dialback::{self, NS_DIALBACK, NS_DIALBACK_FEATURE};
use crate::federation::{Federation, Pair};
use crate::resolve::Target;
use crate::stream::{self, BoxedIo, Failed, S2sStream};

/// How long closing a stream may take, and how long the other side has to close its own.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What an outgoing stream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Authenticated as our domain, to carry stanzas.
    Stanzas,
    /// Only to ask the other server to confirm a dialback key (XEP-0220 §2.2): no authentication.
    Verify,
}

/// Why no stream could be set up: the condition stanzas waiting for it are bounced with.
pub(crate) fn bounce_condition(failed: &Failed) -> StanzaErrorCondition {
    match failed {
        Failed::Io(error) if error.kind() == std::io::ErrorKind::TimedOut => StanzaErrorCondition::RemoteServerTimeout,
        _ => StanzaErrorCondition::RemoteServerNotFound,
    }
}

/// A stream from `local` to `remote`, negotiated for `purpose`, and the id the other server gave
/// it; each place DNS names is tried in turn.
pub(crate) async fn connect(federation: &Federation, local: &str, remote: &str, purpose: Purpose) -> Result<(S2sStream, String), Failed> {
    let mut last = Failed::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {remote}")));
    for target in federation.resolver.targets(remote).await {
        for address in federation.resolver.addresses(&target).await {
            let socket = match tokio::time::timeout(federation.config.connect_timeout(), TcpStream::connect(address)).await {
                Ok(Ok(socket)) => socket,
                Ok(Err(error)) => {
                    last = error.into();
                    continue;
                }
                Err(_) => {
                    last = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {address}")).into();
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let negotiated = tokio::time::timeout(federation.config.negotiation_timeout(), negotiate(federation, Box::new(socket), &target, local, remote, purpose)).await;
            match negotiated {
                Ok(Ok(connected)) => return Ok(connected),
                Ok(Err(failed)) => {
                    tracing::info!(%local, %remote, %address, error = %failed, "s2s stream out not set up");
                    last = failed;
                }
                Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("negotiating with {address}")).into(),
            }
        }
    }
    Err(last)
}

async fn tls(federation: &Federation, io: BoxedIo, local: &str, remote: &str, direct_tls: bool) -> Result<S2sStream, Failed> {
    let config = federation.tls.client(local, direct_tls).map_err(|error| Failed::Tls(error.to_string()))?;
    let name = ServerName::try_from(remote.to_owned()).map_err(|error| Failed::Tls(error.to_string()))?;
    let tls = TlsConnector::from(config).connect(name, io).await?;
    let chain = stream::peer_chain(tls.get_ref().1.peer_certificates());
    Ok(S2sStream::new(Box::new(tls), federation.config.limits(), Some(chain)))
}

async fn negotiate(federation: &Federation, io: BoxedIo, target: &Target, local: &str, remote: &str, purpose: Purpose) -> Result<(S2sStream, String), Failed> {
    let mut stream = if target.direct_tls { tls(federation, io, local, remote, true).await? } else { S2sStream::new(io, federation.config.limits(), None) };
    let mut authenticated = false;
    loop {
        stream.send(&stream::header(local, Some(remote), None)).await?;
        let header = stream.header().await?;
        let stream_id = header.id.clone().unwrap_or_default();
        let features = stream::parse(&stream.element().await?).filter(|features| features.is("features", NS_STREAMS));
        let Some(features) = features else { return Err(Failed::refused(StreamErrorCondition::UnsupportedVersion, "stream features expected (version 1.0)")) };
        tracing::debug!(%local, %remote, secure = stream.secure(), features = %String::from_utf8_lossy(&features.to_bytes()), "s2s out: features");
        if authenticated {
            return Ok((stream, stream_id));
        }
        if !stream.secure() {
            if features.get_child("starttls", ns::TLS).is_some() {
                stream.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
                let answer = stream.element().await?;
                if answer.name != "proceed" || answer.ns != ns::TLS {
                    return Err(Failed::Tls("STARTTLS refused".into()));
                }
                let io = stream.into_io()?;
                stream = tls(federation, io, local, remote, false).await?;
                continue;
            }
            if federation.config.require_tls {
                return Err(Failed::refused(StreamErrorCondition::PolicyViolation, "TLS is required between servers"));
            }
        }
        let verified = stream.peer_certificates.as_deref().is_some_and(|chain| federation.trust.verifies(chain, remote));
        if !verified && !federation.config.dialback {
            return Err(Failed::refused(StreamErrorCondition::PolicyViolation, "the server's certificate does not verify"));
        }
        if purpose == Purpose::Verify {
            return Ok((stream, stream_id));
        }
        let external = features
            .get_child("mechanisms", ns::SASL)
            .is_some_and(|mechanisms| mechanisms.children().any(|mechanism| mechanism.text().trim() == "EXTERNAL"));
        if verified && external && sasl_external(&mut stream, local).await? {
            stream = stream.restart();
            authenticated = true;
            continue;
        }
        let dialback = features.get_child("dialback", NS_DIALBACK_FEATURE).is_some() || header.prefixes.iter().any(|(_, ns)| ns == NS_DIALBACK);
        if !federation.config.dialback || !dialback {
            return Err(Failed::refused(StreamErrorCondition::NotAuthorized, "no authentication both servers support"));
        }
        if stream_id.is_empty() {
            // A key for no stream could be replayed on any.
            return Err(Failed::refused(StreamErrorCondition::NotAuthorized, "dialback needs a stream id"));
        }
        tracing::debug!(%local, %remote, verified, "s2s out: dialback");
        let key = federation.secret.key(remote, local, &stream_id);
        stream.send(&dialback::element("result", local, remote, None, Some(&key), None)).await?;
        return dialback_answer(&mut stream, local, remote).await.map(|()| (stream, stream_id));
    }
}

/// XEP-0178: SASL EXTERNAL as `local`; false when the other server refuses it.
async fn sasl_external(stream: &mut S2sStream, local: &str) -> Result<bool, Failed> {
    let authzid = base64::engine::general_purpose::STANDARD.encode(local);
    stream.send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>").as_bytes()).await?;
    let answer = stream.element().await?;
    Ok(answer.ns == ns::SASL && answer.name == "success")
}

/// Waits for the other server's verdict on our dialback key.
async fn dialback_answer(stream: &mut S2sStream, local: &str, remote: &str) -> Result<(), Failed> {
    loop {
        let element = stream.element().await?;
        if element.ns != NS_DIALBACK || element.name != "result" {
            continue;
        }
        if element.attr("from") != Some(remote) || element.attr("to") != Some(local) {
            continue;
        }
        return match element.attr("type") {
            Some("valid") => Ok(()),
            verdict => Err(Failed::refused(StreamErrorCondition::NotAuthorized, &format!("dialback {}", verdict.unwrap_or("without a verdict")))),
        };
    }
}

/// How long a stream out must have lived for what is left in its queue at its end to be sent on a
/// new stream rather than bounced: a server that closes every stream at once is not retried
/// without end.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Carries the stanzas of `pair` queued on `queue`: sets the stream up, writes them in order until
/// the stream ends or idles. What is still queued then goes on a new stream (or, when no stream
/// could be set up, or the last one lived less than [`RETRY_AFTER`], is bounced).
pub(crate) async fn run(federation: Arc<Federation>, pair: Pair, queue: mpsc::Receiver<Stanza>) {
    let setup = tokio::time::timeout(federation.config.setup_timeout(), connect(&federation, &pair.local, &pair.remote, Purpose::Stanzas));
    let stream = match setup.await {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(failed)) => {
            tracing::info!(local = %pair.local, remote = %pair.remote, error = %failed, "federation: no stream, queued stanzas bounced");
            return federation.give_up(&pair, queue, Some(bounce_condition(&failed)));
        }
        Err(_) => {
            tracing::info!(local = %pair.local, remote = %pair.remote, "federation: no stream in time, queued stanzas bounced");
            return federation.give_up(&pair, queue, Some(StanzaErrorCondition::RemoteServerTimeout));
        }
    };
    tracing::info!(local = %pair.local, remote = %pair.remote, "federation: stream out");
    federation.metrics.s2s_streams.outbound.inc();
    let opened = Instant::now();
    let queue = carry(&federation, stream, queue).await;
    federation.metrics.s2s_streams.outbound.dec();
    tracing::info!(local = %pair.local, remote = %pair.remote, "federation: stream out closed");
    let bounce = (opened.elapsed() < RETRY_AFTER).then_some(StanzaErrorCondition::RemoteServerTimeout);
    federation.give_up(&pair, queue, bounce);
}

/// Writes what `queue` gives until the stream ends (the other side closed it, or a write failed
/// or took longer than the negotiation timeout) or idles; then closes it. The queue is closed as
/// soon as the stream is over, so that nothing more is queued behind a stream that cannot carry it.
async fn carry(federation: &Federation, stream: S2sStream, mut queue: mpsc::Receiver<Stanza>) -> mpsc::Receiver<Stanza> {
    let S2sStream { mut reader, mut writer, .. } = stream;
    // Nothing is expected on a stream out once it is authenticated but whitespace and its close.
    let (ended, mut reader_ended) = tokio::sync::oneshot::channel::<()>();
    let reading = tokio::spawn(async move {
        while let Ok(StreamEvent::Element(_)) = reader.next().await {}
        let _ = ended.send(());
    });
    let (idle, write_limit) = (federation.config.idle_timeout(), federation.config.negotiation_timeout());
    loop {
        tokio::select! {
            biased;
            _ = &mut reader_ended => break,
            stanza = queue.recv() => {
                let Some(stanza) = stanza else { break };
                let Some(bytes) = stanza.to_foreign_stream() else {
                    federation.bounce(stanza, StanzaErrorCondition::InternalServerError, "the stanza could not be written");
                    continue;
                };
                if !matches!(tokio::time::timeout(write_limit, writer.write_all(&bytes)).await, Ok(Ok(()))) {
                    federation.bounce(stanza, StanzaErrorCondition::RemoteServerTimeout, "the stream to the other server broke");
                    break;
                }
            }
            () = tokio::time::sleep(idle) => break,
        }
    }
    queue.close();
    let close = async {
        let _ = writer.write_all(&stream::close_bytes(None)).await;
        let _ = writer.shutdown().await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
    // The other side has a moment to close its side too; after it the socket is let go.
    let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader_ended).await;
    reading.abort();
    queue
}
