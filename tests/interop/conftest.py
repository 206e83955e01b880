"""Fixtures: the server under test (Starling by default, or an external server for validating the suite).

Default mode (XMPP_TARGET unset or 'starling'): starts `$STARLING_BIN --config <tmp> serve` on free loopback
ports with a temp data dir, after creating a pool of accounts with the CLI (the CLI runs only while the
server is stopped, since the embedded store is single-process). A second instance with in-band
registration enabled is started on demand (`reg_target`).

External mode (XMPP_TARGET=external), used to check the tests themselves against another server:
  XMPP_HOST, XMPP_PORT (STARTTLS), XMPP_TLS_PORT (direct TLS), XMPP_DOMAIN,
  XMPP_USER_PREFIX + XMPP_USER_COUNT + XMPP_PASSWORD (accounts PREFIX001..PREFIXNNN exist),
  XMPP_REG_DOMAIN (a virtual host on the same ports with registration on).
scripts/prosody-sandbox sets up such a server and prints these variables.

Async tests (`async def test_...`) run in a fresh event loop each, with an overall deadline; the
`env` fixture's clients are closed afterwards inside that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from harness import Account, Endpoint, Env, StarlingServer, Target, free_port

# The shared cluster of the cluster tests, one for every module that uses it.
pytest_plugins = ["cluster_fixtures"]

MODE = os.environ.get("XMPP_TARGET", "starling")
TEST_TIMEOUT = float(os.environ.get("XMPP_TEST_TIMEOUT", "90"))
POOL_SIZE = int(os.environ.get("XMPP_POOL_SIZE", "600"))
PASSWORD = "pool-Secret-1"

# Config the suite needs beyond the documented contract (see tests/interop/README.md):
# the idle-ping delay must be short for the XEP-0199 server-to-client ping test.
PING_IDLE_SECS = 3
EXTRA_C2S = f"ping_idle_seconds = {PING_IDLE_SECS}\nping_timeout_seconds = 10\n"


# STARLING_TEST_STORE=scylla runs the same suite against the CQL backend (Apache Cassandra at
# $CASSANDRA_CONTACT, a fresh keyspace per run); the default is the embedded store.
if os.environ.get("STARLING_TEST_STORE", "embedded") == "scylla":
    # Logged in as scripts/infra/cassandra's user, the password from a file as a Secret would be.
    _CASSANDRA_PASSWORD_FILE = Path(tempfile.mkdtemp(prefix="starling-cql-")) / "password"
    _CASSANDRA_PASSWORD_FILE.write_text(os.environ.get("CASSANDRA_PASSWORD", "cassandra") + "\n")
    STORE_SECTION = (
        "[store]\nbackend = \"scylla\"\n"
        f"scylla_contact_points = [\"{os.environ.get('CASSANDRA_CONTACT', '127.0.0.1:29042')}\"]\n"
        f"scylla_keyspace = \"interop_{os.getpid()}_{int(__import__('time').time())}\"\n"
        f"scylla_username = \"{os.environ.get('CASSANDRA_USER', 'cassandra')}\"\n"
        f"scylla_password_file = \"{_CASSANDRA_PASSWORD_FILE}\"\n"
    )
else:
    STORE_SECTION = ""


def pytest_configure(config):
    config.addinivalue_line("markers", "starling_only: checks Starling's own CLI/admin surface; skipped in external mode")


def pytest_collection_modifyitems(config, items):
    if MODE == "starling":
        return
    skip = pytest.mark.skip(reason="Starling-specific (external target)")
    for item in items:
        if "starling_only" in item.keywords:
            item.add_marker(skip)


def _workdir() -> Path:
    base = Path(os.environ.get("STARLING_TEST_DIR", tempfile.gettempdir()))
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="starling-interop-", dir=base))


def _binary() -> str:
    path = os.environ.get("STARLING_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "/var/cache/starling/target"), "debug", "starling")
    if not os.access(path, os.X_OK):
        pytest.exit(f"STARLING_BIN={path} is not an executable (build with cargo build -p starling-server)", 3)
    return path


_servers: list[StarlingServer] = []
_targets: list[Target] = []


@contextlib.contextmanager
def own_server(workdir: Path, name: str, sections: str, users: tuple[str, ...] = (), password: str = "",
               c2s: str = "", admin: str = "", tls: str | None = None, domain: str = "localhost", ip: str = "127.0.0.1"):
    """A server of a test's own (`[c2s]` additions, other sections), serving `domain`, with
    `users` sharing `password`, listening on `ip`; stopped, and its log kept, when the block ends."""
    if MODE != "starling":
        pytest.skip("starts its own server")
    extra = {"c2s": c2s, "sections": sections, "admin": admin} | ({"tls": tls} if tls is not None else {})
    server = StarlingServer(_binary(), workdir / name, extra=extra, name=f"starling-{name}", domain=domain, ip=ip)
    _servers.append(server)
    for user in users:
        server.cli("user", "add", user, "--password", password)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        _servers.remove(server)


@pytest.fixture(scope="session")
def workdir() -> Path:
    return _workdir()


@pytest.fixture(scope="session")
def target(workdir) -> Target:
    if MODE == "external":
        ep = Endpoint(os.environ.get("XMPP_HOST", "127.0.0.1"), int(os.environ.get("XMPP_PORT", "5222")),
                      int(os.environ.get("XMPP_TLS_PORT", "5223")), os.environ.get("XMPP_DOMAIN", "localhost"))
        prefix = os.environ.get("XMPP_USER_PREFIX", "user")
        count = int(os.environ.get("XMPP_USER_COUNT", "150"))
        pw = os.environ.get("XMPP_PASSWORD", "secret")
        pool = [Account(f"{prefix}{i:03d}", pw, ep.domain) for i in range(1, count + 1)]
        t = Target("external", ep, pool)
        _targets.append(t)
        yield t
        return

    component_port = free_port()
    component_secrets = {"push.localhost": "push-secret", "bot.localhost": "bot-secret"}
    secrets = ", ".join(f'"{domain}" = "{secret}"' for domain, secret in component_secrets.items())
    components = f'[components]\nlisten = ["127.0.0.1:{component_port}"]\nsecrets = {{ {secrets} }}\n'
    # Small enough for test_xep0045_muc.py to reach them; each other test's users join a few rooms.
    muc_limits = "[muc]\nmax_rooms_per_user = 6\njoin_burst = 6\njoin_rate = 0.5\n"
    # test_xep0060_pubsub.py reaches these.
    pubsub_limits = "[pubsub]\nmax_payload_bytes = 4096\nmax_nodes_per_user = 8\nmax_subscriptions_per_node = 3\n"
    server = StarlingServer(_binary(), workdir / "main", extra={"c2s": EXTRA_C2S, "store": STORE_SECTION, "sections": components + muc_limits + pubsub_limits})
    _servers.append(server)
    pool = [Account(f"user{i}", PASSWORD, server.domain) for i in range(1, POOL_SIZE + 1)]
    special = {
        "passwd": Account("changedpw", "old-Password-1", server.domain),
        "removed": Account("removeduser", "removed-Password-1", server.domain),
    }
    server.cli("user", "add-bulk", "--prefix", "user", "--count", str(POOL_SIZE), "--password", PASSWORD)
    for acc in special.values():
        server.cli("user", "add", acc.localpart, "--password", acc.password)
    server.cli("user", "passwd", "changedpw", "--password", "new-Password-2")
    server.cli("user", "remove", "removeduser")
    listing = server.cli("user", "list").stdout
    server.start()
    t = Target("starling", server.endpoint, pool, admin_url=server.admin_url, server=server,
               special=special, ping_idle=PING_IDLE_SECS, component_port=component_port,
               component_secrets=component_secrets)
    t.user_list_output = listing
    _targets.append(t)
    yield t
    rc = server.stop()
    # SIGTERM should be a clean shutdown.
    if rc not in (0, None, -15):
        print(f"\nstarling exited with {rc}")


@pytest.fixture(scope="session")
def reg_target(workdir) -> Target:
    """A server with XEP-0077 in-band registration enabled (no pre-created accounts)."""
    if MODE == "external":
        domain = os.environ.get("XMPP_REG_DOMAIN", "reg.localhost")
        ep = Endpoint(os.environ.get("XMPP_HOST", "127.0.0.1"), int(os.environ.get("XMPP_PORT", "5222")),
                      int(os.environ.get("XMPP_TLS_PORT", "5223")), domain)
        yield Target("external", ep, [])
        return
    server = StarlingServer(_binary(), workdir / "reg", registration=True, name="starling-reg")
    _servers.append(server)
    server.start()
    yield Target("starling", server.endpoint, [], admin_url=server.admin_url, server=server)
    server.stop()


@pytest.fixture(scope="session")
def outage_target(workdir) -> Target:
    """A server on the CQL store with a tiny archive queue, for freezing Cassandra under it."""
    if MODE != "starling" or not STORE_SECTION:
        pytest.skip("store outage tests need Starling on the CQL store (STARLING_TEST_STORE=scylla)")
    archive = "\n[archive]\nqueue = 8\nbatch = 4\nsubmit_timeout_ms = 500\n"
    server = StarlingServer(_binary(), workdir / "outage", extra={"store": STORE_SECTION + archive}, name="starling-outage")
    _servers.append(server)
    server.cli("user", "add-bulk", "--prefix", "outage", "--count", "4", "--password", PASSWORD)
    server.start()
    pool = [Account(f"outage{i}", PASSWORD, server.domain) for i in range(1, 5)]
    yield Target("starling", server.endpoint, pool, admin_url=server.admin_url, server=server)
    server.stop()


@pytest.fixture
def outage_env(outage_target) -> Env:
    return Env(outage_target)


@pytest.fixture
def env(target) -> Env:
    return Env(target)


@pytest.fixture
def reg_env(reg_target) -> Env:
    return Env(reg_target)


@pytest.fixture(autouse=True)
def _server_still_alive(request):
    """Every test also checks that no server it used has died (bad input must never crash it)."""
    yield
    for s in _servers:
        if s.proc is not None and not s.alive():
            pytest.fail(f"{s.name} is no longer running (exit {s.proc.returncode}):\n{s.log_tail(80)}")


# ---------------------------------------------------------------------------------------------
# Async test runner (no plugin needed)
# ---------------------------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    envs = [v for v in kwargs.values() if isinstance(v, Env)]
    marker = pyfuncitem.get_closest_marker("deadline")
    deadline = float(marker.args[0]) if marker else TEST_TIMEOUT

    async def main():
        try:
            await asyncio.wait_for(func(**kwargs), deadline)
        except (asyncio.TimeoutError, TimeoutError) as e:
            raise AssertionError(f"test exceeded its {deadline}s deadline") from e
        finally:
            for e in envs:
                await e.aclose()

    asyncio.run(main())
    return True


# ---------------------------------------------------------------------------------------------
# Server log in failure reports
# ---------------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    item._log_offsets = {s.name: s.log_size() for s in _servers}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        offsets = getattr(item, "_log_offsets", {})
        for s in _servers:
            text = s.log_since(offsets.get(s.name, 0))
            if text:
                lines = text.splitlines()
                rep.sections.append((f"{s.name} log during this test (last 150 lines)", "\n".join(lines[-150:])))
        item.session._xmpp_failed = True


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for t in _targets:
        if t.pool:
            terminalreporter.write_line(f"accounts used from the pool: {t._next}/{len(t.pool)}")
    if not _servers:
        return
    for s in _servers:
        terminalreporter.write_line(f"{s.name}: config {s.config}, log {s.log_path}")
    if exitstatus != 0:
        for s in _servers:
            terminalreporter.section(f"{s.name} log (tail)")
            terminalreporter.write_line(s.log_tail(100))
