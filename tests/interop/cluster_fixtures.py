"""The shared 4-process cluster of the cluster tests (`test_cluster.py`, `test_cluster_vhosts.py`),
loaded by conftest as a plugin so that every module gets the same one: two session nodes and two
edges (see `test_cluster.start_cluster`), serving `localhost` and the virtual host `b.test`."""

import pytest

from harness import Account, Env, Target
from test_cluster import Cluster, start_cluster, stop_cluster

OTHER_HOST = "b.test"


@pytest.fixture(scope="session")
def cluster(workdir):
    from conftest import PASSWORD
    nodes = start_cluster(workdir, "it", "cl", sections=f'[hosts."{OTHER_HOST}"]\n')
    domain = nodes["edge1"].domain
    pool = [Account(f"cl{i}", PASSWORD, domain) for i in range(1, 201)]
    yield nodes, pool
    stop_cluster(nodes)


@pytest.fixture(scope="session")
def cl(cluster):
    return Cluster(*cluster)


@pytest.fixture
def env1(cluster):
    nodes, pool = cluster
    return Env(Target("starling", nodes["edge1"].endpoint, pool))
