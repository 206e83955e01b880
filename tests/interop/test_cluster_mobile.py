"""Issue 13 in a cluster (2 edges, 2 session nodes): XEP-0198 resumption anywhere, CSI, Bind2 and
FAST through the bus, and external components (XEP-0114) with a push app server (XEP-0357).

XEP-0198 resumption anywhere in the cluster. A stream-managed session is held
by its owner session node (which keeps what the client has not acknowledged), so a client resumes
on any edge — after its connection drops, and after `kill -9` of the edge it was on. The failure
test counts as XEP-0198 does on both sides: counted streams both ways, the edge killed mid-stream,
the client resumes on the other edge, and then every stanza is delivered exactly once and in order,
and both sides' `h` agree (a last clean break and resumption retransmits nothing). Set
STARLING_SM_FAULT_REPORT to a path to keep the JSON report.

Components connect to edge 1 and users to edge 2, owned by either session node; the one-process
tests of test_xep0114_components.py and test_xep0357_push.py run unchanged against that.

Runs in the Cassandra pass of scripts/test, on a cluster of its own (an edge is killed)."""

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from harness import NS, WAIT, Account, Endpoint, Env, Target, is_message, tag, to_str
from test_cluster import Cluster, start_cluster
from test_xep0198_stream_management import drop_connection, slixmpp_phone

SM = NS["sm"]
COMPONENT_SECRETS = {"push.localhost": "push-secret", "bot.localhost": "bot-secret"}
STANZAS = {tag("c", name) for name in ("message", "presence", "iq")}
INTERVAL = 0.05      # seconds between two messages of one side (20/s)
BEFORE_KILL = 4.0    # seconds of steady stream before the edge is killed
AFTER_RESUME = 4.0   # seconds of stream after the resumption


@pytest.fixture(scope="module")
def sm_cluster(workdir):
    from conftest import PASSWORD, _servers
    nodes = start_cluster(workdir, "smc", "smc", accounts=60, node_ttl=3, component_secrets=COMPONENT_SECRETS)
    # The first 30 accounts are taken in pairs (`Cluster.pair`), the rest by the component tests.
    yield Cluster(nodes, [Account(f"smc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 31)])
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


async def archived_other_than_once(env: Env, account, sent: dict[str, int]) -> dict[str, int]:
    """The message bodies of this test in the account's own archive (XEP-0313) that are not there
    exactly once: each counted message is archived once by its sender and once by its receiver."""
    from harness import new_id
    from test_xep0313_mam import M, MAM, Page, rsm
    client = await env.online(account, "archive-reader")
    counts: dict[str, int] = {f"{label}:{n}": 0 for label, count in sent.items() for n in range(count)}
    after = None
    while True:
        qid = new_id()
        answer = await client.iq(f"<query xmlns='{MAM}' queryid='{qid}'>{rsm(max_=250, after=after)}</query>", "set", timeout=60)
        assert answer.get("type") == "result", to_str(answer)
        page = Page(answer, client.inbox.find(lambda e: e.tag == tag("c", "message") and e.find(f"mam:result[@queryid='{qid}']", M) is not None))
        for body in page.bodies:
            if body in counts or (body and body[:2] in ("a:", "b:")):
                counts[body] = counts.get(body, 0) + 1
        if page.complete or not page.results:
            break
        after = page.last
    return {body: count for body, count in counts.items() if count != 1}


def repeated(seqs: list[int]) -> list[tuple[int, list[int]]]:
    """Each sequence number received more than once, with the positions it arrived at."""
    return [(s, [i for i, t in enumerate(seqs) if t == s]) for s in sorted(set(seqs)) if seqs.count(s) > 1][:20]


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
    break_connection(a)
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
    phone = await slixmpp_phone(env, phone_account)
    sender = await env.client(sender_account)
    sender.message(phone.jid, "first")
    await phone.inbox.wait(is_message(body="first"))
    await drop_connection(phone)
    sender.message(phone.jid, "while away")
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    phone.x.connect(edge2.host, edge2.port)
    await asyncio.wait_for(phone.resumed.wait(), 40)
    await phone.inbox.wait(is_message(body="while away"))
    sender.message(phone.jid, "after")
    await phone.inbox.wait(is_message(body="after"))
    got = [m.findtext("c:body", namespaces=NS) for m in phone.inbox.find(is_message())]
    assert got == ["first", "while away", "after"], got
    await env.aclose()


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


def break_connection(peer: SmPeer) -> None:
    """The network goes: the socket is reset, nothing more is read from it."""
    peer.raw.writer.transport.abort()


class CountedStreams:
    """Two stream-managed clients of different owners, `a` on edge 1 and `b` on edge 2, each
    sending the other a counted message every INTERVAL."""

    def __init__(self, cl):
        edge1 = cl.nodes["edge1"].endpoint
        self.a_account, self.b_account = cl.pair()
        self.env = Env(Target("starling", edge1, []))
        self.a, self.b = SmPeer(self.env, self.a_account, "a"), SmPeer(self.env, self.b_account, "b")
        self.report: dict = {"rate_per_side": 1 / INTERVAL}

    async def start(self, cl) -> None:
        await self.a.start(cl.nodes["edge1"].endpoint)
        await self.b.start(cl.nodes["edge2"].endpoint)
        self.stop, self.stop_pump = asyncio.Event(), asyncio.Event()
        self.pump = asyncio.create_task(pump([self.a, self.b], self.stop_pump))
        self.streams = [asyncio.create_task(counted_stream(self.a, self.b, self.stop)),
                        asyncio.create_task(counted_stream(self.b, self.a, self.stop))]

    async def stop_sending(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.streams, return_exceptions=True)

    async def finish(self, resume_on: Endpoint) -> tuple[list[int], list[int]]:
        """Until both sides' stanzas are handled and arrived; then a last clean break and
        resumption of `a` on `resume_on`, which sends nothing again if both sides agree on h.
        Returns the sequences each side received."""
        a, b = self.a, self.b
        await a.settle(60)
        await b.settle(60)
        deadline = time.monotonic() + 60
        while (set(sequence(b, "a")) != set(range(len(a.sent))) or set(sequence(a, "b")) != set(range(len(b.sent)))) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.stop_pump.set()
        await self.pump
        a.scan()
        received_before = a.received
        break_connection(a)
        await a.raw.closed.wait()
        a.position = len(a.raw.inbox.items)
        await a.resume(resume_on)
        await asyncio.sleep(1.0)
        a.scan()
        to_b, to_a = sequence(b, "a"), sequence(a, "b")
        self.report.update({
            "a_sent": len(a.sent), "b_sent": len(b.sent),
            "lost_a_to_b": sorted(set(range(len(a.sent))) - set(to_b))[:20],
            "lost_b_to_a": sorted(set(range(len(b.sent))) - set(to_a))[:20],
            "duplicates_a_to_b": len(to_b) - len(set(to_b)), "duplicates_b_to_a": len(to_a) - len(set(to_a)),
            "repeated_a_to_b": repeated(to_b), "repeated_b_to_a": repeated(to_a),
            "retransmitted_after_agreeing_resume": a.received - received_before,
        })
        self.report["archived_other_than_once"] = {
            label: await archived_other_than_once(self.env, account, {"a": len(a.sent), "b": len(b.sent)})
            for label, account in (("a", self.a_account), ("b", self.b_account))}
        await self.env.aclose()
        return to_b, to_a

    def save(self, variable: str) -> str:
        text = json.dumps(self.report, indent=2)
        print(text)
        if os.environ.get(variable):
            Path(os.environ[variable]).write_text(text)
        return text


def metric(server, name: str) -> float:
    """A counter of a node's Prometheus page."""
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def restart_session_node(cl, server) -> None:
    """Starts a killed session node again and waits until the two share the partitions."""
    from conftest import _servers
    from test_cluster import wait_for_split
    other = next(node for name, node in cl.nodes.items() if name.startswith("session") and node is not server)
    since = server.log_size()
    _servers.append(server)
    server.start()
    wait_for_split(server, other, since, 0)


def kill(server) -> None:
    from conftest import _servers
    _servers.remove(server)
    server.proc.kill()
    server.proc.wait()


@pytest.mark.deadline(180)
async def test_cluster_sm_kill_9_edge_mid_stream_then_resume_elsewhere(sm_cluster):
    from conftest import _servers
    edge1_server, edge2 = sm_cluster.nodes["edge1"], sm_cluster.nodes["edge2"].endpoint
    run = CountedStreams(sm_cluster)
    await run.start(sm_cluster)
    try:
        await asyncio.sleep(BEFORE_KILL)
        killed_at = time.monotonic()
        kill(edge1_server)
        await asyncio.wait_for(run.a.raw.closed.wait(), 10)
        again, took = await run.a.resume(edge2)
        run.report.update({"kill_to_resumed_s": round(time.monotonic() - killed_at, 3), "resume_round_trip_s": round(took, 3),
                           "a_sent_again_after_resume": again})
        await asyncio.sleep(AFTER_RESUME)
    finally:
        await run.stop_sending()
        _servers.append(edge1_server)
        edge1_server.start()
    to_b, to_a = await run.finish(edge2)
    text = run.save("STARLING_SM_FAULT_REPORT")
    assert to_b == list(range(len(run.a.sent))), f"a -> b not exactly once in order: {text}"
    assert to_a == list(range(len(run.b.sent))), f"b -> a not exactly once in order: {text}"
    assert run.report["retransmitted_after_agreeing_resume"] == 0, f"the two sides' h disagree: {text}"
    assert not any(run.report["archived_other_than_once"].values()), f"archived other than once: {text}"


@pytest.mark.deadline(240)
async def test_cluster_sm_kill_9_owner_mid_stream_then_resume_elsewhere(sm_cluster):
    """The session node owning one client is killed mid-stream. The new owner takes the
    stream-managed session over from the edge (its counts and what the client had not
    acknowledged), the live stream goes on, and the client can still resume — on the other edge.
    The records the dead owner had handled but not committed are handled again by the new owner;
    what they had delivered is recognised and not delivered again (the edge's delivery keys).
    Every stanza arrives exactly once, in order, and both sides' `h` agree at the end."""
    from test_cluster import partition_of
    edge1, edge2 = sm_cluster.nodes["edge1"].endpoint, sm_cluster.nodes["edge2"].endpoint
    run = CountedStreams(sm_cluster)
    a, b = run.a, run.b
    victim = sm_cluster.nodes[sm_cluster.owner[partition_of(run.a_account.jid)]]
    await run.start(sm_cluster)
    try:
        await asyncio.sleep(BEFORE_KILL)
        killed_at = time.monotonic()
        sent_before_kill = len(b.sent)
        kill(victim)
        # The survivor takes the partition over (Kafka's session timeout) and serves the stream.
        while not [s for s in sequence(a, "b") if s >= sent_before_kill]:
            assert time.monotonic() - killed_at < 60, "the live stream did not come back after the owner's death"
            await asyncio.sleep(0.05)
        run.report["kill_to_live_again_s"] = round(time.monotonic() - killed_at, 2)
        await asyncio.sleep(2.0)
        # The client moves: its connection drops and it resumes on the other edge.
        break_connection(a)
        await a.raw.closed.wait()
        again, took = await a.resume(edge2)
        run.report.update({"resumed_after_takeover": True, "resume_round_trip_s": round(took, 3), "a_sent_again_after_resume": again})
        await asyncio.sleep(AFTER_RESUME)
    finally:
        await run.stop_sending()
        restart_session_node(sm_cluster, victim)
    to_b, to_a = await run.finish(edge1)
    survivor = next(node for name, node in sm_cluster.nodes.items() if name.startswith("session") and node is not victim)
    run.report["replays_recognised"] = {name: metric(survivor, f"starling_replayed_{name}_total")
                                        for name in ("deliveries_dropped", "archive_entries_skipped")}
    text = run.save("STARLING_SM_OWNER_REPORT")
    assert to_b == list(range(len(a.sent))), f"a -> b not exactly once in order: {text}"
    assert to_a == list(range(len(b.sent))), f"b -> a not exactly once in order: {text}"
    assert run.report["retransmitted_after_agreeing_resume"] == 0, f"the two sides' h disagree: {text}"
    assert not any(run.report["archived_other_than_once"].values()), f"archived other than once: {text}"


COMPONENT_TESTS = [
    "test_xep0114_components.test_xep0114_component_and_client_exchange_messages_and_disco",
    "test_xep0114_components.test_xep0114_a_departed_component_domain_is_unreachable",
    "test_xep0357_push.test_xep0357_offline_user_is_notified_and_gets_the_message_at_login",
    "test_xep0357_push.test_xep0357_detached_stream_management_session_is_notified",
    "test_xep0357_push.test_xep0357_item_not_found_disables_and_disable_stops",
]


@pytest.mark.parametrize("name", COMPONENT_TESTS, ids=lambda name: name.split(".")[1])
async def test_cluster_components(sm_cluster, name):
    """A one-process component or push test, unchanged, with the component on edge 1 and the
    users on edge 2: the component's domain is served by the owner of its partition, which its
    edge told, and the users' owners reach it through that node."""
    import importlib
    from conftest import PASSWORD
    module, function = name.split(".")
    test = getattr(importlib.import_module(module), function)
    edge1, edge2 = sm_cluster.nodes["edge1"], sm_cluster.nodes["edge2"]
    first = 31 + 6 * COMPONENT_TESTS.index(name)
    pool = [Account(f"smc{i}", PASSWORD, edge2.domain) for i in range(first, first + 6)]
    env = Env(Target("starling", edge2.endpoint, pool, component_port=edge1.component_port, component_secrets=COMPONENT_SECRETS))
    try:
        await test(env)
    finally:
        await env.aclose()


def owner_of(cl, bare: str):
    """The session node serving `bare`'s partition now, as the registry says (`starling where`
    takes a user: asked about one in the same partition)."""
    from test_cluster import partition_of
    partition = partition_of(bare)
    user = next(f"x{i}" for i in range(10_000) if partition_of(f"x{i}@localhost") == partition)
    where = cl.nodes["session1" if cl.nodes["session1"].alive() else "session2"].cli("where", user).stdout
    node = next(name for name in ("session1", "session2") if f"served by session node {name[:-1]}-{name[-1]}" in where)
    return cl.nodes[node]


@pytest.mark.deadline(180)
async def test_cluster_component_survives_its_owner_and_its_edge(sm_cluster):
    """The session node owning the component's domain is killed: the survivor takes the
    partition over and learns where the component is from the edge's next announcement; then the
    component's edge is killed: its domain answers `service-unavailable` once the lease runs out,
    and the component, reconnecting through the other edge, is reached again."""
    from test_xep0114_components import connect_component
    from conftest import PASSWORD, _servers
    edge1, edge2 = sm_cluster.nodes["edge1"], sm_cluster.nodes["edge2"]
    pool = [Account(f"smc{i}", PASSWORD, edge2.domain) for i in range(1, 31)][-2:]
    env = Env(Target("starling", edge2.endpoint, pool, component_port=edge1.component_port, component_secrets=COMPONENT_SECRETS))
    component, received = await connect_component(env, "bot.localhost")
    user = await env.online()
    report = {}

    async def reached(label: str, bound: float) -> float:
        t0 = time.monotonic()
        n = 0
        while not any(str(m["body"]).startswith(f"{label}:") for m in received):
            assert time.monotonic() - t0 < bound, f"the component was not reached within {bound}s ({label})"
            user.message("echo@bot.localhost", f"{label}:{n}")
            n += 1
            await asyncio.sleep(0.2)
        return round(time.monotonic() - t0, 2)

    try:
        report["before"] = await reached("before", 10)
        victim = owner_of(sm_cluster, "bot.localhost")
        report["killed"] = victim.name
        kill(victim)
        report["owner_killed_to_reached_s"] = await reached("after-owner", 60)
        restart_session_node(sm_cluster, victim)
        # The component's edge dies: after the lease, its domain is unreachable, not a black hole.
        killed_at = time.monotonic()
        kill(edge1)
        while True:
            try:
                answer = await user.iq("<ping xmlns='urn:xmpp:ping'/>", to="bot.localhost", timeout=2)
                if answer.find("c:error/stanzas:service-unavailable", NS) is not None:
                    break
            except AssertionError:
                pass  # into the dead edge's inbox, until the lease runs out
            assert time.monotonic() - killed_at < 40, "the dead edge's component is still routed to"
            await asyncio.sleep(0.5)
        report["edge_killed_to_service_unavailable_s"] = round(time.monotonic() - killed_at, 2)
        component.disconnect()
        component, received = await connect_component(Env(Target("starling", edge2.endpoint, [], component_port=edge2.component_port,
                                                                  component_secrets=COMPONENT_SECRETS)), "bot.localhost")
        report["reconnected_elsewhere_to_reached_s"] = await reached("elsewhere", 30)
    finally:
        component.disconnect()
        if edge1 not in _servers:
            _servers.append(edge1)
            edge1.start()
        await env.aclose()
    print(json.dumps(report))
