"""Issue 13, item 2: XEP-0198 resumption anywhere in the cluster. A stream-managed session is held
by its owner session node (which keeps what the client has not acknowledged), so a client resumes
on any edge — after its connection drops, and after `kill -9` of the edge it was on. The failure
test counts as XEP-0198 does on both sides: counted streams both ways, the edge killed mid-stream,
the client resumes on the other edge, and then every stanza is delivered exactly once and in order,
and both sides' `h` agree (a last clean break and resumption retransmits nothing). Set
STARLING_SM_FAULT_REPORT to a path to keep the JSON report.

Runs in the Cassandra pass of scripts/test, on a cluster of its own (an edge is killed)."""

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from harness import NS, WAIT, Account, Endpoint, Env, Target, is_message, tag, to_str
from test_cluster import Cluster, start_cluster

SM = NS["sm"]
STANZAS = {tag("c", name) for name in ("message", "presence", "iq")}
INTERVAL = 0.05      # seconds between two messages of one side (20/s)
BEFORE_KILL = 4.0    # seconds of steady stream before the edge is killed
AFTER_RESUME = 4.0   # seconds of stream after the resumption


@pytest.fixture(scope="module")
def sm_cluster(workdir):
    from conftest import PASSWORD, _servers
    nodes = start_cluster(workdir, "smc", "smc", accounts=20, node_ttl=3)
    yield Cluster(nodes, [Account(f"smc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 21)])
    for server in nodes.values():
        server.stop()
        if server in _servers:
            _servers.remove(server)


class SmPeer:
    """A raw client that does XEP-0198 by the book: counts the stanzas it receives (answering
    `<r/>` with that count), keeps what it sent until the server's `h` covers it, and resumes on
    whichever edge it is given, sending again what the server had not handled."""

    def __init__(self, env: Env, account, label: str):
        self.env = env
        self.account = account
        self.label = label
        self.jid = None
        self.previd = None
        self.sent: list[str] = []       # every stanza sent since <enable/>, in order
        self.handled_by_server = 0      # the server's latest h
        self.received = 0               # stanzas received since <enabled/>
        self.bodies: list[str] = []     # message bodies received, in order, across streams
        self.raw = None
        self.position = 0               # next inbox item of self.raw to look at
        self.resumed_at: float | None = None

    async def start(self, ep: Endpoint) -> None:
        self.raw = await self.env.raw(ep=ep)
        self.jid, _ = await self.raw.login(self.account, "sm")
        self.raw.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = await self.raw.inbox.wait(lambda e: e.tag in (tag("sm", "enabled"), tag("sm", "failed")))
        assert enabled.tag == tag("sm", "enabled") and enabled.get("id"), to_str(enabled)
        self.previd = enabled.get("id")
        self.position = self.raw.inbox.items.index(enabled) + 1

    def scan(self) -> None:
        """Counts what arrived since the last scan and answers the server's ack requests."""
        items = self.raw.inbox.items
        while self.position < len(items):
            item = items[self.position]
            self.position += 1
            if item.tag in STANZAS:
                self.received += 1
                if item.tag == tag("c", "message"):
                    self.bodies.append(item.findtext("c:body", namespaces=NS) or "")
            elif item.tag == tag("sm", "r") and not self.raw.closed.is_set():
                self.raw.send(f"<a xmlns='{SM}' h='{self.received}'/>")
            elif item.tag == tag("sm", "a"):
                self.handled_by_server = int(item.get("h"))

    def send(self, xml: str) -> None:
        self.sent.append(xml)
        if not self.raw.closed.is_set():
            self.raw.send(xml)

    async def resume(self, ep: Endpoint) -> tuple[int, float]:
        """Resumes on `ep`; returns (stanzas sent again, seconds the resumption took)."""
        self.scan()  # the old stream is closed: its count is final
        t0 = time.monotonic()
        raw = await self.env.raw(ep=ep)
        await raw.login(self.account, bind=False)
        raw.send(f"<resume xmlns='{SM}' previd='{self.previd}' h='{self.received}'/>")
        answer = await raw.inbox.wait(lambda e: e.tag in (tag("sm", "resumed"), tag("sm", "failed")), timeout=40)
        assert answer.tag == tag("sm", "resumed"), f"{self.label} could not resume: {to_str(answer)}"
        took = time.monotonic() - t0
        self.raw = raw
        self.position = raw.inbox.items.index(answer) + 1
        self.handled_by_server = int(answer.get("h"))
        again = self.sent[self.handled_by_server:]
        for xml in again:
            raw.send(xml)
        return len(again), took

    async def settle(self, timeout: float = 30) -> None:
        """Until the server has handled everything this client sent."""
        deadline = time.monotonic() + timeout
        while self.handled_by_server < len(self.sent):
            assert time.monotonic() < deadline, f"{self.label}: server handled {self.handled_by_server} of {len(self.sent)}"
            self.raw.send(f"<r xmlns='{SM}'/>")
            await asyncio.sleep(0.3)
            self.scan()


async def pump(peers: list[SmPeer], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for peer in peers:
            peer.scan()
        await asyncio.sleep(0.02)


async def counted_stream(sender: SmPeer, to: SmPeer, stop: asyncio.Event) -> None:
    seq = 0
    while not stop.is_set():
        sender.send(f"<message to='{to.jid}' type='chat' id='{sender.label}-{seq}'><body>{sender.label}:{seq}</body></message>")
        seq += 1
        await asyncio.sleep(INTERVAL)


def sequence(peer: SmPeer, label: str) -> list[int]:
    return [int(b.split(":", 1)[1]) for b in peer.bodies if b.startswith(label + ":")]


async def test_cluster_sm_resumes_on_the_other_edge(sm_cluster):
    """A connection drops; the client resumes through the other edge and gets, once, what it had
    not acknowledged."""
    cl = sm_cluster
    nodes = cl.nodes
    edge1, edge2 = nodes["edge1"].endpoint, nodes["edge2"].endpoint
    a_account, b_account = cl.pair()
    env = Env(Target("starling", edge1, []))
    a, b = SmPeer(env, a_account, "a"), SmPeer(env, b_account, "b")
    await a.start(edge1)
    await b.start(edge2)
    for i in range(3):
        b.send(f"<message to='{a.jid}' type='chat'><body>b:{i}</body></message>")
    await a.raw.inbox.wait(is_message(body="b:2"))
    a.scan()
    a.received -= 2  # the client "lost" the last two: it acknowledges only the first
    a.raw.writer.transport.abort()
    await a.raw.closed.wait()
    a.position = len(a.raw.inbox.items)
    b.send(f"<message to='{a.jid}' type='chat'><body>b:3</body></message>")
    again, _ = await a.resume(edge2)
    assert again == 0
    await a.raw.inbox.wait(is_message(body="b:3"))
    a.scan()
    assert sequence(a, "b") == [0, 1, 2, 1, 2, 3], f"b:1 and b:2 again, then b:3: {a.bodies}"
    await env.aclose()


async def test_cluster_sm_slixmpp_resumes_through_the_other_edge(sm_cluster):
    """slixmpp's own xep_0198 plugin, connected to one edge, resumes on the other."""
    cl = sm_cluster
    nodes = cl.nodes
    edge1, edge2 = nodes["edge1"].endpoint, nodes["edge2"].endpoint
    phone_account, sender_account = cl.pair()
    env = Env(Target("starling", edge1, [phone_account, sender_account]))
    phone = await env.client(phone_account, plugins=("xep_0198",))
    phone.x.end_session_on_disconnect = False
    plugin = phone.x.plugin["xep_0198"]
    for _ in range(int(WAIT * 10)):
        if plugin.sm_id:
            break
        await asyncio.sleep(0.1)
    assert plugin.sm_id, "slixmpp did not get <enabled/> with an id"
    sender = await env.client(sender_account)
    sender.message(phone.jid, "first")
    await phone.inbox.wait(is_message(body="first"))
    resumed = asyncio.Event()
    phone.x.add_event_handler("session_resumed", lambda _e: resumed.set())
    phone.disconnected.clear()
    phone.kill()
    await asyncio.wait_for(phone.disconnected.wait(), WAIT)
    sender.message(phone.jid, "while away")
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    phone.x.connect(edge2.host, edge2.port)
    await asyncio.wait_for(resumed.wait(), 40)
    await phone.inbox.wait(is_message(body="while away"))
    sender.message(phone.jid, "after")
    await phone.inbox.wait(is_message(body="after"))
    got = [m.findtext("c:body", namespaces=NS) for m in phone.inbox.find(is_message())]
    assert got == ["first", "while away", "after"], got
    await env.aclose()


@pytest.mark.deadline(180)
async def test_cluster_sm_kill_9_edge_mid_stream_then_resume_elsewhere(sm_cluster):
    from conftest import _servers
    cl = sm_cluster
    nodes = cl.nodes
    edge1_server = nodes["edge1"]
    edge1, edge2 = edge1_server.endpoint, nodes["edge2"].endpoint
    a_account, b_account = cl.pair()
    env = Env(Target("starling", edge1, []))
    a, b = SmPeer(env, a_account, "a"), SmPeer(env, b_account, "b")
    await a.start(edge1)
    await b.start(edge2)
    stop, stop_pump = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(pump([a, b], stop_pump)),
             asyncio.create_task(counted_stream(a, b, stop)), asyncio.create_task(counted_stream(b, a, stop))]
    report: dict = {"rate_per_side": 1 / INTERVAL}
    try:
        await asyncio.sleep(BEFORE_KILL)
        killed_at = time.monotonic()
        _servers.remove(edge1_server)
        edge1_server.proc.kill()
        edge1_server.proc.wait()
        await asyncio.wait_for(a.raw.closed.wait(), 10)
        again, took = await a.resume(edge2)
        report.update({"kill_to_resumed_s": round(time.monotonic() - killed_at, 3), "resume_round_trip_s": round(took, 3),
                       "a_sent_again_after_resume": again})
        await asyncio.sleep(AFTER_RESUME)
    finally:
        stop.set()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        _servers.append(edge1_server)
        edge1_server.start()
    await a.settle()
    await b.settle()
    # Everything either side sent was handled; wait until it all arrived.
    deadline = time.monotonic() + 30
    while (len(sequence(b, "a")) < len(a.sent) or len(sequence(a, "b")) < len(b.sent)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    # A last clean break and resumption: if both sides agree on h, nothing is sent again.
    stop_pump.set()
    await tasks[0]
    a.scan()
    received_before = a.received
    a.raw.writer.transport.abort()
    await a.raw.closed.wait()
    a.position = len(a.raw.inbox.items)
    await a.resume(edge2)
    await asyncio.sleep(1.0)
    a.scan()
    report.update({
        "a_sent": len(a.sent), "b_sent": len(b.sent),
        "b_received_from_a": len(sequence(b, "a")), "a_received_from_b": len(sequence(a, "b")),
        "retransmitted_after_agreeing_resume": a.received - received_before,
    })
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("STARLING_SM_FAULT_REPORT"):
        Path(os.environ["STARLING_SM_FAULT_REPORT"]).write_text(text)
    await env.aclose()
    assert sequence(b, "a") == list(range(len(a.sent))), f"a -> b not exactly once in order: {text}"
    assert sequence(a, "b") == list(range(len(b.sent))), f"b -> a not exactly once in order: {text}"
    assert report["retransmitted_after_agreeing_resume"] == 0, f"the two sides' h disagree: {text}"


async def test_cluster_bind2_inline_through_the_bus_with_xmpp_js(sm_cluster):
    """xmpp.js binds with Bind2 on one edge, stream management enabled inline (the owner's
    answer comes back through the bus inside `<bound/>`), chats with slixmpp on the other edge,
    and logs in again with its FAST token."""
    from test_xep0388_sasl2 import JS, run_node
    import shutil
    assert shutil.which("node") and (JS / "node_modules" / "@xmpp" / "client").is_dir(), "xmpp.js is not installed (scripts/test does)"
    cl = sm_cluster
    edge1, edge2 = cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint
    js_account, peer_account = cl.pair()
    env = Env(Target("starling", edge2, [peer_account]))
    peer = await env.online(peer_account)

    async def answer():
        got = await peer.inbox.wait(is_message(body="hello from xmpp.js"), timeout=WAIT * 2)
        peer.message(got.get("from"), "hello back")
        return got

    answering = asyncio.create_task(answer())
    lines = await run_node(edge1.host, str(edge1.port), env.domain, js_account.localpart, js_account.password, "js", peer.jid,
                           "hello from xmpp.js", "hello back", "again")
    got = await answering
    online = next((line for line in lines if "online" in line), None)
    assert online is not None and online["bind2"] is True, lines
    assert {"streamManagement": True, "resumable": True} in lines, f"stream management not enabled inline: {lines}"
    assert got.get("from") == online["online"], to_str(got)
    assert {"message": {"from": peer.jid, "body": "hello back"}} in lines, lines
    again = next((line for line in lines if "again" in line), None)
    assert again is not None and again["mechanism"] == "HT-SHA-256-NONE" and again["again"] == online["online"], lines
    await env.aclose()


async def test_cluster_csi_holds_presence_on_the_owner(sm_cluster):
    """XEP-0352 through the bus: `<inactive/>` reaches the owner behind the client's stanzas;
    a contact's presence (owned by the other session node, sent from the other edge) is held until
    `<active/>`."""
    cl = sm_cluster
    edge1, edge2 = cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint
    phone_account, friend_account = cl.pair()
    env = Env(Target("starling", edge1, [phone_account, friend_account]))
    phone = await env.online(phone_account)
    friend = await env.online(friend_account, ep=edge2)
    await env.subscribe_mutually(phone, friend)
    await phone.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.get("from") == friend.jid)
    phone.send("<inactive xmlns='urn:xmpp:csi:0'/>")
    await phone.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    friend.presence(status="in a meeting", show="dnd")
    await friend.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    await asyncio.sleep(1.0)  # a window for a presence that should not come yet
    assert not phone.inbox.find(lambda e: e.findtext("c:status", namespaces=NS) == "in a meeting"), "sent while inactive"
    phone.send("<active xmlns='urn:xmpp:csi:0'/>")
    got = await phone.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.findtext("c:status", namespaces=NS) == "in a meeting")
    assert got.get("from") == friend.jid
    await env.aclose()
