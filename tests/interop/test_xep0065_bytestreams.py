"""XEP-0065 SOCKS5 bytestreams through the server's proxy (`[bytestreams]`, proxy.DOMAIN): found
through the server's disco#items, its streamhost, a transfer between two users' SOCKS5 connections
activated by the requester (slixmpp clients for the XMPP side, the SOCKS5 side by hand so every
byte is the test's), and its bounds: a third connection for one stream, an activation with no
connections, a user's stream limit, the per-stream rate, an unactivated connection's timeout, and
a client that does not speak SOCKS5. (Smack's XEP-0096 file transfer through it runs in SINT.)"""

import asyncio
import hashlib
import time

import pytest

from conftest import own_server
from harness import Account, Env, Target, free_port, stanza_error

BYTESTREAMS = "http://jabber.org/protocol/bytestreams"
PASSWORD = "socks-Password-1"
RATE = 200_000
BURST = 100_000


class Proxy:
    def __init__(self, env: Env, port: int):
        self.env, self.port = env, port


@pytest.fixture(scope="module")
def proxy(workdir):
    port = free_port()
    sections = f"""[bytestreams]
listen = ["127.0.0.1:{port}"]
max_streams_per_user = 1
rate_bytes = {RATE}
burst_bytes = {BURST}
activation_timeout_seconds = 2
"""
    with own_server(workdir, "bytestreams", sections, ("sender", "receiver"), PASSWORD) as server:
        yield Proxy(Env(Target("starling", server.endpoint, [])), port)


async def socks5(port: int, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """Connects and asks for `address` (the stream hash); returns the SOCKS5 reply code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\x05\x00"
    raw = address.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(raw)]) + raw + b"\x00\x00")
    head = await asyncio.wait_for(reader.readexactly(5), 5)
    if head[1] == 0:
        await reader.readexactly(head[4] + 2)
    return reader, writer, head[1]


def stream_hash(sid: str, requester: str, target: str) -> str:
    return hashlib.sha1(f"{sid}{requester}{target}".encode()).hexdigest()


async def clients(proxy: Proxy):
    sender = await proxy.env.client(Account("sender", PASSWORD, "localhost"))
    receiver = await proxy.env.client(Account("receiver", PASSWORD, "localhost"))
    return sender, receiver


def activate(sid: str, target: str) -> str:
    return f"<query xmlns='{BYTESTREAMS}' sid='{sid}'><activate>{target}</activate></query>"


@pytest.mark.deadline(30)
async def test_the_proxy_is_found_and_relays_an_activated_stream(proxy):
    sender, receiver = await clients(proxy)
    items = await sender.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to="localhost")
    assert "proxy.localhost" in {item.get("jid") for item in items.iter("{http://jabber.org/protocol/disco#items}item")}
    info = await sender.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="proxy.localhost")
    identity = info.find(".//{http://jabber.org/protocol/disco#info}identity")
    assert (identity.get("category"), identity.get("type")) == ("proxy", "bytestreams")
    host = (await sender.iq_ok(f"<query xmlns='{BYTESTREAMS}'/>", to="proxy.localhost")).find(f".//{{{BYTESTREAMS}}}streamhost")
    assert (host.get("jid"), host.get("host"), host.get("port")) == ("proxy.localhost", "127.0.0.1", str(proxy.port))

    address = stream_hash("s1", sender.jid, receiver.jid)
    target_reader, target_writer, code = await socks5(proxy.port, address)  # the target connects first
    assert code == 0
    requester_reader, requester_writer, code = await socks5(proxy.port, address)
    assert code == 0
    _, third, code = await socks5(proxy.port, address)
    assert code == 2, "a third connection for one stream is not allowed"
    third.close()
    await sender.iq_ok(activate("s1", receiver.jid), type_="set", to="proxy.localhost")
    requester_writer.write(b"file contents")
    assert await asyncio.wait_for(target_reader.readexactly(13), 5) == b"file contents"
    target_writer.write(b"and back")
    assert await asyncio.wait_for(requester_reader.readexactly(8), 5) == b"and back"

    # One stream at a time for this user (max_streams_per_user = 1): a second is refused.
    other = stream_hash("s2", sender.jid, receiver.jid)
    held = [await socks5(proxy.port, other) for _ in range(2)]
    refused = await sender.iq(activate("s2", receiver.jid), type_="set", to="proxy.localhost")
    assert stanza_error(refused)[1] == "resource-constraint"
    for _, writer, _ in held:
        writer.close()

    # Each direction is paced: 600 kB at 200 kB/s after a 100 kB burst takes about 2.5 s.
    started = time.monotonic()
    requester_writer.write(b"x" * 600_000)
    await asyncio.wait_for(target_reader.readexactly(600_000), 20)
    assert time.monotonic() - started > 1.5
    requester_writer.close()
    assert await asyncio.wait_for(target_reader.read(), 5) == b"", "the relay ends when one side closes"
    await sender.close()
    await receiver.close()


@pytest.mark.deadline(30)
async def test_what_the_proxy_refuses(proxy):
    sender, receiver = await clients(proxy)
    # No connections for this stream.
    missing = await sender.iq(activate("nothing", receiver.jid), type_="set", to="proxy.localhost")
    assert stanza_error(missing)[1] == "item-not-found"
    malformed = await sender.iq(f"<query xmlns='{BYTESTREAMS}' sid='x'/>", type_="set", to="proxy.localhost")
    assert stanza_error(malformed)[1] == "bad-request"
    # An unactivated connection is closed after the activation timeout (2 s here).
    reader, writer, code = await socks5(proxy.port, stream_hash("late", sender.jid, receiver.jid))
    assert code == 0
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    # Not SOCKS5: answered with "no acceptable method" and closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:  # closed with our request unread: the kernel resets
        answer = b""
    assert answer in (b"", b"\x05\xff")
    writer.close()
    await sender.close()
    await receiver.close()
