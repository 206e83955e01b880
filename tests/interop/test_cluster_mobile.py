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
import time
from types import SimpleNamespace

import pytest

from harness import NS, WAIT, Account, Env, Target, is_message, tag, to_str
from sm_peers import (CountedStreams, SmPeer, archived_other_than_once, break_connection, counted_stream, kill, metric, pump,
                      repeated, restart_session_node, sequence)
from test_cluster import Cluster, start_cluster, stop_cluster
from test_xep0198_stream_management import drop_connection, slixmpp_phone

SM = NS["sm"]
COMPONENT_SECRETS = {"push.localhost": "push-secret", "bot.localhost": "bot-secret"}
BEFORE_KILL = 4.0    # seconds of steady stream before the edge is killed
AFTER_RESUME = 4.0   # seconds of stream after the resumption


@pytest.fixture(scope="module")
def sm_cluster(workdir):
    from conftest import PASSWORD
    nodes = start_cluster(workdir, "smc", "smc", accounts=60, node_ttl=3, component_secrets=COMPONENT_SECRETS)
    # The first 30 accounts are taken in pairs (`Cluster.pair`), the rest by the component tests.
    yield Cluster(nodes, [Account(f"smc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 31)])
    stop_cluster(nodes)


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


@pytest.mark.deadline(300)
async def test_cluster_drain_of_every_process_keeps_stream_managed_sessions(sm_cluster):
    """Issue 18, item 3 with the mobile issue: every process of the cluster drained in turn
    (SIGTERM) while two stream-managed clients exchange counted messages. The edge `a` is on ends
    its stream with `system-shutdown` and `a` resumes on the other edge (its session kept by its
    owner, nothing sent again that the server had handled); each session node stores, commits and
    leaves the group, and the other takes its users' sessions over with the streams still open.
    No session is lost, every stanza arrives exactly once and in order, each archived once; the
    report gives each step's time."""
    from conftest import _servers
    edge1, edge2 = sm_cluster.nodes["edge1"].endpoint, sm_cluster.nodes["edge2"].endpoint
    run = CountedStreams(sm_cluster)
    a = run.a
    await run.start(sm_cluster)
    steps = []
    try:
        await asyncio.sleep(2)
        edge = sm_cluster.nodes["edge1"]
        t0 = time.monotonic()
        _servers.remove(edge)
        assert await asyncio.to_thread(edge.stop) == 0, edge.log_tail()
        assert await a.raw.stream_error(timeout=15) == "system-shutdown"
        again, took = await a.resume(edge2)
        steps.append({"process": "edge1", "sigterm_to_exit_s": round(time.monotonic() - t0, 2), "resumed_on_edge2_s": round(took, 3), "sent_again": again})
        await asyncio.to_thread(edge.start)
        _servers.append(edge)
        # a's and b's owners are the two session nodes (`pair`): each is drained once.
        for name in ("session1", "session2"):
            await asyncio.sleep(2)
            node = sm_cluster.nodes[name]
            t0 = time.monotonic()
            _servers.remove(node)
            assert await asyncio.to_thread(node.stop) == 0, node.log_tail()
            steps.append({"process": name, "sigterm_to_exit_s": round(time.monotonic() - t0, 2)})
            await asyncio.to_thread(restart_session_node, sm_cluster, node)
        await asyncio.sleep(2)
    finally:
        await run.stop_sending()
    run.report["steps"] = steps
    to_b, to_a = await run.finish(edge1)
    text = run.save("STARLING_SM_DRAIN_REPORT")
    assert to_b == list(range(len(a.sent))), f"a -> b not exactly once in order: {text}"
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


@pytest.mark.deadline(240)
@pytest.mark.parametrize("victim", ["sender", "recipient"])
async def test_cluster_kill_9_owner_while_messages_go_offline(sm_cluster, victim):
    """A counted stream to a user who is offline goes to offline storage, and the sender's (or the
    recipient's) owner is killed mid-stream. The survivor handles again what the dead owner had
    handled but not committed; the archive recognises those messages and offline storage finds
    them in the queue, so at the next login the recipient gets every message exactly once, in
    order, and each is archived once on both sides."""
    from test_cluster import partition_of
    cl = sm_cluster
    a_account, b_account = cl.pair()
    env = Env(Target("starling", cl.nodes["edge1"].endpoint, []))
    a = SmPeer(env, a_account, "a")
    victim_server = cl.nodes[cl.owner[partition_of((a_account if victim == "sender" else b_account).jid)]]
    survivor = next(node for name, node in cl.nodes.items() if name.startswith("session") and node is not victim_server)
    await a.start(cl.nodes["edge1"].endpoint)
    stop, stop_pump = asyncio.Event(), asyncio.Event()
    pumping = asyncio.create_task(pump([a], stop_pump))
    streaming = asyncio.create_task(counted_stream(a, SimpleNamespace(jid=b_account.jid), stop))
    try:
        await asyncio.sleep(BEFORE_KILL)
        kill(victim_server)
        await asyncio.sleep(12.0)  # past the takeover (Kafka's session timeout is 6 s here)
    finally:
        stop.set()
        await streaming
        restart_session_node(cl, victim_server)
    await a.settle(60)
    stop_pump.set()
    await pumping
    await asyncio.sleep(2.0)
    reader = await env.online(b_account, "reader")
    deadline = time.monotonic() + 30
    while len(received := sequence_of(reader, "a")) < len(a.sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    received = sequence_of(reader, "a")
    report = {"victim": victim, "sent": len(a.sent), "received": len(received), "repeated": repeated(received),
              "lost": sorted(set(range(len(a.sent))) - set(received))[:20],
              "replays_recognised": {name: metric(survivor, f"starling_replayed_{name}_total")
                                     for name in ("deliveries_dropped", "archive_entries_skipped", "offline_messages_skipped")},
              "archived_other_than_once": {label: await archived_other_than_once(env, account, {"a": len(a.sent)})
                                           for label, account in (("a", a_account), ("b", b_account))}}
    await env.aclose()
    text = json.dumps(report, indent=2)
    print(text)
    assert received == list(range(len(a.sent))), f"not exactly once in order: {text}"
    assert not any(report["archived_other_than_once"].values()), f"archived other than once: {text}"


def sequence_of(client, label: str) -> list[int]:
    """The counted bodies from `label` a harness client received, in order."""
    bodies = [el.findtext("c:body", namespaces=NS) or "" for el in client.inbox.find(is_message())]
    return [int(body.split(":", 1)[1]) for body in bodies if body.startswith(label + ":")]


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
