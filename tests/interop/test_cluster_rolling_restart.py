"""Issue 18: a rolling restart of every process of the 4-process cluster (each session node, then
each edge: SIGTERM, wait for it to exit, start it again) while four pairs of clients exchange a
counted stream of messages, as test_cluster_faults.py counts them. A stopping session node stores
what its archive holds, commits what it handled and leaves the owners' group, so its partitions
move at once instead of after Kafka's session timeout; a stopping edge ends its streams with
`system-shutdown` and the clients reconnect to the other edge. Every accepted message must arrive
(live, from offline storage, or in the archive); the report gives the time each step took. Set
STARLING_ROLLING_REPORT to a path to keep the JSON.

Runs in the Cassandra pass of scripts/test, on a cluster of its own."""

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from harness import StarlingServer, is_presence
from test_cluster import PARTITIONS, owned, partition_of, wait_for_split
from test_cluster_faults import PAIRS, INTERVAL, Pair, Peer, archived, fault_cluster, keep_connected, recovered  # noqa: F401

__all__ = ["fault_cluster"]


@pytest.mark.deadline(400)
async def test_cluster_rolling_restart_loses_no_accepted_message(fault_cluster):
    from harness import Env, Target
    nodes, pool = fault_cluster
    sessions = {name: nodes[name] for name in ("session1", "session2")}
    owner = {p: ("session1" if p in owned(sessions["session1"]) else "session2") for p in range(PARTITIONS)}
    endpoints = [nodes["edge1"].endpoint, nodes["edge2"].endpoint]
    env = Env(Target("starling", endpoints[0], pool))
    free = list(pool)
    pairs = []
    while len(pairs) < PAIRS:
        a = free.pop(0)
        b = next(x for x in free if owner[partition_of(x.jid)] != owner[partition_of(a.jid)])
        free.remove(b)
        i = len(pairs)
        pairs.append(Pair(f"r{i}", Peer(env, a, endpoints, i % 2), Peer(env, b, endpoints, (i + 1) % 2)))
    for pair in pairs:
        assert await pair.receiver.ensure() and await pair.sender.ensure()
        await pair.receiver.client.inbox.wait(is_presence(frm=pair.receiver.client.jid))

    stop = asyncio.Event()
    tasks = [asyncio.create_task(pair.run(stop)) for pair in pairs]
    tasks.append(asyncio.create_task(keep_connected([pair.receiver for pair in pairs], stop)))
    report: dict = {"pairs": PAIRS, "rate_per_sender": 1 / INTERVAL, "steps": []}

    def other_session(name: str) -> StarlingServer:
        return sessions["session2" if name == "session1" else "session1"]

    try:
        for name in ("session1", "session2", "edge1", "edge2"):
            await asyncio.sleep(3)  # steady stream before each step
            server = nodes[name]
            t0 = time.monotonic()
            exit_code = await asyncio.to_thread(server.stop)
            stopped = round(time.monotonic() - t0, 2)
            assert exit_code == 0, f"{name} did not exit cleanly on SIGTERM ({exit_code}):\n{server.log_tail()}"
            served_again = await recovered(pairs, t0, f"{name} stopped")
            t1 = time.monotonic()
            since = server.log_size()
            await asyncio.to_thread(server.start)
            if name.startswith("session"):
                await asyncio.to_thread(wait_for_split, server, other_session(name), since, 0)
            started = round(time.monotonic() - t1, 2)
            report["steps"].append({"process": name, "sigterm_to_exit_s": stopped, "served_again_after_sigterm_s": served_again,
                                    "start_and_rebalance_s": started,
                                    "recovered_after_start_s": await recovered(pairs, time.monotonic(), f"{name} started")})
        await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    lost_total = 0
    report["pairs_detail"] = []
    for pair in pairs:
        deadline = time.monotonic() + 30
        while not pair.accepted <= set(pair.receiver.bodies(pair.tag)) and time.monotonic() < deadline:
            await pair.receiver.ensure()
            await asyncio.sleep(0.2)
        received = pair.receiver.bodies(pair.tag)
        live = set(received)
        in_archive = await archived(pair.receiver, pair.sender.account, pair.tag)
        lost = sorted(pair.accepted - live - in_archive)
        lost_total += len(lost)
        report["pairs_detail"].append({
            "pair": pair.tag, "sent": len(pair.sent_at), "accepted": len(pair.accepted), "delivered": len(live & pair.accepted),
            "archive_only": len((pair.accepted - live) & in_archive), "duplicates": len(received) - len(live),
            "out_of_order": sum(1 for a, b in zip(received, received[1:]) if b < a), "lost": lost[:20],
            "sender_reconnects": pair.sender.reconnects, "receiver_reconnects": pair.receiver.reconnects,
        })
    keys = ("sent", "accepted", "delivered", "archive_only", "duplicates", "out_of_order")
    report["totals"] = {**{key: sum(d[key] for d in report["pairs_detail"]) for key in keys}, "lost": lost_total}
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("STARLING_ROLLING_REPORT"):
        Path(os.environ["STARLING_ROLLING_REPORT"]).write_text(text)
    await env.aclose()
    for pair in pairs:
        for client in pair.sender.clients + pair.receiver.clients:
            client.kill()
    assert lost_total == 0, f"accepted messages lost:\n{text}"
    assert report["totals"]["accepted"] > 0, text
