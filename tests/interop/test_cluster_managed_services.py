"""Issue 18, item 7: the cluster reaching its services as managed ones are reached — Kafka through
its SASL/PLAIN listener (`[cluster] kafka_settings` + `kafka_password_file`), Redis as an ACL user
with the password from a file (`redis_password_file`), ScyllaDB/Cassandra over TLS with a login
and a local data centre (`[store] scylla_tls_ca_file`, `scylla_username`/`scylla_password_file`,
`scylla_local_datacenter`) — all against the services `scripts/test` starts. Runs in the Cassandra
pass."""

import pytest

from harness import Account, Env, Target, is_message
from test_cluster import Cluster, start_cluster, stop_cluster
from test_xep0313_mam import form, query


@pytest.fixture(scope="module")
def managed(workdir):
    from conftest import PASSWORD
    nodes = start_cluster(workdir, "mg", "mgc", accounts=20, managed=True)
    yield Cluster(nodes, [Account(f"mgc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 21)])
    stop_cluster(nodes)


async def test_messages_cross_a_cluster_on_managed_style_services(managed):
    alice_acc, bob_acc = managed.pair()
    alice = await Env(Target("starling", managed.nodes["edge1"].endpoint, managed.pool)).online(alice_acc)
    bob = await Env(Target("starling", managed.nodes["edge2"].endpoint, managed.pool)).online(bob_acc)
    for i in range(5):
        alice.message(bob.jid, f"managed {i}")
    await bob.inbox.wait(is_message(body="managed 4"))
    # The archive (CQL over TLS, logged in) has them on both sides.
    for client, peer in ((alice, bob_acc.jid), (bob, alice_acc.jid)):
        page = await query(client, form(**{"with": peer}))
        assert len(page.results) == 5, [r.tag for r in page.results]
    for node in managed.nodes.values():
        log = node.log_since(0)
        assert "Kafka refused the login" not in log and "AuthenticationFailed" not in log, node.name
