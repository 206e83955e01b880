"""Virtual hosts in the cluster (2 edges, 2 session nodes): a user of the virtual host `b.test`
and one of `localhost`, owned by different session nodes and connected to different edges,
exchange messages and presence; the b.test user's server answers as b.test, with b.test's
services; an edge refuses a domain not served. Runs in the Cassandra pass of scripts/test, on the
shared cluster (`cluster_fixtures.py`)."""

import pytest

from cluster_fixtures import OTHER_HOST
from harness import Account, Endpoint, fresh_source_ip, is_message, is_presence, tag, to_str
from test_cluster import partition_of

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

    alice.message(bob.bare, "to b.test")
    got = await bob.inbox.wait(is_message(body="to b.test"))
    assert got.get("from") == alice.jid, to_str(got)
    bob.message(alice.jid, "to localhost")
    await alice.inbox.wait(is_message(frm=bob.jid, body="to localhost"))

    alice.presence(to=bob.bare, type_="subscribe")
    await bob.inbox.wait(is_presence(frm=alice.bare, type_="subscribe"))
    bob.presence(to=alice.bare, type_="subscribed")
    await alice.inbox.wait(is_presence(frm=bob.jid))

    items = await bob.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to=OTHER_HOST)
    listed = {item.get("jid") for item in items.iter(tag("disco_items", "item"))}
    assert f"conference.{OTHER_HOST}" in listed and "conference.localhost" not in listed, to_str(items)


async def test_cluster_edge_refuses_a_domain_not_served(cl, env1):
    raw = await env1.raw(source_ip=fresh_source_ip(), ep=cl.nodes["edge2"].endpoint)
    raw.send(raw.stream_header(to="c.test"))
    assert await raw.stream_error() == "host-unknown"
    edge = cl.nodes["edge1"]
    raw = await env1.raw(source_ip=fresh_source_ip(), ep=Endpoint(edge.ip, edge.c2s_port, edge.tls_port, OTHER_HOST))
    await raw.open_stream()
    assert raw.header.get("from") == OTHER_HOST, raw.header
