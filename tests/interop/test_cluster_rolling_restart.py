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
import time

import pytest

from harness import StarlingServer
from test_cluster import wait_for_split
from test_cluster_faults import PAIRS, INTERVAL, counted_cluster, counted_pairs, keep_connected, recovered, settle


@pytest.fixture(scope="module")
def rolling_cluster(workdir):
    yield from counted_cluster(workdir, "rolling", "rl")


@pytest.mark.deadline(400)
async def test_cluster_rolling_restart_loses_no_accepted_message(rolling_cluster):
    nodes, pool = rolling_cluster
    sessions = {name: nodes[name] for name in ("session1", "session2")}
    env, pairs = await counted_pairs(nodes, pool, "r")

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

    await settle(env, pairs, report, "STARLING_ROLLING_REPORT")
