//! `--websocket`: XMPP over WebSocket (RFC 7395) under the same client code as the XML stream. An
//! adapter makes the WebSocket look like the byte stream every scenario already speaks: what the
//! client writes is split into top-level elements, one text message each, its stream header and
//! `</stream:stream>` becoming `<open/>` and `<close/>`; what the server sends is read back as one
//! stream, its `<open/>` and `<close/>` becoming a stream header and its end. The server sees
//! exactly RFC 7395 framing; the harness pays a scan of what it writes, the price of running every
//! scenario unchanged over both transports.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

const OPEN_AS_HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// A WebSocket with the `xmpp` subprotocol, read and written as an XML stream.
pub struct WebSocketBytes<S> {
    socket: WebSocketStream<S>,
    open: Utf8Bytes,
    /// Written since the last flush; split into messages at the flush.
    written: Vec<u8>,
    /// Messages split off and not yet taken by the socket.
    pending: VecDeque<Message>,
    /// What the server sent, as stream bytes, not yet read.
    readable: Bytes,
}

/// The WebSocket handshake on an established (TLS) connection to `server`, asking for `path` and
/// the `xmpp` subprotocol.
pub async fn open<S>(io: S, server: SocketAddr, path: &str, domain: &str) -> io::Result<WebSocketBytes<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("wss://{server}{path}").into_client_request().map_err(io::Error::other)?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    // Small buffers, as the server's: tens of thousands of connections share this process.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096);
    let (socket, response) = tokio_tungstenite::client_async_with_config(request, io, Some(config)).await.map_err(io::Error::other)?;
    if response.headers().get("Sec-WebSocket-Protocol").is_none_or(|protocol| protocol != "xmpp") {
        return Err(io::Error::other("the server did not accept the xmpp subprotocol"));
    }
    let open = format!("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>");
    Ok(WebSocketBytes { socket, open: open.into(), written: Vec::new(), pending: VecDeque::new(), readable: Bytes::new() })
}

impl<S> WebSocketBytes<S> {
    /// Splits what was written into messages, keeping an incomplete element for the next flush.
    fn split_written(&mut self) {
        let mut at = 0;
        loop {
            let rest = &self.written[at..];
            let start = rest.iter().position(|byte| !byte.is_ascii_whitespace()).unwrap_or(rest.len());
            let rest = &rest[start..];
            at += start;
            let (length, message) = if rest.starts_with(b"<?xml") {
                match find(rest, b"?>") {
                    Some(end) => (end + 2, None),
                    None => break,
                }
            } else if rest.starts_with(b"<stream:stream") {
                match find(rest, b">") {
                    Some(end) => (end + 1, Some(Message::Text(self.open.clone()))),
                    None => break,
                }
            } else if rest.starts_with(b"</stream:stream>") {
                (16, Some(Message::Text(Utf8Bytes::from_static("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"))))
            } else {
                match element_end(rest) {
                    Some(end) => (end, std::str::from_utf8(&rest[..end]).ok().map(|text| Message::Text(text.into()))),
                    None => break,
                }
            };
            self.pending.extend(message);
            at += length;
        }
        self.written.drain(..at);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Where the element `bytes` starts with ends: tags counted, quoted attribute values skipped
/// (text cannot hold a raw `<`). `None` while it is incomplete.
fn element_end(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'<' {
            at += 1;
            continue;
        }
        let closing = bytes.get(at + 1) == Some(&b'/');
        let mut quote = None;
        let mut end = at + 1;
        while end < bytes.len() {
            match (quote, bytes[end]) {
                (Some(open), byte) if byte == open => quote = None,
                (None, byte @ (b'\'' | b'"')) => quote = Some(byte),
                (None, b'>') => break,
                _ => {}
            }
            end += 1;
        }
        if end == bytes.len() {
            return None;
        }
        if closing {
            depth = depth.checked_sub(1)?;
        } else if bytes[end - 1] != b'/' {
            depth += 1;
        }
        at = end + 1;
        if depth == 0 {
            return Some(at);
        }
    }
    None
}

fn io_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketBytes<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.readable.is_empty() {
                let length = self.readable.len().min(out.remaining());
                out.put_slice(&self.readable.split_to(length));
                return Poll::Ready(Ok(()));
            }
            let text = match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Poll::Ready(Err(io_error(error))),
            };
            self.readable = if text.starts_with("<open") {
                Bytes::from_static(OPEN_AS_HEADER)
            } else if text.starts_with("<close") {
                Bytes::from_static(b"</stream:stream>")
            } else {
                Bytes::from(text)
            };
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.written.is_empty() {
            this.split_written();
        }
        while !this.pending.is_empty() {
            ready!(Pin::new(&mut this.socket).poll_ready(cx)).map_err(io_error)?;
            if let Some(message) = this.pending.pop_front() {
                Pin::new(&mut this.socket).start_send(message).map_err(io_error)?;
            }
        }
        Pin::new(&mut this.socket).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.socket).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::element_end;

    #[test]
    fn finds_where_an_element_ends() {
        assert_eq!(element_end(b"<a/><b/>"), Some(4));
        assert_eq!(element_end(b"<message to='a>b'><body>x</body></message><r/>"), Some(42));
        assert_eq!(element_end(b"<message><body>x</body>"), None);
        assert_eq!(element_end(b"<iq id=\"/>\"><q/></iq>"), Some(21));
    }
}
