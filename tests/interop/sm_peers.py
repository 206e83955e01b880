"""Clients and helpers for the cluster's stream-management failure tests (test_cluster_mobile.py):
a raw XEP-0198 client that counts by the book, counted message streams between two of them, and
the kill / restart / metrics / archive checks the tests report with."""

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path

from harness import NS, Endpoint, Env, Target, tag, to_str

SM = NS["sm"]
STANZAS = {tag("c", name) for name in ("message", "presence", "iq")}
INTERVAL = 0.05      # seconds between two messages of one side (20/s)


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
    """Starts a killed session node again, waits until the two share the partitions, and takes
    the new split as the cluster's owner map (the group need not give back what it held)."""
    from conftest import _servers
    from test_cluster import owned, wait_for_split
    name = next(name for name, node in cl.nodes.items() if node is server)
    other = next(other for other in cl.nodes if other.startswith("session") and other != name)
    _servers.append(server)
    server.start()
    wait_for_split(server, cl.nodes[other])
    held = owned(server)
    cl.owner = {partition: name if partition in held else other for partition in cl.owner}


def kill(server) -> None:
    from conftest import _servers
    _servers.remove(server)
    server.proc.kill()
    server.proc.wait()
