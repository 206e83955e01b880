"""XMPP over WebSocket (RFC 7395) and its discovery (XEP-0156), with a third-party WebSocket client
(the `websockets` package) speaking the framing by hand, so that every byte of bad input is ours to
choose: login and chat with a TCP client, host-meta, the HTTP answers to a wrong handshake, the
stream errors for a wrong message, slow headers, trusted proxies and per-address limits. A real
XMPP client in a real browser is test_rfc7395_browser.py."""

import asyncio
import base64
import http.client
import json
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import own_server
from harness import Account, Env, StarlingServer, Target, free_port, insecure_context, is_message

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
STREAM = "http://etherx.jabber.org/streams"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SM = "urn:xmpp:sm:3"
MAX_STANZA = 20_000
PASSWORD = "ws-Password-1"


class Ws:
    """The ports of a server with WebSocket listeners: plain (`ws:`) and TLS (`wss:`)."""

    def __init__(self, server: StarlingServer, plain: int, tls: int):
        self.server, self.plain, self.tls = server, plain, tls

    def url(self, secure: bool = True, host: str = "127.0.0.1") -> str:
        return f"{'wss' if secure else 'ws'}://{host}:{self.tls if secure else self.plain}/xmpp-websocket"


@pytest.fixture(scope="module")
def ws(workdir):
    plain, tls = free_port(), free_port()
    sections = f"""[websocket]
listen = ["127.0.0.1:{plain}"]
tls_listen = ["127.0.0.1:{tls}"]
allowed_origins = ["https://chat.example"]
trusted_proxies = ["127.0.0.1/32"]
header_timeout_seconds = 2

[upload]
enabled = true
"""
    c2s = f"max_stanza_bytes = {MAX_STANZA}\nnegotiation_timeout_seconds = 3\nmax_connections_per_address = 3\n"
    with own_server(workdir, "websocket", sections, ("wsalice", "wsbob"), PASSWORD, c2s=c2s) as server:
        yield Ws(server, plain, tls)


def parse(frame: str) -> ET.Element:
    return ET.fromstring(frame)


async def opened(ws: Ws, *, source: str = "127.0.0.1", secure: bool = True, headers: dict | None = None, **kwargs):
    return await connect(ws.url(secure), subprotocols=["xmpp"], ssl=insecure_context() if secure else None,
                         local_addr=(source, 0), additional_headers=headers, open_timeout=5, **kwargs)


async def receive(socket) -> ET.Element:
    return parse(await asyncio.wait_for(socket.recv(), 5))


async def open_stream(socket, domain: str = "localhost") -> ET.Element:
    """Sends `<open/>`, checks the server's, returns the features."""
    await socket.send(f"<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>")
    ours = await receive(socket)
    assert ours.tag == f"{{{FRAMING}}}open" and ours.get("from") == domain and ours.get("version") == "1.0", ET.tostring(ours)
    features = await receive(socket)
    assert features.tag == f"{{{STREAM}}}features", ET.tostring(features)
    return features


async def authenticate(socket, user: str) -> ET.Element:
    """SASL PLAIN, then the restart: returns the features of the new stream."""
    features = await open_stream(socket)
    mechanisms = [m.text for m in features.iter(f"{{{SASL}}}mechanism")]
    assert "PLAIN" in mechanisms, mechanisms
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    await socket.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
    assert (await receive(socket)).tag == f"{{{SASL}}}success"
    return await open_stream(socket)  # the restart: a new <open/> on the same WebSocket


async def login(socket, user: str, resource: str) -> str:
    await authenticate(socket, user)
    await socket.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      f"<resource>{resource}</resource></bind></iq>")
    bound = await receive(socket)
    assert bound.get("type") == "result", ET.tostring(bound)
    return bound.findtext(".//{urn:ietf:params:xml:ns:xmpp-bind}jid")


async def stream_error(socket) -> str:
    """The condition of the stream error the server sends, after which come `<close/>` and the
    WebSocket close. A stream that was not open yet is opened first (RFC 6120 §4.9.1.1)."""
    error = await receive(socket)
    if error.tag == f"{{{FRAMING}}}open":
        error = await receive(socket)
    assert error.tag == f"{{{STREAM}}}error", ET.tostring(error)
    condition = next(child.tag.split("}")[1] for child in error if child.tag != f"{{{STREAMS}}}text")
    assert (await receive(socket)).tag == f"{{{FRAMING}}}close"
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(socket.recv(), 5)
    return condition


def http_get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=insecure_context()) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.deadline(60)
async def test_a_web_client_logs_in_over_wss_and_chats_with_a_tcp_client(ws):
    env = Env(Target("starling", ws.server.endpoint, []))
    bob = await env.client(Account("wsbob", PASSWORD, "localhost"), "tcp")
    async with await opened(ws) as socket:
        assert socket.subprotocol == "xmpp"
        jid = await login(socket, "wsalice", "web")
        assert jid == "wsalice@localhost/web"
        await socket.send("<message xmlns='jabber:client' to='wsbob@localhost/tcp' type='chat'><body>over websocket</body></message>")
        await bob.inbox.wait(is_message(frm=jid, body="over websocket"))
        bob.send(f"<message to='{jid}' type='chat'><body>over tcp</body></message>")
        reply = await receive(socket)
        while reply.tag != "{jabber:client}message":  # presence and the like may come first
            reply = await receive(socket)
        assert reply.findtext("{jabber:client}body") == "over tcp" and reply.get("from") == "wsbob@localhost/tcp"
        # A clean close: ours is answered with the server's, then the WebSocket closes.
        await socket.send(f"<close xmlns='{FRAMING}'/>")
        while (answer := await receive(socket)).tag != f"{{{FRAMING}}}close":
            pass
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
    await bob.close()


@pytest.mark.deadline(60)
async def test_stream_management_resumes_on_a_new_websocket(ws):
    env = Env(Target("starling", ws.server.endpoint, []))
    bob = await env.client(Account("wsbob", PASSWORD, "localhost"), "sm")
    socket = await opened(ws)
    jid = await login(socket, "wsalice", "phone")
    await socket.send(f"<enable xmlns='{SM}' resume='true'/>")
    enabled = await receive(socket)
    assert enabled.tag == f"{{{SM}}}enabled" and enabled.get("resume") == "true", ET.tostring(enabled)
    # The WebSocket dies without a close (a phone losing its network); a message comes meanwhile.
    socket.transport.abort()
    bob.message(jid, "while you were away")
    await asyncio.sleep(0.5)
    async with await opened(ws) as again:
        features = await authenticate(again, "wsalice")
        assert features.find(f"{{{SM}}}sm") is not None
        await again.send(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='0'/>")
        resumed = await receive(again)
        assert resumed.tag == f"{{{SM}}}resumed", ET.tostring(resumed)
        while (stanza := await receive(again)).tag != "{jabber:client}message":
            pass
        assert stanza.findtext("{jabber:client}body") == "while you were away"
    await bob.close()


@pytest.mark.deadline(30)
async def test_host_meta_points_at_the_websocket_endpoint(ws):
    status, headers, body = http_get(f"https://127.0.0.1:{ws.tls}/.well-known/host-meta")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    link = parse(body.decode()).find("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
    assert link.get("rel") == "urn:xmpp:alt-connections:websocket" and link.get("href") == ws.url(), body
    status, headers, body = http_get(f"https://127.0.0.1:{ws.tls}/.well-known/host-meta.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"links": [{"rel": "urn:xmpp:alt-connections:websocket", "href": ws.url()}]}
    # Through a trusted proxy that says the client came over HTTPS, the link is wss: too.
    status, _, body = http_get(f"http://127.0.0.1:{ws.plain}/.well-known/host-meta.json", {"X-Forwarded-Proto": "https"})
    assert json.loads(body)["links"][0]["href"] == ws.url(secure=False).replace("ws://", "wss://")
    assert http_get(f"https://127.0.0.1:{ws.tls}/elsewhere")[0] == 404


@pytest.mark.deadline(30)
async def test_a_wrong_handshake_gets_an_http_error_saying_why(ws):
    for protocols, status in ((None, 400), (["chat"], 400)):
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws.url(), subprotocols=protocols, ssl=insecure_context(), open_timeout=5)
        assert refused.value.response.status_code == status
        assert b"xmpp" in refused.value.response.body
    with pytest.raises(InvalidStatus) as refused:
        await opened(ws, headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    async with await opened(ws, headers={"Origin": "https://chat.example"}) as socket:
        await open_stream(socket)
    # A plain GET of the endpoint is told it is a WebSocket endpoint.
    status, headers, _ = http_get(ws.url().replace("wss://", "https://"))
    assert status == 426 and headers["Upgrade"] == "websocket"


@pytest.mark.deadline(30)
async def test_plain_ws_needs_a_trusted_proxy_that_saw_https(ws):
    # From an address that is not a trusted proxy, its X-Forwarded-Proto is not believed.
    with pytest.raises(InvalidStatus) as refused:
        await opened(ws, secure=False, source="127.0.0.71", headers={"X-Forwarded-Proto": "https"})
    assert refused.value.response.status_code == 403 and b"wss://" in refused.value.response.body
    async with await opened(ws, secure=False, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}) as socket:
        assert await login(socket, "wsalice", "proxied") == "wsalice@localhost/proxied"


@pytest.mark.deadline(60)
@pytest.mark.parametrize("message, condition", [
    (b"<message xmlns='jabber:client'/>", "bad-format"),  # binary
    ("<message xmlns='jabber:client'><body>half", "not-well-formed"),
    ("<r xmlns='urn:xmpp:sm:3'/><r xmlns='urn:xmpp:sm:3'/>", "bad-format"),
    ("<message xmlns='jabber:client'><!-- a comment --></message>", "restricted-xml"),
    ("<message xmlns='jabber:client'><body>" + "x" * MAX_STANZA + "</body></message>", "policy-violation"),
], ids=["binary", "half-an-element", "two-elements", "comment", "oversized"])
async def test_a_wrong_message_ends_the_stream_with_the_right_error(ws, message, condition):
    async with await opened(ws, max_size=None) as socket:
        await open_stream(socket)
        await socket.send(message)
        assert await stream_error(socket) == condition


@pytest.mark.deadline(30)
async def test_a_client_that_never_opens_the_stream_is_timed_out(ws):
    async with await opened(ws) as socket:
        started = time.monotonic()
        assert await asyncio.wait_for(stream_error(socket), 10) == "connection-timeout"
        assert time.monotonic() - started < 6


@pytest.mark.deadline(30)
async def test_slow_headers_are_cut_off(ws):
    reader, writer = await asyncio.open_connection("127.0.0.1", ws.plain, local_addr=("127.0.0.72", 0))
    writer.write(b"GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    started = time.monotonic()
    # One header line a second would keep it open for ever without the header timeout.
    for _ in range(10):
        await asyncio.sleep(1)
        try:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
        except ConnectionError:
            break
        if reader.at_eof():
            break
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:  # a reset after our unread header lines: cut off all the same
        answer = b""
    assert time.monotonic() - started < 6, "the connection was held past the header timeout"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()


@pytest.mark.deadline(30)
async def test_an_address_over_its_connection_limit_gets_429_and_others_do_not(ws):
    held = [await opened(ws, source="127.0.0.73") for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await opened(ws, source="127.0.0.73")
    assert refused.value.response.status_code == 429
    # The other things on these listeners (XEP-0363 files) are refused to that address too.
    upload = http.client.HTTPConnection("127.0.0.1", ws.plain, timeout=5, source_address=("127.0.0.73", 0))
    upload.request("GET", "/upload/" + "0" * 32 + "/" + "0" * 32 + "/x?expires=1&sig=00")
    assert upload.getresponse().status == 429
    upload.close()
    async with await opened(ws, source="127.0.0.74") as other:
        await open_stream(other)
    for socket in held:
        await socket.close()


@pytest.mark.deadline(60)
async def test_a_moved_endpoint_sends_clients_elsewhere_with_see_other_uri(workdir):
    """`[websocket] see_other_uri`: the client's `<open/>` is answered with `<close see-other-uri/>`
    (RFC 7395 §3.6.1, never a see-other-host stream error) and the WebSocket close, over plain
    `ws:` too (a redirect carries nothing TLS would protect); host-meta announces the new endpoint
    (`public_url`)."""
    port, target = free_port(), "wss://new.example/xmpp-websocket"
    sections = f'[websocket]\nlisten = ["127.0.0.1:{port}"]\npublic_url = "{target}"\nsee_other_uri = "{target}"\n'
    with own_server(workdir, "websocket-moved", sections):
        async with await connect(f"ws://127.0.0.1:{port}/xmpp-websocket", subprotocols=["xmpp"], open_timeout=5) as socket:
            await socket.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
            close = await receive(socket)
            assert close.tag == f"{{{FRAMING}}}close" and close.get("see-other-uri") == target, ET.tostring(close)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 5)
        status, _, body = http_get(f"http://127.0.0.1:{port}/.well-known/host-meta.json")
        assert status == 200 and json.loads(body)["links"][0]["href"] == target
