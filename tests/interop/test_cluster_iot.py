"""The XEP-0347 Thing Registry in the cluster (2 edges, 2 session nodes): the registry is one
entity, owned by the session node of its JID's partition; a Thing connected to one edge and its
owner connected to the other register, claim (the Thing is told across the bus) and search, on the
shared cluster (`cluster_fixtures.py`). And on a cluster of its own: after `kill -9` of the node
owning the registry, the survivor serves it with every Thing it had (read back from the store).
Runs in the Cassandra pass of scripts/test."""

import asyncio
import time

import pytest

from harness import NS, Account, Env, Target, to_str
from sm_peers import kill
from test_cluster import PARTITIONS, Cluster, owned, partition_of, start_cluster, stop_cluster

pytestmark = pytest.mark.starling_only

IOT = "urn:xmpp:iot:discovery"
P = {**NS, "iot": IOT}
REGISTRY = "registry.localhost"


async def test_cluster_thing_registered_on_one_edge_claimed_from_the_other(cl, env1):
    thing_acc, owner_acc = cl.pair()
    assert cl.owner[partition_of(thing_acc.jid)] != cl.owner[partition_of(owner_acc.jid)]
    thing = await env1.client(thing_acc)
    owner = await env1.client(owner_acc, ep=cl.nodes["edge2"].endpoint)
    tags = f"<str name='SN' value='cl-{thing_acc.localpart}'/><str name='MAN' value='cluster.example'/><str name='KEY' value='k'/>"
    registered = await thing.iq(f"<register xmlns='{IOT}'>{tags}</register>", "set", to=REGISTRY)
    assert registered.get("type") == "result", to_str(registered)
    claimed = await owner.iq(f"<mine xmlns='{IOT}'>{tags}</mine>", "set", to=REGISTRY)
    assert claimed.find("iot:claimed", P).get("jid") == thing_acc.jid, to_str(claimed)
    told = await thing.inbox.wait(lambda el: el.find("iot:claimed", P) is not None)
    assert told.find("iot:claimed", P).get("jid") == owner_acc.jid, to_str(told)
    found = await owner.iq(f"<search xmlns='{IOT}'><strEq name='SN' value='cl-{thing_acc.localpart}'/></search>", "get", to=REGISTRY)
    hits = found.findall("iot:found/iot:thing", P)
    assert [(hit.get("jid"), hit.get("owner")) for hit in hits] == [(thing_acc.jid, owner_acc.jid)], to_str(found)


@pytest.fixture(scope="module")
def iot_cluster(workdir):
    from conftest import PASSWORD
    nodes = start_cluster(workdir, "iotc", "iotc", accounts=20, node_ttl=3)
    yield Cluster(nodes, [Account(f"iotc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 21)])
    stop_cluster(nodes)


async def test_cluster_registry_keeps_its_things_when_its_node_dies(iot_cluster):
    cl = iot_cluster
    env = Env(Target("starling", cl.nodes["edge1"].endpoint, cl.pool))
    thing_acc, owner_acc = cl.pair()
    thing = await env.client(thing_acc)
    owner = await env.client(owner_acc, ep=cl.nodes["edge2"].endpoint)
    tags = "<str name='SN' value='survivor'/><str name='KEY' value='k'/>"
    assert (await thing.iq(f"<register xmlns='{IOT}'>{tags}</register>", "set", to=REGISTRY)).get("type") == "result"
    assert (await owner.iq(f"<mine xmlns='{IOT}'>{tags}</mine>", "set", to=REGISTRY)).find("iot:claimed", P) is not None

    victim = cl.nodes[cl.owner[partition_of(REGISTRY)]]
    survivor = next(node for name, node in cl.nodes.items() if name.startswith("session") and node is not victim)
    kill(victim)
    deadline = time.monotonic() + 60
    while len(owned(survivor)) < PARTITIONS:
        assert time.monotonic() < deadline, f"the survivor never took over: {owned(survivor)}"
        await asyncio.sleep(0.2)
    found = await owner.iq(f"<search xmlns='{IOT}'><strEq name='SN' value='survivor'/></search>", "get", to=REGISTRY, timeout=30)
    hits = found.findall("iot:found/iot:thing", P)
    assert [(hit.get("jid"), hit.get("owner")) for hit in hits] == [(thing_acc.jid, owner_acc.jid)], to_str(found)
    again = await thing.iq(f"<register xmlns='{IOT}'>{tags}</register>", "set", to=REGISTRY, timeout=30)
    assert again.find("iot:claimed", P).get("jid") == owner_acc.jid, f"the claim was lost: {to_str(again)}"
