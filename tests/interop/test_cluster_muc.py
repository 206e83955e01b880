"""Issues 14 and 15 in a cluster (2 edges, 2 session nodes): rooms are actors owned by the session node of
their JID's partition. The service lists the public rooms of both nodes (the listing is stored),
and when the node owning a room is killed (`kill -9`) the room comes back on the survivor with its
configuration and its occupants (from the registry), nothing accepted is lost, and nothing is
delivered or archived twice. Set STARLING_MUC_FAULT_REPORT to a path to keep the JSON report.

PEP nodes belong to their account's actor: after `kill -9` of the account's owner the last item
is still served (from the store) and notifications still arrive (the new owner hears the
account's restored resources and probes its contacts to learn again who asked for what).

Runs in the Cassandra pass of scripts/test, on a cluster of its own (a session node is killed)."""

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from harness import NS, Account, Env, Target, is_message, is_presence, to_str
from sm_peers import kill, metric, repeated, restart_session_node
from test_cluster import Cluster, partition_of, start_cluster, stop_cluster
from test_xep0045_muc import M, MUC_OWNER, SERVICE, join, statuses

SENDERS = 3
RATE = 2.0          # groupchat messages a second per sender: the backlog of a takeover stays within an occupant's burst
BEFORE_KILL = 5.0   # seconds of steady traffic before the room's owner is killed
AFTER_KILL = 12.0   # seconds of traffic after (past the takeover: Kafka's session timeout is 6 s here)


@pytest.fixture(scope="module")
def muc_cluster(workdir):
    from conftest import PASSWORD
    nodes = start_cluster(workdir, "mucc", "mucc", accounts=40, node_ttl=3)
    yield Cluster(nodes, [Account(f"mucc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 41)])
    stop_cluster(nodes)


def room_owned_by(cl: Cluster, node: str) -> str:
    """A fresh room JID whose partition the session node `node` owns."""
    while True:
        room = f"room-{uuid.uuid4().hex[:8]}@{SERVICE}"
        if cl.owner[partition_of(room)] == node:
            return room


def accounts_owned_by(cl: Cluster, node: str, count: int) -> list[Account]:
    picked = [acc for acc in cl.pool if acc.localpart not in cl.used and cl.owner[partition_of(acc.jid)] == node][:count]
    assert len(picked) == count, f"not enough accounts on {node}"
    cl.used |= {acc.localpart for acc in picked}
    return picked


async def configure(owner, room: str, fields: dict[str, str]) -> None:
    values = "".join(f"<field var='{var}'><value>{value}</value></field>" for var, value in fields.items())
    await owner.iq_ok(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>{values}</x></query>", "set", room)


async def test_cluster_muc_the_service_lists_public_rooms_of_both_nodes(muc_cluster):
    cl = muc_cluster
    env = Env(Target("starling", cl.nodes["edge1"].endpoint, []))
    [owner] = accounts_owned_by(cl, "session1", 1)
    client = await env.online(owner)
    rooms = []
    for node in ("session1", "session2"):
        room = room_owned_by(cl, node)
        own = await join(client, room, "owner")
        assert 201 in statuses(own), to_str(own)
        await configure(client, room, {"muc#roomconfig_roomname": f"On {node}", "muc#roomconfig_publicroom": "1"})
        rooms.append(room)
    items = await client.iq(f"<query xmlns='{M['items']}'/>", "get", to=SERVICE)
    listed = {i.get("jid"): i.get("name") for i in items.findall("items:query/items:item", M)}
    assert {room: listed.get(room) for room in rooms} == {rooms[0]: "On session1", rooms[1]: "On session2"}, to_str(items)
    await env.aclose()


async def test_cluster_muc_a_groupchat_message_is_one_bus_record_per_edge(muc_cluster):
    """Four occupants on two edges, owned by the node that does not own the room: a groupchat
    message leaves the room's node as one record per edge (the edges write it to each connection),
    not one per occupant through each owner; a stream-managed occupant gets it through its owner,
    which counts it for XEP-0198."""
    from sm_peers import SmPeer
    cl = muc_cluster
    room = room_owned_by(cl, "session1")
    accounts = accounts_owned_by(cl, "session2", 5)
    edges = [cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint]
    env = Env(Target("starling", edges[0], []))
    clients = [await env.online(acc, ep=edges[i % 2]) for i, acc in enumerate(accounts[:4])]
    own = await join(clients[0], room, "o0")
    assert 201 in statuses(own), to_str(own)
    await configure(clients[0], room, {})
    for i, client in enumerate(clients[1:], 1):
        await join(client, room, f"o{i}")
    managed = SmPeer(env, accounts[4], "m")
    await managed.start(edges[1])
    managed.send(f"<presence to='{room}/m'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await clients[0].inbox.wait(is_presence(frm=f"{room}/m"))
    node = cl.nodes["session1"]
    records, deliveries = metric(node, "starling_fan_out_records_total"), metric(node, "starling_fan_out_deliveries_total")
    clients[1].send(f"<message to='{room}' type='groupchat'><body>once per edge</body></message>")
    for client in clients:
        await client.inbox.wait(is_message(frm=f"{room}/o1", body="once per edge", type_="groupchat"))
    deadline = time.monotonic() + 10
    while "once per edge" not in managed.bodies:
        assert time.monotonic() < deadline, "the stream-managed occupant did not get the message"
        await asyncio.sleep(0.1)
        managed.scan()
    assert metric(node, "starling_fan_out_records_total") - records == 2, "one record per edge"
    assert metric(node, "starling_fan_out_deliveries_total") - deliveries == 4, "the four plain occupants"
    # Its owner counted it: an acknowledgement of everything received is not too many.
    managed.raw.send("<a xmlns='urn:xmpp:sm:3' h='%d'/>" % managed.received)
    managed.raw.send("<r xmlns='urn:xmpp:sm:3'/>")
    await managed.raw.inbox.wait(lambda e: e.tag == "{urn:xmpp:sm:3}a")
    assert not managed.raw.closed.is_set(), "the stream-managed occupant's stream ended"
    await env.aclose()


def counted(client, room: str, label: str) -> list[int]:
    bodies = [m.findtext("c:body", namespaces=NS) or "" for m in client.inbox.find(is_message(frm=f"{room}/{label}", type_="groupchat"))]
    return [int(body.split(":", 1)[1]) for body in bodies if body.startswith(label + ":")]


@pytest.mark.deadline(240)
@pytest.mark.parametrize("victim_role", ["room", "occupants"])
async def test_cluster_muc_kill_9_of_an_owner_loses_nothing_and_keeps_the_occupants(muc_cluster, victim_role):
    """Three senders talk in a temporary room at an even rate, read by two occupants on both edges;
    the session node owning the room (or the one owning all its occupants) is killed. The survivor
    restores the room (configuration from the store, occupants from the registry) or the users'
    sessions, handles what the dead node had not committed, and every occupant gets every message
    exactly once and in order, without joining again; the room's archive holds each once, and a
    newcomer sees every occupant."""
    cl = muc_cluster
    victim_name = "session2"
    survivor_name = "session1"
    victim, survivor = cl.nodes[victim_name], cl.nodes[survivor_name]
    room = room_owned_by(cl, victim_name if victim_role == "room" else survivor_name)
    # The users on the other node than the room: only one side moves.
    accounts = accounts_owned_by(cl, survivor_name if victim_role == "room" else victim_name, SENDERS + 3)
    edges = [cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint]
    env = Env(Target("starling", edges[0], []))
    clients = [await env.online(acc, ep=edges[i % 2]) for i, acc in enumerate(accounts[:SENDERS + 2])]
    senders, readers = clients[:SENDERS], clients[SENDERS:]
    owner = senders[0]
    own = await join(owner, room, "s0")
    assert 201 in statuses(own), to_str(own)
    await configure(owner, room, {"muc#roomconfig_roomname": "Failover", "muc#roomconfig_whois": "anyone"})
    for i, client in enumerate(senders[1:], 1):
        await join(client, room, f"s{i}")
    for i, client in enumerate(readers):
        await join(client, room, f"r{i}")

    sent = [0] * SENDERS
    errors = []
    stop = asyncio.Event()

    async def talk(index: int) -> None:
        client = senders[index]
        start = time.monotonic()
        while not stop.is_set():
            client.send(f"<message to='{room}' type='groupchat' id='m{index}-{sent[index]}'><body>s{index}:{sent[index]}</body></message>")
            sent[index] += 1
            await asyncio.sleep(max(0.0, start + sent[index] / RATE - time.monotonic()))

    talking = [asyncio.create_task(talk(i)) for i in range(SENDERS)]
    await asyncio.sleep(BEFORE_KILL)
    kill(victim)
    killed_at = time.monotonic()
    sent_at_kill = list(sent)
    back_after = None

    async def watch() -> None:
        # When reader 0 first gets a message sent after the kill: the room is back.
        nonlocal back_after
        while back_after is None:
            if any(seq >= sent_at_kill[i] for i in range(SENDERS) for seq in counted(readers[0], room, f"s{i}")):
                back_after = round(time.monotonic() - killed_at, 2)
            await asyncio.sleep(0.05)

    watching = asyncio.create_task(watch())
    await asyncio.sleep(AFTER_KILL)
    stop.set()
    await asyncio.gather(*talking)

    def complete() -> bool:
        return all(len(counted(reader, room, f"s{i}")) >= sent[i] for reader in readers for i in range(SENDERS))

    deadline = time.monotonic() + 60
    while not complete() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    for client in senders:
        errors += [to_str(e) for e in client.inbox.find(lambda e: e.tag == "{jabber:client}message" and e.get("type") == "error")]
    watching.cancel()

    # A newcomer sees every occupant: the restored ones were not lost.
    [newcomer_acc] = [accounts[SENDERS + 2]]
    newcomer = await env.online(newcomer_acc, ep=edges[1])
    own = await join(newcomer, room, "newcomer")
    present = {e.get("from").split("/", 1)[1] for e in newcomer.inbox.find(is_presence()) if (e.get("from") or "").startswith(room + "/")}
    info = await newcomer.iq(f"<query xmlns='{M['info']}'/>", "get", to=room)
    archived = await newcomer.iq("<query xmlns='urn:xmpp:mam:2' queryid='all'><set xmlns='http://jabber.org/protocol/rsm'><max>1000</max></set></query>", "set", to=room)
    archive = [r.findtext(".//c:body", namespaces=NS) or "" for r in newcomer.inbox.find(lambda e: e.find("{urn:xmpp:mam:2}result[@queryid='all']", NS) is not None)]
    report = {
        "victim": victim_role,
        "sent": sent,
        "received": {f"r{n}": {f"s{i}": len(counted(reader, room, f"s{i}")) for i in range(SENDERS)} for n, reader in enumerate(readers)},
        "lost": {f"r{n}/s{i}": sorted(set(range(sent[i])) - set(counted(reader, room, f"s{i}")))[:20] for n, reader in enumerate(readers) for i in range(SENDERS)},
        "repeated": {f"r{n}/s{i}": repeated(counted(reader, room, f"s{i}"))[:10] for n, reader in enumerate(readers) for i in range(SENDERS)},
        "errors": errors[:5],
        "archived": len(archive),
        "archived_twice": sorted({body for body in archive if archive.count(body) > 1})[:10],
        "occupants_seen_by_newcomer": sorted(present),
        "replays_recognised": {name: metric(survivor, f"starling_replayed_{name}_total")
                               for name in ("deliveries_dropped", "archive_entries_skipped", "offline_messages_skipped")},
        "back_after_seconds": back_after,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("STARLING_MUC_FAULT_REPORT"):
        Path(os.environ["STARLING_MUC_FAULT_REPORT"]).write_text(text)
    await env.aclose()
    restart_session_node(cl, victim)
    assert not errors, text
    for n, reader in enumerate(readers):
        for i in range(SENDERS):
            assert counted(reader, room, f"s{i}") == list(range(sent[i])), f"r{n} from s{i} not exactly once in order: {text}"
    assert archived.get("type") == "result" and len(archive) == sum(sent) and not report["archived_twice"], text
    assert {f"s{i}" for i in range(SENDERS)} | {f"r{i}" for i in range(len(readers))} | {"newcomer"} <= set(present), text
    assert info.find("info:query/info:identity", M).get("name") == "Failover", to_str(info)
    assert own.get("type") != "error", to_str(own)


@pytest.mark.deadline(180)
async def test_cluster_pep_survives_the_death_of_the_accounts_owner(muc_cluster):
    from test_xep0163_pep import PLUGINS, P, PUBSUB, announce, event_items, publish, tune, wait_for
    cl = muc_cluster
    victim_name, survivor_name = "session2", "session1"
    [alice_acc] = accounts_owned_by(cl, victim_name, 1)
    [bob_acc] = accounts_owned_by(cl, survivor_name, 1)
    env = Env(Target("starling", cl.nodes["edge1"].endpoint, []))
    alice = await env.online(alice_acc, plugins=PLUGINS)
    bob = await env.online(bob_acc, ep=cl.nodes["edge2"].endpoint, plugins=PLUGINS)
    await env.subscribe_mutually(alice, bob)
    await announce(bob, "http://jabber.org/protocol/tune")
    await asyncio.sleep(1.0)
    assert (await alice.iq(publish("http://jabber.org/protocol/tune", "t1", tune("Before")), "set")).get("type") == "result"
    await wait_for(lambda: event_items(bob, "http://jabber.org/protocol/tune"), "notification before the kill")
    kill(cl.nodes[victim_name])
    try:
        await asyncio.sleep(10.0)  # past the takeover (Kafka's session timeout is 6 s here)
        bare = alice.jid.split("/")[0]
        items = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='http://jabber.org/protocol/tune'/></pubsub>", "get", bare, timeout=20)
        assert [i.get("id") for i in items.findall("ps:pubsub/ps:items/ps:item", P)] == ["t1"], to_str(items)
        await asyncio.sleep(1.0)  # the probe's answer: bob's caps heard again
        result = await alice.iq(publish("http://jabber.org/protocol/tune", "t2", tune("After")), "set", timeout=20)
        assert result.get("type") == "result", to_str(result)
        await wait_for(lambda: any(m.find(".//{http://jabber.org/protocol/pubsub#event}item[@id='t2']") is not None
                                   for m in event_items(bob, "http://jabber.org/protocol/tune")), "notification after the takeover", timeout=20)
    finally:
        await env.aclose()
        restart_session_node(cl, cl.nodes[victim_name])


def pubsub_node_owned_by(cl: Cluster, node: str, domain: str) -> str:
    """A fresh PubSub node id whose shard (`{FNV-1a of the id:016x}@pubsub.DOMAIN`) the session
    node `node` owns."""
    while True:
        name = f"node-{uuid.uuid4().hex[:8]}"
        h = 0xcbf29ce484222325
        for byte in name.encode():
            h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        if cl.owner[partition_of(f"{h:016x}@pubsub.{domain}")] == node:
            return name


@pytest.mark.deadline(180)
async def test_cluster_pubsub_service_node_survives_the_death_of_its_owner(muc_cluster):
    """A node of the PubSub service lives on the session node owning its shard's partition:
    requests from both edges reach it, and when that node is killed the survivor serves the
    stored items and the subscriptions, and notifications go on."""
    from test_xep0060_pubsub import PLUGINS, create, entry, published_ids, wait_for
    cl = muc_cluster
    victim_name, survivor_name = "session2", "session1"
    alice_acc, bob_acc = accounts_owned_by(cl, survivor_name, 2)
    env = Env(Target("starling", cl.nodes["edge1"].endpoint, []))
    alice = await env.online(alice_acc, plugins=PLUGINS)
    bob = await env.online(bob_acc, ep=cl.nodes["edge2"].endpoint, plugins=PLUGINS)
    service = f"pubsub.{cl.nodes['edge1'].domain}"
    node = pubsub_node_owned_by(cl, victim_name, cl.nodes["edge1"].domain)
    await create(alice, node)
    await bob.x.plugin["xep_0060"].subscribe(service, node)
    await alice.x.plugin["xep_0060"].publish(service, node, id="before", payload=entry("Before"))
    await wait_for(lambda: published_ids(bob, node) == ["before"], "notification before the kill")
    kill(cl.nodes[victim_name])
    try:
        await asyncio.sleep(10.0)  # past the takeover (Kafka's session timeout is 6 s here)
        items = await bob.x.plugin["xep_0060"].get_items(service, node, timeout=20)
        assert [i["id"] for i in items["pubsub"]["items"]] == ["before"], items
        await alice.x.plugin["xep_0060"].publish(service, node, id="after", payload=entry("After"), timeout=20)
        await wait_for(lambda: published_ids(bob, node) == ["before", "after"], "notification after the takeover", timeout=20)
    finally:
        await env.aclose()
        restart_session_node(cl, cl.nodes[victim_name])


@pytest.mark.deadline(120)
async def test_cluster_pep_notifications_are_one_bus_record_per_edge(muc_cluster):
    """A PEP publish to four contacts' resources on two edges leaves the publisher's node as one
    record per edge (the edges write it to each connection), not one per contact through each
    contact's owner."""
    from test_xep0163_pep import PLUGINS, announce, event_items, publish, tune, wait_for
    cl = muc_cluster
    [alice_acc] = accounts_owned_by(cl, "session1", 1)
    contacts_acc = accounts_owned_by(cl, "session2", 4)
    edges = [cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint]
    env = Env(Target("starling", edges[0], []))
    try:
        alice = await env.online(alice_acc, plugins=PLUGINS)
        contacts = [await env.online(acc, ep=edges[i % 2], plugins=PLUGINS) for i, acc in enumerate(contacts_acc)]
        for contact in contacts:
            await env.subscribe_mutually(alice, contact)
            await announce(contact, "http://jabber.org/protocol/tune")
        await asyncio.sleep(1.0)  # caps heard
        node = cl.nodes["session1"]
        # The first publish reads the contacts' routes; the second shows the steady state.
        for title in ("first", "second"):
            records, deliveries = metric(node, "starling_fan_out_records_total"), metric(node, "starling_fan_out_deliveries_total")
            assert (await alice.iq(publish("http://jabber.org/protocol/tune", title, tune(title)), "set")).get("type") == "result"
            for contact in contacts:
                await wait_for(lambda: any(m.find(f".//{{http://jabber.org/protocol/pubsub#event}}item[@id='{title}']") is not None
                                           for m in event_items(contact, "http://jabber.org/protocol/tune")), f"{contact.jid} missed {title}")
            assert metric(node, "starling_fan_out_records_total") - records == 2, "one record per edge"
            assert metric(node, "starling_fan_out_deliveries_total") - deliveries == 4, "the four contacts"
    finally:
        await env.aclose()


@pytest.mark.deadline(120)
async def test_cluster_pubsub_service_notifications_are_one_bus_record_per_edge(muc_cluster):
    """A publish to a service node with four subscribers (bare JIDs) on two edges leaves the
    shard's session node as one record per edge, written there to each subscriber's resource;
    a subscriber with stream management is still reached, through its owner."""
    from test_xep0060_pubsub import PLUGINS, create, entry, published_ids, wait_for
    cl = muc_cluster
    shard_node = "session1"
    publisher_acc, *subscribers_acc = accounts_owned_by(cl, "session2", 6)
    edges = [cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint]
    env = Env(Target("starling", edges[0], []))
    try:
        publisher = await env.online(publisher_acc, plugins=PLUGINS)
        service = f"pubsub.{cl.nodes['edge1'].domain}"
        node = pubsub_node_owned_by(cl, shard_node, cl.nodes["edge1"].domain)
        await create(publisher, node)
        plain = [await env.online(acc, ep=edges[i % 2], plugins=PLUGINS) for i, acc in enumerate(subscribers_acc[:4])]
        managed = await env.online(subscribers_acc[4], ep=edges[1], plugins=PLUGINS + ["xep_0198"])
        await wait_for(lambda: managed.x.plugin["xep_0198"].sm_id, "stream management enabled")
        for subscriber in plain + [managed]:
            await subscriber.x.plugin["xep_0060"].subscribe(service, node)
        session = cl.nodes[shard_node]
        records, deliveries = metric(session, "starling_fan_out_records_total"), metric(session, "starling_fan_out_deliveries_total")
        await publisher.x.plugin["xep_0060"].publish(service, node, id="one", payload=entry("One"))
        for subscriber in plain + [managed]:
            await wait_for(lambda: published_ids(subscriber, node) == ["one"], f"{subscriber.jid} missed the notification")
        assert metric(session, "starling_fan_out_records_total") - records == 2, "one record per edge"
        assert metric(session, "starling_fan_out_deliveries_total") - deliveries == 4, "the four plain subscribers"
    finally:
        await env.aclose()
