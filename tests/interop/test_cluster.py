"""Issue 3: Starling as a cluster — two session nodes and two edge nodes, each its own process,
sharing the CQL store and Kafka. Users are picked so that the two sides of each exchange are owned
by different session nodes (from the nodes' own "partitions assigned" log lines and the same
FNV-1a partition function) and connected to different edges. Runs in the Cassandra pass of
scripts/test (which also starts Kafka); skipped, with the reason printed, on the embedded pass."""

import asyncio
import os
import re
import time

import pytest

from harness import Account, Env, NS, StarlingServer, Target, is_message, is_presence, is_roster_push, to_str
from test_xep0313_mam import query

PARTITIONS = 8
SENDERS, EACH = 6, 900  # messages in a row to one client: past its owner's flow-control window (4,096)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def partition_of(bare: str, partitions: int = PARTITIONS) -> int:
    """The server's partition function: FNV-1a 64 of the bare JID's bytes, modulo."""
    h = 0xcbf29ce484222325
    for byte in bare.encode():
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % partitions


def owned(server: StarlingServer, since: int | None = None) -> set[int]:
    """Partitions a session node holds now, replayed from its log from byte `since` (by default
    where its current process began: one that was killed or left logged no revocation)."""
    since = server.log_start if since is None else since
    held: set[int] = set()
    for line in ANSI.sub("", server.log_since(since)).splitlines():
        # Text lines (`partitions=[1, 2]`) or JSON ones (`"partitions":"[1, 2]"`, either order).
        moved = re.search(r"owner partitions (assigned|revoked)\b", line)
        listed = re.search(r'partitions"?[=:]"?\[([0-9, ]*)\]', line)
        if moved and listed:
            parts = {int(p) for p in listed.group(1).split(",") if p.strip()}
            held = held | parts if moved.group(1) == "assigned" else held - parts
    return held


def start_cluster(workdir, name: str, accounts_prefix: str, accounts: int = 200, node_ttl: int = 10,
                  component_secrets: dict[str, str] | None = None, sections: str = "",
                  log_filters: dict[str, str] | None = None, managed: bool = False, session_timeout_ms: int = 6000) -> dict:
    """Two session nodes and two edges on the CQL store, Kafka and Redis, under a fresh prefix;
    returns them by name once both session nodes hold partitions and together hold all. With
    `component_secrets`, every node knows those component domains and each edge listens for
    components on a port of its own (`server.component_port`). In-band registration is on. Every
    node has XEP-0363 upload on
    the S3 store with one signing key; each edge serves files on an HTTP port of its own
    (`server.http_port`). `sections` is added to every node's configuration; `log_filters` sets
    RUST_LOG per role. `managed` reaches the services as managed ones are reached: Kafka over its
    SASL/PLAIN listener, Redis as an ACL user, CQL over TLS, every password from a file."""
    from conftest import MODE, PASSWORD, STORE_SECTION, _binary, _servers
    if MODE != "starling" or not STORE_SECTION:
        pytest.skip("the cluster test needs the CQL store and Kafka (STARLING_TEST_STORE=scylla)")
    brokers = os.environ.get("KAFKA_BROKERS", "127.0.0.1:19092")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:26379/")
    prefix = f"{name}{os.getpid()}x{int(time.time())}"

    store, logins = STORE_SECTION, ""
    if managed:
        # scripts/infra/{kafka,redis,cassandra}'s logins.
        secrets = workdir / f"{name}-secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / "kafka").write_text("starling-kafka-secret\n")
        (secrets / "redis").write_text("starling-redis-secret\n")
        brokers = os.environ.get("KAFKA_SASL_BROKERS", "127.0.0.1:19094")
        redis = redis.replace("redis://", "redis://starling@", 1)
        ca = os.environ.get("CASSANDRA_TLS_CA", "/var/cache/starling/state/cassandra/tls/ca.crt")
        store += f'scylla_tls_ca_file = "{ca}"\nscylla_local_datacenter = "datacenter1"\n'
        logins = (f'kafka_password_file = "{secrets / "kafka"}"\nredis_password_file = "{secrets / "redis"}"\n'
                  '[cluster.kafka_settings]\n"security.protocol" = "SASL_PLAINTEXT"\n"sasl.mechanisms" = "PLAIN"\n'
                  '"sasl.username" = "starling"\n')

    def section(role):
        return (f"\n[cluster]\nrole = \"{role}\"\nnode_id = \"{role}-{{}}\"\nkafka_brokers = \"{brokers}\"\n"
                f"kafka_prefix = \"{prefix}\"\npartitions = {PARTITIONS}\nreplication = 1\nsession_timeout_ms = {session_timeout_ms}\n"
                f"redis_url = \"{redis}\"\nnode_ttl_seconds = {node_ttl}\n" + logins)

    from harness import free_port
    key_file = workdir / f"{name}-upload.key"
    key_file.write_bytes(os.urandom(32))
    s3 = {key: os.environ.get(f"S3_{key.upper()}", default) for key, default in (
        ("endpoint", "http://127.0.0.1:27070"), ("bucket", "starling-test"), ("access_key_id", "starling"),
        ("secret_access_key", "starling-test-secret"))}
    nodes = {}
    for node in ("session1", "session2", "edge1", "edge2"):
        role = node.rstrip("12")
        http_port = free_port() if role == "edge" else None
        upload = (f'[upload]\nenabled = true\nkey_file = "{key_file}"\nstore = "s3"\n'
                  + (f'public_url = "http://127.0.0.1:{http_port}"\n' if http_port else "")
                  + "[upload.s3]\n" + "".join(f'{key} = "{value}"\n' for key, value in s3.items())
                  + (f'[websocket]\nlisten = ["127.0.0.1:{http_port}"]\n' if http_port else ""))
        components, component_port = "", None
        if component_secrets:
            component_port = free_port() if role == "edge" else None
            listen = f'"127.0.0.1:{component_port}"' if component_port else ""
            secrets = ", ".join(f'"{domain}" = "{secret}"' for domain, secret in component_secrets.items())
            components = f"[components]\nlisten = [{listen}]\nsecrets = {{ {secrets} }}\n"
        extra = {"store": store + section(role).replace("{}", node[-1]), "sections": components + upload + sections}
        server = StarlingServer(_binary(), workdir / f"{name}-{node}", extra=extra, name=node, registration=True,
                                log_filter=(log_filters or {}).get(role))
        server.component_port, server.http_port = component_port, http_port
        _servers.append(server)
        nodes[node] = server
    nodes["session1"].cli("user", "add-bulk", "--prefix", accounts_prefix, "--count", str(accounts), "--password", PASSWORD)
    try:
        for server in nodes.values():
            server.start()
        wait_for_split(nodes["session1"], nodes["session2"])
    except BaseException:
        # A cluster that did not come up is not watched by every later test's liveness check.
        stop_cluster(nodes)
        raise
    return nodes


def stop_cluster(nodes: dict) -> None:
    """Stops every node, which later tests' liveness checks then no longer watch."""
    from conftest import _servers
    for server in nodes.values():
        server.stop()
        if server in _servers:
            _servers.remove(server)


def wait_for_split(a: StarlingServer, b: StarlingServer, since_a: int | None = None, since_b: int | None = None, timeout: float = 90) -> None:
    """Until both session nodes hold partitions, none twice, all of them between the two."""
    deadline = time.monotonic() + timeout
    while True:
        x, y = owned(a, since_a), owned(b, since_b)
        if x and y and not (x & y) and len(x | y) == PARTITIONS:
            return
        assert time.monotonic() < deadline, f"no stable split of the partitions: {x} / {y}"
        time.sleep(0.2)


class Cluster:
    def __init__(self, nodes, pool):
        self.nodes = nodes
        self.pool = pool
        self.used = set()
        first = owned(nodes["session1"])
        self.owner = {p: ("session1" if p in first else "session2") for p in range(PARTITIONS)}

    def pair(self):
        """Two unused accounts owned by different session nodes."""
        free = [acc for acc in self.pool if acc.localpart not in self.used]
        for x in free:
            for y in free:
                if self.owner[partition_of(x.jid)] != self.owner[partition_of(y.jid)]:
                    self.used |= {x.localpart, y.localpart}
                    return x, y
        raise RuntimeError("no cross-node pair left")


async def test_cluster_message_across_edges_and_owners(cl, env1):
    alice_acc, bob_acc = cl.pair()
    edge2 = cl.nodes["edge2"].endpoint
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=edge2)
    # `starling where` reads the registry: the session node serving alice, her resource's edge.
    where = cl.nodes["session1"].cli("where", alice_acc.jid).stdout
    owner_node = cl.owner[partition_of(alice_acc.jid)].replace("session", "session-")
    assert f"served by session node {owner_node}" in where, where
    assert f"/{alice.jid.split('/', 1)[1]} on edge edge-1" in where and "available" in where, where
    alice.message(bob.jid, "hello across the cluster")
    got = await bob.inbox.wait(is_message(body="hello across the cluster"))
    assert got.get("from") == alice.jid, to_str(got)
    bob.message(alice.jid, "and back")
    await alice.inbox.wait(is_message(body="and back"))
    # In order, many of them: more than the window (4,096) bob's owner sends ahead of what his edge
    # wrote to him, so the edge's drain reports must come back for the rest to go (else the owner
    # waits 10 s for a client that reads nothing, and says so). Several senders: one user may send
    # at most `[sessions] message_burst` (1,000) at once.
    senders = [alice] + [await env1.online(cl.pair()[0]) for _ in range(SENDERS - 1)]
    logged = {name: cl.nodes[name].log_size() for name in ("session1", "session2")}
    for i in range(EACH):
        for k, sender in enumerate(senders):
            sender.message(bob_acc.jid, f"n{k}:{i}")
    for k in range(SENDERS):
        await bob.inbox.wait(is_message(body=f"n{k}:{EACH - 1}"), timeout=120)
    bodies = [m.findtext("c:body", namespaces=NS) or "" for m in bob.inbox.find(is_message())]
    for k in range(SENDERS):
        from_k = [b for b in bodies if b.startswith(f"n{k}:")]
        assert from_k == [f"n{k}:{i}" for i in range(EACH)], from_k[:20]
    for name, since in logged.items():
        assert "read nothing for a while" not in cl.nodes[name].log_since(since), f"{name} stopped waiting for bob's drain reports"


async def test_cluster_subscription_and_presence_across_owners(cl, env1):
    alice_acc, bob_acc = cl.pair()
    edge2 = cl.nodes["edge2"].endpoint
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=edge2)
    await alice.get_roster()
    await bob.get_roster()
    alice.presence(to=bob_acc.jid, type_="subscribe")
    await bob.inbox.wait(is_presence(from_bare=alice_acc.jid, type_="subscribe"))
    bob.presence(to=alice_acc.jid, type_="subscribed")
    await alice.inbox.wait(is_roster_push(jid=bob_acc.jid, subscription="to"))
    # Bob's available presence reaches alice, on the other owner and edge.
    await alice.inbox.wait(is_presence(from_bare=bob_acc.jid))
    bob.presence(status="busy")
    got = await alice.inbox.wait(lambda e: e.tag.endswith("presence") and e.findtext("c:status", namespaces=NS) == "busy")
    assert got.get("from") == bob.jid, to_str(got)


async def test_cluster_offline_then_archive_across_owners(cl, env1):
    alice_acc, carol_acc = cl.pair()
    edge2 = cl.nodes["edge2"].endpoint
    alice = await env1.client(alice_acc)
    alice.message(carol_acc.jid, "while you were out")
    await alice.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env1.domain)
    await asyncio.sleep(0.5)  # the message crosses the bus to carol's owner
    carol = await env1.online(carol_acc, ep=edge2)
    got = await carol.inbox.wait(is_message(body="while you were out"))
    assert got.find("delay:delay", NS) is not None, to_str(got)
    page = await query(carol)
    assert page.bodies == ["while you were out"], to_str(page.iq)


async def test_cluster_carbons_across_edges_and_owners(cl, env1):
    """XEP-0280 across the cluster: alice has a resource on each edge, bob is owned by the other
    session node; a chat message to alice's bare JID reaches her top-priority resource and a
    <received/> carbon reaches the other one, and what she sends is copied as <sent/>."""
    alice_acc, bob_acc = cl.pair()
    edge2 = cl.nodes["edge2"].endpoint
    phone = await env1.online(alice_acc, "phone", priority=5)
    laptop = await env1.online(alice_acc, "laptop", priority=1, ep=edge2)
    for resource in (phone, laptop):
        await resource.iq_ok("<enable xmlns='urn:xmpp:carbons:2'/>", "set")
    bob = await env1.online(bob_acc, ep=edge2)
    bob.message(alice_acc.jid, "to your bare JID")
    await phone.inbox.wait(is_message(body="to your bare JID"))
    carbon = await laptop.inbox.wait(lambda e: e.find("{urn:xmpp:carbons:2}received") is not None)
    assert carbon.findtext("{urn:xmpp:carbons:2}received/{urn:xmpp:forward:0}forwarded/{jabber:client}message/{jabber:client}body") == "to your bare JID", to_str(carbon)
    phone.message(bob.jid, "from my phone")
    await bob.inbox.wait(is_message(body="from my phone"))
    sent = await laptop.inbox.wait(lambda e: e.find("{urn:xmpp:carbons:2}sent") is not None)
    assert sent.findtext("{urn:xmpp:carbons:2}sent/{urn:xmpp:forward:0}forwarded/{jabber:client}message/{jabber:client}body") == "from my phone", to_str(sent)


async def test_cluster_blocking_across_owners(cl, env1):
    """XEP-0191 across the cluster: bob blocks alice (owned by the other node); her message is not
    delivered and she gets the error from bob's owner."""
    alice_acc, bob_acc = cl.pair()
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=cl.nodes["edge2"].endpoint)
    await bob.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{alice_acc.jid}'/></block>", "set")
    alice.send(f"<message to='{bob.jid}' type='chat' id='blocked1'><body>let me in</body></message>")
    error = await alice.inbox.wait(lambda e: e.get("id") == "blocked1" and e.get("type") == "error")
    assert error.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None, to_str(error)
    alice.message(bob_acc.jid, "marker after block")
    await asyncio.sleep(1)
    assert not bob.inbox.find(is_message(body="let me in")), "a blocked contact's message was delivered"

async def test_cluster_iq_between_clients_across_owners(cl, env1):
    """RFC 6120 §8.2.3 across the cluster: an IQ to another user's full JID reaches that client
    through both owners and both edges, its answer comes back the same way, and an IQ to a
    resource that is not bound is answered by the recipient's owner with service-unavailable
    (RFC 6121 §8.5.3.2.1)."""
    alice_acc, bob_acc = cl.pair()
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=cl.nodes["edge2"].endpoint)
    bob.x.register_plugin("xep_0092")  # slixmpp answers XEP-0092 version queries itself
    alice.send(f"<iq type='get' to='{bob.jid}' id='v1'><query xmlns='jabber:iq:version'/></iq>")
    request = await bob.inbox.wait(lambda e: e.tag == "{jabber:client}iq" and e.get("id") == "v1")
    assert request.get("from") == alice.jid, to_str(request)
    answer = await alice.inbox.wait(lambda e: e.tag == "{jabber:client}iq" and e.get("id") == "v1")
    assert answer.get("type") == "result" and answer.get("from") == bob.jid, to_str(answer)
    assert answer.findtext("{jabber:iq:version}query/{jabber:iq:version}name") == "Slixmpp", to_str(answer)
    alice.send(f"<iq type='get' to='{bob_acc.jid}/nobody' id='v2'><query xmlns='jabber:iq:version'/></iq>")
    error = await alice.inbox.wait(lambda e: e.tag == "{jabber:client}iq" and e.get("id") == "v2")
    assert error.get("type") == "error", to_str(error)
    assert error.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None, to_str(error)


async def test_cluster_muc_room_on_one_owner_occupants_on_both_edges(cl, env1):
    """A room lives on the session node owning its JID's partition; its occupants are users of
    both session nodes on both edges: presence, groupchat in order, kick and the room archive
    all cross the bus."""
    from test_xep0045_muc import MUC_OWNER, create_instant_room, join, statuses
    alice_acc, bob_acc = cl.pair()
    edge2 = cl.nodes["edge2"].endpoint
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=edge2)
    room = await create_instant_room(alice)
    await alice.iq_ok(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
                      "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>", "set", room)
    own = await join(bob, room, "bob")
    assert 110 in statuses(own), to_str(own)
    await alice.inbox.wait(is_presence(frm=f"{room}/bob"))
    # Fewer than an occupant's burst ([muc] occupant_burst, 20).
    for i in range(15):
        bob.send(f"<message to='{room}' type='groupchat'><body>g{i}</body></message>")
    await alice.inbox.wait(is_message(frm=f"{room}/bob", body="g14", type_="groupchat"))
    bodies = [m.findtext("c:body", namespaces=NS) for m in alice.inbox.find(is_message(frm=f"{room}/bob", type_="groupchat"))]
    assert bodies == [f"g{i}" for i in range(15)], bodies
    archived = await bob.iq("<query xmlns='urn:xmpp:mam:2' queryid='cq'><set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set></query>", "set", to=room)
    assert archived.get("type") == "result", to_str(archived)
    results = bob.inbox.find(lambda e: e.find("{urn:xmpp:mam:2}result[@queryid='cq']", NS) is not None)
    assert len(results) == 15, len(results)
    await alice.iq_ok("<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'/></query>", "set", room)
    kicked = await bob.inbox.wait(is_presence(frm=f"{room}/bob", type_="unavailable"))
    assert 307 in statuses(kicked), to_str(kicked)


async def test_cluster_admin_api_reaches_users_through_any_node(cl, env1):
    """The admin API of an edge sends the server's orders and messages to the user's owner over
    the bus; the session nodes list the sessions of their partitions, an edge says to ask them."""
    from test_admin_api import call
    alice_acc, _ = cl.pair()
    alice = await env1.online(alice_acc, ep=cl.nodes["edge2"].endpoint)
    edge1 = cl.nodes["edge1"]
    status, body, _ = call(edge1, "GET", "/api/v1/sessions")
    assert status == 421 and "session" in body["error"], body
    listed = set()
    for name in ("session1", "session2"):
        status, body, _ = call(cl.nodes[name], "GET", "/api/v1/sessions")
        assert status == 200, body
        listed |= {(entry["jid"], entry["edge"]) for entry in body["sessions"]}
    assert (alice.jid, "edge-2") in listed, listed
    assert call(edge1, "POST", "/api/v1/messages", {"to": alice_acc.jid, "body": "from the operators"})[0] == 202
    await alice.inbox.wait(is_message(frm=edge1.domain, body="from the operators"))
    assert call(edge1, "DELETE", f"/api/v1/users/{alice_acc.localpart}/sessions")[0] == 202
    await asyncio.wait_for(alice.disconnected.wait(), 15)
    assert alice.stream_errors == ["policy-violation"], alice.stream_errors


def test_check_config_connect_refuses_a_partition_count_other_than_the_topics(cl):
    """`starling check-config --connect` reaches Kafka and Redis as the node would; a node
    configured with another partition count than the cluster's owners topic is refused."""
    import subprocess
    node = cl.nodes["session1"]
    assert "Kafka and Redis reached" in node.cli("check-config", "--connect").stdout
    env = node.env() | {"STARLING__CLUSTER__PARTITIONS": str(PARTITIONS + 1), "RUST_BACKTRACE": "0"}
    refused = subprocess.run([node.binary, "--config", str(node.config), "check-config", "--connect"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0, refused.stdout
    assert f"has {PARTITIONS} partitions but [cluster] partitions = {PARTITIONS + 1}" in refused.stderr, refused.stderr


async def test_cluster_zz_failover_when_an_owner_dies(cl, env1):
    """kill -9 of a session node: the group gives its partitions to the survivor after the session
    timeout, and the survivor restores the users' bound resources from the routes the dead node
    recorded in Redis — the clients, still connected to their edges, keep talking. (Runs last:
    the cluster has one session node afterwards.)"""
    from conftest import _servers
    alice_acc, bob_acc = cl.pair()
    victim_name = cl.owner[partition_of(alice_acc.jid)]
    survivor = cl.nodes["session2" if victim_name == "session1" else "session1"]
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=cl.nodes["edge2"].endpoint)
    await env1.subscribe_mutually(alice, bob)
    alice.presence(status="on the move", show="away", priority=3)
    await bob.inbox.wait(lambda e: e.tag.endswith("presence") and e.findtext("c:status", namespaces=NS) == "on the move")
    alice.message(bob.jid, "before the failover")
    await bob.inbox.wait(is_message(body="before the failover"))

    victim = cl.nodes[victim_name]
    _servers.remove(victim)  # its death is the point of this test
    victim.proc.kill()
    victim.proc.wait()
    deadline = time.monotonic() + 60
    while len(owned(survivor)) < PARTITIONS:
        assert time.monotonic() < deadline, f"the survivor never took over: {owned(survivor)}"
        await asyncio.sleep(0.2)

    bob.message(alice.jid, "after the failover")
    await alice.inbox.wait(is_message(body="after the failover"), timeout=30)
    alice.message(bob.jid, "still here")
    await bob.inbox.wait(is_message(body="still here"), timeout=30)
    # Alice's presence moved with her: a new resource of bob's probes her (RFC 6121 §4.3) and her
    # new owner answers with the stanza she broadcast, status and all.
    bob2 = await env1.online(bob_acc, "second", ep=cl.nodes["edge1"].endpoint)
    probed = await bob2.inbox.wait(lambda e: e.tag.endswith("presence") and e.get("from") == alice.jid, timeout=30)
    assert probed.findtext("c:status", namespaces=NS) == "on the move", to_str(probed)
    assert probed.findtext("c:show", namespaces=NS) == "away", to_str(probed)


async def test_cluster_auth_failures_count_across_edges(cl, env1):
    """Authentication failures are the cluster's (Redis), not one edge's: guesses for one account
    from one address spread over both edges are throttled on both, and the account's owner from
    another address, or another account from the same address, still log in."""
    from harness import fresh_source_ip, tag
    victim, other = cl.pair()
    ip = fresh_source_ip()
    edges = [cl.nodes["edge1"].endpoint, cl.nodes["edge2"].endpoint]

    async def attempt(ep, account, password):
        raw = await env1.raw(source_ip=ip, ep=ep)
        await raw.open_stream()
        await raw.starttls()
        answer = await raw.auth_plain(account.localpart, password)
        await raw.close()
        return answer

    # Five failures (the default [c2s] auth_throttle_failures), alternating edges, one per connection.
    for n in range(5):
        answer = await attempt(edges[n % 2], victim, "wrong-password")
        assert answer.tag == tag("sasl", "failure") and answer.find("sasl:not-authorized", NS) is not None, to_str(answer)
    for ep in edges:
        answer = await attempt(ep, victim, victim.password)
        assert answer.find("sasl:temporary-auth-failure", NS) is not None, f"not throttled on {ep}: {to_str(answer)}"
    answer = await attempt(edges[1], other, other.password)
    assert answer.tag == tag("sasl", "success"), to_str(answer)
    client = await env1.client(victim)
    assert client.x.boundjid.bare == victim.jid


async def test_cluster_upload_slot_from_one_edge_file_through_the_other(cl, env1):
    """XEP-0363 in a cluster: the slot comes from the edge the user is connected to, the PUT goes
    to the other edge (as through a load balancer), the GET to the first; all on one S3 bucket and
    one signing key, nothing else shared."""
    from test_xep0363_upload import call, slot
    alice_acc, _ = cl.pair()
    alice = await env1.client(alice_acc)
    items = await alice.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to=alice_acc.domain)
    assert f"upload.{alice_acc.domain}" in {item.get("jid") for item in items.iter("{http://jabber.org/protocol/disco#items}item")}
    put, get = await slot(alice, "across.txt", 12)
    edge1, edge2 = (f"127.0.0.1:{cl.nodes[edge].http_port}" for edge in ("edge1", "edge2"))
    assert edge1 in put and edge1 in get
    assert (await call("PUT", put.replace(edge1, edge2), b"both edges!!", {"Content-Type": "text/plain"}))[0] == 201
    status, _, body = await call("GET", get)
    assert (status, body) == (200, b"both edges!!")
    await alice.close()


async def test_cluster_registrations_per_address_count_across_edges(cl, env1):
    """XEP-0077's per-address limit is the cluster's (Redis): an address that registered through
    one edge cannot register again at once through the other."""
    from harness import fresh_source_ip, new_id, stanza_error
    from test_xep0077_registration import _register
    ip = fresh_source_ip()
    envs = [Env(Target("starling", cl.nodes[edge].endpoint, [])) for edge in ("edge1", "edge2")]
    first = await _register(envs[0], f"reg{new_id()[:8]}", "Pw-" + new_id(), ip)
    assert first.get("type") == "result", to_str(first)
    second = await _register(envs[1], f"reg{new_id()[:8]}", "Pw-" + new_id(), ip)
    assert stanza_error(second)[1] == "resource-constraint", to_str(second)
