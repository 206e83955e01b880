"""RFC 6120 §4.9: a stream error reaches a client that keeps writing. The server writes the error
and its close, shuts its side (TLS close_notify), then reads and discards what the client still
sends for a bounded while before closing the socket: closed with unread bytes, the kernel would
answer with a reset, and the client's kernel would throw away the error it had not read yet.

The client here is the one that loses the error without it: a blocking TLS socket that writes a
whole 5 MB stanza (or a flood with a comment in the middle) and only then reads. Each case runs
20 times, over direct TLS and STARTTLS, before and after authentication."""

import asyncio
import base64
import socket
import ssl

import pytest

from harness import insecure_context

RUNS = 20
BIG = 5 * 1024 * 1024


class BlockingStream:
    """A plain blocking client stream: what a simple client library does."""

    def __init__(self, ep, direct_tls: bool):
        self.domain = ep.domain
        raw = socket.create_connection((ep.host, ep.tls_port if direct_tls else ep.port), timeout=20)
        self.sock = insecure_context().wrap_socket(raw) if direct_tls else raw
        self.seen = b""

    def read_until(self, marker: bytes) -> None:
        while marker not in self.seen:
            data = self.sock.recv(65536)
            assert data, f"closed before {marker!r}: {self.seen[-300:]!r}"
            self.seen += data

    def open(self) -> None:
        self.seen = b""
        self.sock.sendall(f"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{self.domain}' version='1.0'>".encode())
        self.read_until(b"</stream:features>")

    def starttls(self) -> None:
        self.sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(b"<proceed")
        self.sock = insecure_context().wrap_socket(self.sock)

    def login(self, localpart: str, password: str) -> None:
        token = base64.b64encode(f"\0{localpart}\0{password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
        self.read_until(b"<success")
        self.open()
        self.sock.sendall(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        self.read_until(b"</iq>")

    def write_all_then_read(self, data: bytes) -> bytes:
        """Writes everything (the server may cut it off), then reads to the end."""
        self.seen = b""
        try:
            self.sock.sendall(data)
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        try:
            while data := self.sock.recv(65536):
                self.seen += data
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        self.sock.close()
        return self.seen


def condition(received: bytes) -> str:
    for name in (b"policy-violation", b"restricted-xml"):
        if b"<stream:error>" in received and name in received:
            return name.decode()
    return f"no stream error in {received[-300:]!r}"


def session(env, direct_tls: bool) -> BlockingStream:
    stream = BlockingStream(env.target.ep, direct_tls)
    stream.open()
    if not direct_tls:
        stream.starttls()
        stream.open()
    account = env.account()
    stream.login(account.localpart, account.password)
    return stream


@pytest.mark.parametrize("run", range(RUNS))
async def test_rfc6120_4_9_oversized_stanza_while_writing_gets_policy_violation(env, run):
    def attempt() -> str:
        stream = session(env, direct_tls=run % 2 == 0)
        return condition(stream.write_all_then_read(b"<iq type='set' id='big'><vCard xmlns='vcard-temp'><DESC>" + b"x" * BIG))
    assert await asyncio.to_thread(attempt) == "policy-violation"


@pytest.mark.parametrize("run", range(RUNS))
async def test_rfc6120_4_9_oversized_before_auth_gets_policy_violation(env, run):
    def attempt() -> str:
        stream = BlockingStream(env.target.ep, direct_tls=run % 2 == 0)
        stream.open()
        if run % 2:
            stream.starttls()
            stream.open()
        return condition(stream.write_all_then_read(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + b"A" * BIG))
    assert await asyncio.to_thread(attempt) == "policy-violation"


@pytest.mark.parametrize("run", range(RUNS))
async def test_rfc6120_11_1_restricted_xml_mid_flood_gets_restricted_xml(env, run):
    def attempt() -> str:
        stream = session(env, direct_tls=run % 2 == 0)
        message = b"<message to='nobody@%s' type='headline'><body>flood</body></message>" % stream.domain.encode()
        return condition(stream.write_all_then_read(message * 2000 + b"<!-- not allowed in a stream -->" + message * 20000))
    assert await asyncio.to_thread(attempt) == "restricted-xml"


@pytest.mark.parametrize("run", range(RUNS))
async def test_rfc6120_4_9_error_behind_unread_answers_still_arrives(env, run):
    """The client asked for a lot it has not read yet (its vCard, 40 times): the error waits behind
    those answers in the server's send buffer. Closed at once, the reset would discard them all."""
    def attempt() -> str:
        stream = session(env, direct_tls=run % 2 == 0)
        photo = base64.b64encode(b"\x89PNG" * 40_000).decode()
        stream.sock.sendall(f"<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>{photo}</BINVAL></PHOTO></vCard></iq>".encode())
        stream.read_until(b"id='v'")
        gets = b"".join(b"<iq type='get' id='g%d'><vCard xmlns='vcard-temp'/></iq>" % i for i in range(40))
        received = stream.write_all_then_read(gets + b"<iq type='set' id='big'><vCard xmlns='vcard-temp'><DESC>" + b"x" * BIG)
        return condition(received)
    assert await asyncio.to_thread(attempt) == "policy-violation"
