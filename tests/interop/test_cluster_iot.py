"""The XEP-0347 Thing Registry in the cluster (2 edges, 2 session nodes): the registry is one
entity, owned by the session node of its JID's partition; a Thing connected to one edge and its
owner connected to the other register, claim (the Thing is told across the bus) and search, and a
Thing whose owner is served by the other session node is found. Runs in the Cassandra pass of
scripts/test, on the shared cluster (`cluster_fixtures.py`)."""

import pytest

from harness import NS, to_str
from test_cluster import partition_of

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
