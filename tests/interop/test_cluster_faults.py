"""Issue 3's failure tests: a cluster of two edges and two session nodes on Kafka, Redis and the
CQL store carries a counted stream of messages between slixmpp clients on both edges while, in
turn, a session node is killed (-9) and restarted, an edge is killed (-9) and restarted, Redis is
restarted, and the Kafka broker is restarted.

"Accepted" needs a definition without XEP-0198: a message counts as accepted once the server has
answered a ping the client sent after it on the same stream — the sender's owner handles a
client's stanzas in order, so the answer proves it took every message before it. Every accepted
message must then reach its recipient: live (or as offline storage when it reconnects) or, when
it was on its way to a connection that died with its edge, in the recipient's archive (XEP-0313,
what a client catches up from after a reconnect). The report counts each kind, the duplicates a
replay produced, and the time each fault took to recover from (until every pair had again a
message sent after the fault delivered). Set STARLING_FAULT_REPORT to a path to keep the JSON.

Runs in the Cassandra pass of scripts/test (which started Kafka and Redis); skipped, with the
reason printed, on the embedded pass.

Longer than our usual file: every failure test here shares one cluster (started once, ~30 s), with
a short group session timeout so that takeovers are measured as an operator tuning for them sees."""

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import Account, Client, ConnectFailed, NS, StarlingServer, is_message, is_presence, new_id, tag, to_str
from test_cluster import PARTITIONS, owned, partition_of, start_cluster, stop_cluster, wait_for_split
from test_xep0313_mam import M, MAM, Page, form, rsm

ROOT = Path(__file__).resolve().parents[2]
PAIRS = 4
INTERVAL = 0.05         # seconds between two messages of one sender (20/s each)
PING_EVERY = 5          # messages between two acceptance pings
RECOVERY_BOUND = 60.0   # seconds a fault may take before the test calls it not recovered
NODE_TTL = 3            # seconds without a heartbeat before an edge is dead
SESSION_TIMEOUT_MS = 1500  # the owners' group's session timeout here: takeover after a crash
                           # (the broker's group.min.session.timeout.ms is lowered to allow it)
PAUSE = 6.0             # seconds a session node is frozen (SIGSTOP): well past the session timeout


class Peer:
    """One account that stays connected through whichever edge is up, reconnecting as needed."""

    def __init__(self, env, account: Account, endpoints: list, first: int):
        self.env = env
        self.account = account
        self.endpoints = endpoints
        self.preferred = first
        self.client: Client | None = None
        self.clients: list[Client] = []
        self.reconnects = 0

    def connected(self) -> bool:
        return self.client is not None and not self.client.disconnected.is_set()

    async def ensure(self) -> Client | None:
        if self.connected():
            return self.client
        if self.client is not None:
            # Like a client given several addresses: after a failure, the next one first.
            self.reconnects += 1
            self.client.kill()
            self.preferred = (self.preferred + 1) % len(self.endpoints)
        for attempt in range(len(self.endpoints)):
            ep = self.endpoints[(self.preferred + attempt) % len(self.endpoints)]
            client = Client(self.env, self.account, "stream", mech=None, direct_tls=False, password=None)
            try:
                await client.connect(ep.host, ep.port, 5)
            except (ConnectFailed, OSError):
                client.kill()
                continue
            client.presence()
            self.client = client
            self.clients.append(client)
            self.preferred = (self.preferred + attempt) % len(self.endpoints)
            return client
        self.client = None
        return None

    def bodies(self, tag: str) -> list[int]:
        """Sequence numbers of every `tag:` message this peer's connections received."""
        seqs = []
        for client in self.clients:
            for m in client.inbox.find(is_message()):
                body = m.findtext("c:body", namespaces=NS) or ""
                if body.startswith(tag + ":"):
                    seqs.append(int(body.split(":", 1)[1]))
        return seqs


class Pair:
    def __init__(self, tag: str, sender: Peer, receiver: Peer, interval: float = INTERVAL):
        self.tag = tag
        self.interval = interval
        self.sender = sender
        self.receiver = receiver
        self.sent_at: dict[int, float] = {}
        self.accepted: set[int] = set()

    async def run(self, stop: asyncio.Event) -> None:
        seq = 0
        while not stop.is_set():
            client = await self.sender.ensure()
            if client is None:
                await asyncio.sleep(0.5)
                continue
            # Sent on this stream and not yet confirmed by an answered ping on it.
            unconfirmed: list[int] = []
            try:
                while not client.disconnected.is_set() and not stop.is_set():
                    for _ in range(PING_EVERY):
                        client.message(self.receiver.account.jid, f"{self.tag}:{seq}")
                        self.sent_at[seq] = time.monotonic()
                        unconfirmed.append(seq)
                        seq += 1
                        await asyncio.sleep(self.interval)
                    try:
                        answer = await client.iq("<ping xmlns='urn:xmpp:ping'/>", to=client.env.domain, timeout=5)
                    except AssertionError:
                        continue  # unanswered for now: a later answer on this stream confirms these too
                    if answer.get("type") == "result":
                        self.accepted.update(unconfirmed)
                        unconfirmed.clear()
            except Exception:  # the stream broke: what it did not confirm stays unconfirmed
                await asyncio.sleep(0.1)

    def delivered_since(self, t0: float) -> bool:
        return any(self.sent_at.get(seq, 0) >= t0 for seq in self.receiver.bodies(self.tag))


async def keep_connected(peers: list[Peer], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for peer in peers:
            await peer.ensure()
        await asyncio.sleep(0.2)


async def recovered(pairs: list[Pair], t0: float, what: str) -> float:
    """Seconds from t0 until every pair delivered a message sent after t0."""
    while not all(pair.delivered_since(t0) for pair in pairs):
        stuck = [f"{p.tag} ({p.sender.account.jid} connected={p.sender.connected()} -> {p.receiver.account.jid} "
                 f"connected={p.receiver.connected()}, last received {max(p.receiver.bodies(p.tag), default=None)}, "
                 f"sent {len(p.sent_at)})" for p in pairs if not p.delivered_since(t0)]
        assert time.monotonic() - t0 < RECOVERY_BOUND, f"{what}: not recovered within {RECOVERY_BOUND}s: {stuck}"
        await asyncio.sleep(0.1)
    return round(time.monotonic() - t0, 2)


def infra(service: str, action: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "infra" / service), action], check=True, capture_output=True, timeout=180)


async def archived(receiver: Peer, sender: Account, label: str) -> set[int]:
    """Sequence numbers of `label` messages from `sender` in the receiver's archive."""
    client = await receiver.ensure()
    assert client is not None, "the receiver cannot connect to read its archive"
    seqs: set[int] = set()
    after = None
    while True:
        # Patient: right after the faults a debug build on a loaded machine can be slow to page.
        qid = new_id()
        answer = await client.iq(f"<query xmlns='{MAM}' queryid='{qid}'>{form(**{'with': sender.jid})}{rsm(max_=250, after=after)}</query>", "set", timeout=60)
        assert answer.get("type") == "result", to_str(answer)
        page = Page(answer, client.inbox.find(lambda e: e.tag == tag("c", "message") and e.find(f"mam:result[@queryid='{qid}']", M) is not None))
        seqs |= {int(b.split(":", 1)[1]) for b in page.bodies if b and b.startswith(label + ":")}
        if page.complete or not page.results:
            return seqs
        after = page.last


async def counted_pairs(nodes: dict, pool: list[Account], label: str):
    """PAIRS sender → receiver pairs, connected, whose two sides are owned by different session
    nodes and start on different edges; with the Env they use."""
    from harness import Env, Target
    owner = {p: ("session1" if p in owned(nodes["session1"]) else "session2") for p in range(PARTITIONS)}
    endpoints = [nodes["edge1"].endpoint, nodes["edge2"].endpoint]
    env = Env(Target("starling", endpoints[0], pool))
    free = list(pool)
    pairs = []
    while len(pairs) < PAIRS:
        a = free.pop(0)
        b = next(x for x in free if owner[partition_of(x.jid)] != owner[partition_of(a.jid)])
        free.remove(b)
        i = len(pairs)
        pairs.append(Pair(f"{label}{i}", Peer(env, a, endpoints, i % 2), Peer(env, b, endpoints, (i + 1) % 2)))
    for pair in pairs:
        assert await pair.receiver.ensure() and await pair.sender.ensure()
        await pair.receiver.client.inbox.wait(is_presence(frm=pair.receiver.client.jid))
    return env, pairs


async def settle(env, pairs: list[Pair], report: dict, keep_as: str) -> None:
    """Waits for what each pair had accepted to arrive live, reads the rest from the archives,
    adds the counts to `report` (printed, and written where the variable `keep_as` says), closes
    the clients, and fails if an accepted message was lost."""
    lost_total = 0
    report["pairs_detail"] = []
    for pair in pairs:
        accepted = pair.accepted
        deadline = time.monotonic() + 30
        while not accepted <= set(pair.receiver.bodies(pair.tag)) and time.monotonic() < deadline:
            await pair.receiver.ensure()
            await asyncio.sleep(0.2)
        received = pair.receiver.bodies(pair.tag)
        live = set(received)
        in_archive = await archived(pair.receiver, pair.sender.account, pair.tag)
        lost = sorted(accepted - live - in_archive)
        lost_total += len(lost)
        report["pairs_detail"].append({
            "pair": pair.tag,
            "sent": len(pair.sent_at),
            "accepted": len(accepted),
            "delivered": len(live & accepted),
            "archive_only": len((accepted - live) & in_archive),
            "in_archive": len(in_archive),
            "duplicates": len(received) - len(live),
            "out_of_order": sum(1 for a, b in zip(received, received[1:]) if b < a),
            # Which, with their neighbours, for the next time this is not 0.
            "out_of_order_at": [received[max(0, i - 2):i + 3] for i in range(1, len(received)) if received[i] < received[i - 1]][:5],
            "unconfirmed_delivered": len(live - accepted),
            "lost": lost[:20],
            "sender_reconnects": pair.sender.reconnects,
            "receiver_reconnects": pair.receiver.reconnects,
        })
    keys = ("sent", "accepted", "delivered", "archive_only", "duplicates", "out_of_order")
    report["totals"] = {**{key: sum(d[key] for d in report["pairs_detail"]) for key in keys}, "lost": lost_total}
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get(keep_as):
        Path(os.environ[keep_as]).write_text(text)
    await env.aclose()
    for pair in pairs:
        for client in pair.sender.clients + pair.receiver.clients:
            client.kill()
    assert lost_total == 0, f"accepted messages lost:\n{text}"
    assert report["totals"]["accepted"] > 0, text


def counted_cluster(workdir, name: str, accounts_prefix: str, session_timeout_ms: int = 6000):
    """A cluster of its own (`name` keeps its directories and Kafka topics apart) with 100
    accounts, for a module's counted-stream tests; stopped after them."""
    from conftest import PASSWORD
    nodes = start_cluster(workdir, name, accounts_prefix, accounts=100, node_ttl=NODE_TTL, session_timeout_ms=session_timeout_ms)
    domain = nodes["edge1"].domain
    yield nodes, [Account(f"{accounts_prefix}{i}", PASSWORD, domain) for i in range(1, 101)]
    stop_cluster(nodes)


@pytest.fixture(scope="module")
def fault_cluster(workdir):
    yield from counted_cluster(workdir, "faults", "fl", session_timeout_ms=SESSION_TIMEOUT_MS)


@pytest.mark.deadline(400)
async def test_cluster_faults_lose_no_accepted_message(fault_cluster):
    from conftest import _servers
    nodes, pool = fault_cluster
    sessions = {name: nodes[name] for name in ("session1", "session2")}
    owner = {p: ("session1" if p in owned(sessions["session1"]) else "session2") for p in range(PARTITIONS)}
    env, pairs = await counted_pairs(nodes, pool, "p")

    stop = asyncio.Event()
    tasks = [asyncio.create_task(pair.run(stop)) for pair in pairs]
    tasks.append(asyncio.create_task(keep_connected([pair.receiver for pair in pairs], stop)))
    report: dict = {"pairs": PAIRS, "rate_per_sender": 1 / INTERVAL, "faults": []}

    async def fault(name: str, act, restore=None) -> None:
        await asyncio.sleep(3)  # steady stream before each fault
        t0 = time.monotonic()
        await asyncio.to_thread(act)
        took = await recovered(pairs, t0, name)
        entry = {"fault": name, "recovered_s": took}
        if restore is not None:
            t1 = time.monotonic()
            await asyncio.to_thread(restore)
            entry["restored_s"] = round(time.monotonic() - t1, 2)
            entry["recovered_after_restore_s"] = await recovered(pairs, time.monotonic(), name + " (restored)")
        report["faults"].append(entry)

    try:
        await fault("steady", lambda: None)

        victim_name = owner[partition_of(pairs[0].receiver.account.jid)]
        victim, survivor = sessions[victim_name], sessions["session2" if victim_name == "session1" else "session1"]

        def restart_edge():
            _servers.append(nodes["edge1"])
            nodes["edge1"].start()

        await fault("kill -9 session node", lambda: kill_now(victim), lambda: restart_now(victim, survivor))
        await fault("kill -9 edge", lambda: kill_now(nodes["edge1"]), restart_edge)
        await fault("restart Redis", lambda: (infra("redis", "stop"), infra("redis", "start")))
        await fault("restart Kafka broker", lambda: (infra("kafka", "stop"), infra("kafka", "start")))
        await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    await settle(env, pairs, report, "STARLING_FAULT_REPORT")
    totals = report["totals"]
    assert totals["duplicates"] == 0 and totals["out_of_order"] == 0, f"delivered twice or out of order: {report}"


@pytest.mark.deadline(300)
async def test_cluster_session_node_paused_past_its_timeout_does_not_deliver_beside_the_new_owner(fault_cluster):
    """A session node frozen (SIGSTOP) for longer than the group's session timeout, then resumed:
    the other takes its partitions over while it is frozen; once resumed it finds it lost them and
    must not deliver what it had read before (no split ownership: one owner delivers). Counted
    streams across both owners: nothing accepted lost, no duplicate, nothing out of order, no
    receiver disconnected (their edges stayed up); the report gives the takeover time."""
    nodes, pool = fault_cluster
    sessions = {name: nodes[name] for name in ("session1", "session2")}
    # Both must be members of the group (the previous test restarted the broker): the frozen
    # node's partitions need someone to go to.
    await asyncio.to_thread(wait_for_split, sessions["session1"], sessions["session2"])
    env, pairs = await counted_pairs(nodes, pool[20:60], "z")
    victim_name = "session1" if partition_of(pairs[0].receiver.account.jid) in owned(sessions["session1"]) else "session2"
    victim = sessions[victim_name]
    survivor = sessions["session2" if victim_name == "session1" else "session1"]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(pair.run(stop)) for pair in pairs]
    tasks.append(asyncio.create_task(keep_connected([pair.receiver for pair in pairs], stop)))
    report: dict = {"pairs": PAIRS, "rate_per_sender": 1 / INTERVAL, "session_timeout_ms": SESSION_TIMEOUT_MS, "paused_s": PAUSE}
    try:
        await asyncio.sleep(3)
        t0 = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGSTOP)
        try:
            report["takeover_s"] = await recovered(pairs, t0, "paused session node")
            await asyncio.sleep(max(0.0, PAUSE - (time.monotonic() - t0)))
        finally:
            os.kill(victim.proc.pid, signal.SIGCONT)
        t1 = time.monotonic()
        # Resumed, it rejoins the group: the partitions split between the two again.
        await asyncio.to_thread(wait_for_split, victim, survivor)
        report["split_again_after_resume_s"] = round(time.monotonic() - t1, 2)
        report["recovered_after_resume_s"] = await recovered(pairs, time.monotonic(), "after the resume")
        await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    report["receiver_reconnects"] = sum(pair.receiver.reconnects for pair in pairs)
    await settle(env, pairs, report, "STARLING_PAUSE_REPORT")
    totals = report["totals"]
    assert totals["duplicates"] == 0 and totals["out_of_order"] == 0, f"delivered twice or out of order: {report}"
    assert report["receiver_reconnects"] == 0, f"a receiver was disconnected: {report}"


@pytest.mark.deadline(240)
async def test_cluster_receiver_at_100_per_second_keeps_its_stream_through_its_owners_death(fault_cluster):
    """Issue 12's first scene: A sends B 100 msg/s, A and B on different edges and owners, and B's
    owner is killed (-9). The survivor takes B over and replays what the dead owner had not
    committed; B stays connected (the replay fits its queue: it is not cut as a slow reader), gets
    every accepted message once and in order."""
    from harness import Env, Target
    nodes, pool = fault_cluster
    owner = {p: ("session1" if p in owned(nodes["session1"]) else "session2") for p in range(PARTITIONS)}
    free = pool[60:90]
    a = free[0]
    b = next(x for x in free[1:] if owner[partition_of(x.jid)] != owner[partition_of(a.jid)])
    endpoints = [nodes["edge1"].endpoint, nodes["edge2"].endpoint]
    env = Env(Target("starling", endpoints[0], pool))
    pair = Pair("h", Peer(env, a, endpoints, 0), Peer(env, b, endpoints, 1), interval=0.01)
    assert await pair.receiver.ensure() and await pair.sender.ensure()
    await pair.receiver.client.inbox.wait(is_presence(frm=pair.receiver.client.jid))
    victim = nodes[owner[partition_of(b.jid)]]
    stop = asyncio.Event()
    task = asyncio.create_task(pair.run(stop))
    report: dict = {"rate": 100, "killed": "B's owner"}
    try:
        await asyncio.sleep(5)
        t0 = time.monotonic()
        await asyncio.to_thread(kill_now, victim)
        report["recovered_s"] = await recovered([pair], t0, "B's owner killed")
        await asyncio.sleep(5)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    report["receiver_reconnects"] = pair.receiver.reconnects
    await settle(env, [pair], report, "STARLING_OWNER_KILL_REPORT")
    # The cluster goes on for the module's next test with both session nodes.
    survivor = nodes["session2" if victim is nodes["session1"] else "session1"]
    await asyncio.to_thread(restart_now, victim, survivor)
    totals = report["totals"]
    assert totals["duplicates"] == 0 and totals["out_of_order"] == 0, f"delivered twice or out of order: {report}"
    assert report["receiver_reconnects"] == 0, f"B was disconnected: {report}"


def kill_now(server: StarlingServer) -> None:
    from conftest import _servers
    _servers.remove(server)
    server.proc.kill()
    server.proc.wait()


def restart_now(server: StarlingServer, survivor: StarlingServer) -> None:
    from conftest import _servers
    _servers.append(server)
    server.start()
    wait_for_split(server, survivor)


def rss_mib(server: StarlingServer) -> float:
    with open(f"/proc/{server.proc.pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024


def messages_in(server: StarlingServer) -> int:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    m = re.search(r'^starling_stanzas_in_total\{kind="message"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


STALL = 8            # seconds the Kafka broker is frozen
FLOOD = 2_000        # messages one client pushes during the stall: 8x the edge's window of 256
                     # unacknowledged records per connection, within what one recipient's link holds


@pytest.mark.deadline(300)
async def test_cluster_kafka_stall_slows_the_sender_instead_of_growing_memory(fault_cluster):
    """A Kafka broker frozen (SIGSTOP) while a client floods: the edge stops reading that client
    once its bounded window of unacknowledged records is full (the client's own socket buffers
    fill), its memory stays flat, and once the broker resumes the service works again; if the
    flood's stream was confirmed (a later ping answered) every message of it is either delivered
    or refused to the sender with an error (the bounded queues behind the bus say
    `resource-constraint` instead of growing) — none vanishes."""
    from harness import Env, Target
    nodes, pool = fault_cluster
    edge1, edge2 = nodes["edge1"], nodes["edge2"]
    env = Env(Target("starling", edge1.endpoint, pool))
    sender_acc, receiver_acc = pool[-1], pool[-2]
    sender = Peer(env, sender_acc, [edge2.endpoint], 0)
    receiver = Peer(env, receiver_acc, [edge1.endpoint], 0)
    s, r = await sender.ensure(), await receiver.ensure()
    await r.inbox.wait(is_presence(frm=r.jid))
    s.message(receiver_acc.jid, "warm:0")
    await r.inbox.wait(is_message(body="warm:0"))

    state = Path(os.environ.get("STARLING_KAFKA_STATE", "/var/cache/starling/state/kafka"))
    kafka = int((state / "kafka.pid").read_text().strip())
    rss_before, taken_before = rss_mib(edge2), messages_in(edge2)
    os.kill(kafka, signal.SIGSTOP)
    try:
        for i in range(FLOOD):
            s.send(f"<message to='{receiver_acc.jid}' type='chat' id='flood-{i}'><body>flood:{i}</body>"
                   f"<pad xmlns='urn:example:pad'>{'x' * 200}</pad></message>")
        await asyncio.sleep(STALL)
        rss_during, taken_during = rss_mib(edge2), messages_in(edge2) - taken_before
    finally:
        os.kill(kafka, signal.SIGCONT)
    # The receiver may be dropped as too slow while the backlog drains: it comes back, as a
    # client would, and gets what was stored for it meanwhile.
    stop = asyncio.Event()
    reconnecting = asyncio.create_task(keep_connected([receiver], stop))
    # Once the stream drains, a ping answered after the flood confirms every message of it. If
    # the bus could not take the backlog in time (librdkafka gives a record up after 30 s), the
    # edge ends that stream instead — nothing of it was confirmed, so nothing is owed — and the
    # client comes back and must be served again.
    try:
        answer = await s.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain, timeout=120)
        confirmed = answer.get("type") == "result"
    except AssertionError:
        confirmed = False
    if not confirmed:
        s.kill()
        s.disconnected.set()  # dropped by us: ensure() reconnects
        # The owners' consumer group may still be rejoining after the stall (its session timed
        # out): a login needs an owner, so the client keeps trying for a while, as a client would.
        deadline = time.monotonic() + 60
        s = await sender.ensure()
        while s is None and time.monotonic() < deadline:
            await asyncio.sleep(1)
            s = await sender.ensure()
        assert s is not None, "the sender cannot come back within 60 s of the stall"
    s.message(receiver_acc.jid, "after:0")
    deadline = time.monotonic() + 120
    while 0 not in receiver.bodies("after") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    served_again = 0 in receiver.bodies("after")

    def refused() -> set[int]:
        return {int(e.get("id").split("-")[1]) for c in sender.clients
                for e in c.inbox.find(lambda e: (e.get("id") or "").startswith("flood-") and e.get("type") == "error")}

    deadline = time.monotonic() + 60
    while confirmed and len(set(receiver.bodies("flood")) | refused()) < FLOOD and time.monotonic() < deadline:
        await asyncio.sleep(1)
    stop.set()
    await reconnecting
    got, errors = set(receiver.bodies("flood")), refused()
    report = {
        "stall_s": STALL, "flood": FLOOD, "taken_by_edge_during_stall": taken_during,
        "edge_rss_mib_before": round(rss_before, 1), "edge_rss_mib_during": round(rss_during, 1),
        "flood_confirmed": confirmed, "served_again": served_again,
        "delivered": len(got), "refused_with_error": len(errors - got), "receiver_reconnects": receiver.reconnects,
        "missing": sorted(set(range(FLOOD)) - got - errors)[:20] if confirmed else [],
    }
    print(json.dumps(report))
    if os.environ.get("STARLING_STALL_REPORT"):
        Path(os.environ["STARLING_STALL_REPORT"]).write_text(json.dumps(report, indent=2))
    for peer in (sender, receiver):
        for client in peer.clients:
            client.kill()
    assert taken_during < FLOOD / 2, f"the edge kept reading during the stall: {report}"
    assert rss_during - rss_before < 64, f"the edge's memory grew during the stall: {report}"
    assert served_again, f"not served again after the stall: {report}"
    assert not report["missing"], f"confirmed messages neither delivered nor refused after the stall: {report}"
