"""Virtual hosts in the cluster (2 edges, 2 session nodes): a user of the virtual host `b.test`
and one of `localhost`, owned by different session nodes and connected to different edges,
exchange messages and presence; the b.test user's server answers as b.test, with b.test's
services; an edge refuses a domain not served. Runs in the Cassandra pass of scripts/test, on the
shared cluster (`cluster_fixtures.py`)."""

import pytest

from cluster_fixtures import OTHER_HOST
from harness import Account, Endpoint, fresh_source_ip
from test_cluster import partition_of
from test_vhosts import chat_subscribe_and_list_services

pytestmark = pytest.mark.starling_only


def account_on_other_host(cl, owner: str) -> Account:
    """A new account on b.test whose partition `owner` serves."""
    from conftest import PASSWORD
    for n in range(1, 64):
        name = f"vh{n}"
        if cl.owner[partition_of(f"{name}@{OTHER_HOST}")] == owner and name not in cl.used:
            cl.used.add(name)
            cl.nodes["session1"].cli("user", "add", f"{name}@{OTHER_HOST}", "--password", PASSWORD)
            return Account(name, PASSWORD, OTHER_HOST)
    raise RuntimeError(f"no b.test name owned by {owner}")


async def test_cluster_users_of_two_domains_across_owners_and_edges(cl, env1):
    alice_acc, _ = cl.pair()
    alice_owner = cl.owner[partition_of(alice_acc.jid)]
    bob_acc = account_on_other_host(cl, "session2" if alice_owner == "session1" else "session1")
    edge2 = cl.nodes["edge2"].endpoint
    alice = await env1.online(alice_acc)
    bob = await env1.online(bob_acc, ep=edge2)
    assert bob.x.boundjid.bare == f"{bob_acc.localpart}@{OTHER_HOST}"
    await chat_subscribe_and_list_services(alice, bob)


async def test_cluster_edge_refuses_a_domain_not_served(cl, env1):
    raw = await env1.raw(source_ip=fresh_source_ip(), ep=cl.nodes["edge2"].endpoint)
    raw.send(raw.stream_header(to="c.test"))
    assert await raw.stream_error() == "host-unknown"
    edge = cl.nodes["edge1"]
    raw = await env1.raw(source_ip=fresh_source_ip(), ep=Endpoint(edge.ip, edge.c2s_port, edge.tls_port, OTHER_HOST))
    await raw.open_stream()
    assert raw.header.get("from") == OTHER_HOST, raw.header
