"""Virtual hosts: one server serving `localhost` and `b.test` (`[hosts."b.test"]`). Accounts of
the same name on each are different accounts; users of both talk, subscribe and share rooms as
users of one domain do; each domain has its own certificate (SNI), registration policy, services
and administrators; a stream to a domain not served ends with `host-unknown`; the CLI and the
admin API take the domain. Driven by slixmpp (and raw streams where the bytes matter)."""

import asyncio
import json
import socket
import ssl
import urllib.error
import urllib.request

import pytest

from conftest import PASSWORD, own_server
from harness import NS, Account, Endpoint, Env, Target, fresh_source_ip, is_message, is_presence, tag, to_str
from test_xep0133_admin import run

pytestmark = pytest.mark.starling_only

OTHER = "b.test"
# b.test's users may send 3 messages at once (then 1 a second); localhost's have the defaults.
HOSTS = f'[hosts."{OTHER}"]\nregistration = true\nadmins = ["boss@{OTHER}"]\nmessage_rate = 1\nmessage_burst = 3\n'


@pytest.fixture(scope="module")
def vhosts(workdir):
    with own_server(workdir, "vhosts", HOSTS, ("alice", "carol"), PASSWORD) as server:
        # Same names on the other domain, with other passwords: different accounts.
        for user in ("bob", "boss", "alice", "fast"):
            server.cli("user", "add", f"{user}@{OTHER}", "--password", f"{PASSWORD}-{OTHER}")
        yield server


def other(server) -> Endpoint:
    return Endpoint(server.ip, server.c2s_port, server.tls_port, OTHER)


async def chat_subscribe_and_list_services(alice, bob):
    """`alice` (localhost) and `bob` (b.test) message both ways and subscribe, each then seeing the
    other's presence; b.test's disco#items lists its own services, not localhost's."""
    alice.message(bob.jid, "hello from localhost")
    await bob.inbox.wait(is_message(frm=alice.jid, body="hello from localhost"))
    bob.message(alice.bare, "hello from b.test")
    await alice.inbox.wait(is_message(frm=bob.jid, body="hello from b.test"))
    alice.presence(to=bob.bare, type_="subscribe")
    await bob.inbox.wait(is_presence(frm=alice.bare, type_="subscribe"))
    bob.presence(to=alice.bare, type_="subscribed")
    await alice.inbox.wait(is_presence(frm=bob.jid))
    items = await bob.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to=OTHER)
    listed = {item.get("jid") for item in items.iter(tag("disco_items", "item"))}
    assert f"conference.{OTHER}" in listed and f"pubsub.{OTHER}" in listed, to_str(items)
    assert "conference.localhost" not in listed, to_str(items)


async def test_users_of_two_domains_chat_subscribe_and_see_their_own_services(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    alice = await env.client(Account("alice", PASSWORD, "localhost"), presence=True)
    bob = await env.client(Account("bob", f"{PASSWORD}-{OTHER}", OTHER), presence=True)
    assert bob.x.boundjid.bare == f"bob@{OTHER}"

    await chat_subscribe_and_list_services(alice, bob)
    items = await alice.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to="localhost")
    assert "conference.localhost" in {item.get("jid") for item in items.iter(tag("disco_items", "item"))}, to_str(items)

    # A room on b.test's service, with an occupant from each domain.
    room = f"lounge@conference.{OTHER}"
    bob.send(f"<presence to='{room}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await bob.inbox.wait(is_presence(frm=f"{room}/bob"))
    bob.send(f"<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
             "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    await bob.inbox.wait(lambda el: el.get("id") == "cfg" and el.get("type") == "result")
    alice.send(f"<presence to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await alice.inbox.wait(is_presence(frm=f"{room}/alice"))
    bob.send(f"<message to='{room}' type='groupchat'><body>welcome</body></message>")
    await alice.inbox.wait(is_message(frm=f"{room}/bob", body="welcome", type_="groupchat"))


async def test_the_same_name_on_two_domains_is_two_accounts(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    here = await env.client(Account("alice", PASSWORD, "localhost"))
    there = await env.client(Account("alice", f"{PASSWORD}-{OTHER}", OTHER))
    assert (here.x.boundjid.bare, there.x.boundjid.bare) == ("alice@localhost", f"alice@{OTHER}")
    # One domain's password does not open the other domain's account.
    raw = await env.raw(source_ip=fresh_source_ip(), ep=other(vhosts))
    await raw.open_stream()
    await raw.starttls()
    outcome = await raw.auth_plain("alice", PASSWORD)
    assert outcome.tag == tag("sasl", "failure"), to_str(outcome)


async def test_a_domain_not_served_is_host_unknown(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    raw = await env.raw(source_ip=fresh_source_ip())
    raw.send(raw.stream_header(to="c.test"))
    assert await raw.stream_error() == "host-unknown"
    # Our header speaks for the domain asked for.
    raw = await env.raw(source_ip=fresh_source_ip(), ep=other(vhosts))
    await raw.open_stream()
    assert raw.header.get("from") == OTHER, raw.header


async def test_a_restart_may_not_switch_domains_after_authentication(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    raw = await env.raw(source_ip=fresh_source_ip())
    await raw.open_stream()
    await raw.starttls()
    assert (await raw.auth_plain("carol", PASSWORD)).tag == tag("sasl", "success")
    raw._reset_parser()
    raw.send(raw.stream_header(to=OTHER))
    assert await raw.stream_error() == "host-unknown"


def served_certificate(server, name: str) -> bytes:
    """The certificate a direct TLS connection asking for `name` (SNI) is served."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["xmpp-client"])
    with socket.create_connection((server.ip, server.tls_port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)


def certificate_file(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


async def test_each_domain_has_its_own_certificate(vhosts):
    tls = vhosts.dir / "data" / "tls"
    primary, theirs = certificate_file(tls / "self-signed.crt"), certificate_file(tls / f"self-signed-{OTHER}.crt")
    assert primary != theirs
    assert served_certificate(vhosts, OTHER) == theirs
    assert served_certificate(vhosts, f"upload.{OTHER}") == theirs
    assert served_certificate(vhosts, "localhost") == primary
    assert served_certificate(vhosts, "elsewhere.test") == primary


async def test_registration_follows_each_domains_policy(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    raw = await env.raw(source_ip=fresh_source_ip())
    await raw.open_stream()
    features = await raw.starttls()
    assert features.find("register_feature:register", NS) is None, to_str(features)

    raw = await env.raw(source_ip=fresh_source_ip(), ep=other(vhosts))
    await raw.open_stream()
    features = await raw.starttls()
    assert features.find("register_feature:register", NS) is not None, to_str(features)
    answer = await raw.iq("<query xmlns='jabber:iq:register'><username>dave</username><password>Pw-dave-1</password></query>", "set")
    assert answer.get("type") == "result", to_str(answer)
    dave = await env.client(Account("dave", "Pw-dave-1", OTHER))
    assert dave.x.boundjid.bare == f"dave@{OTHER}"


async def test_a_domains_administrator_acts_on_its_own_accounts_only(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    boss = await env.client(Account("boss", f"{PASSWORD}-{OTHER}", OTHER), plugins=("xep_0050", "xep_0133"))
    alice = await env.client(Account("alice", PASSWORD, "localhost"), plugins=("xep_0050", "xep_0133"))
    assert (await boss.x["xep_0133"].get_commands())["disco_items"]["items"]
    assert not (await alice.x["xep_0133"].get_commands())["disco_items"]["items"]
    refused = await run(boss, "add-user", {"accountjid": "eve@localhost", "password": "Pw-eve-1", "password-verify": "Pw-eve-1"})
    assert refused["error"]["condition"] == "not-acceptable", refused
    done = await run(boss, "add-user", {"accountjid": f"eve@{OTHER}", "password": "Pw-eve-1", "password-verify": "Pw-eve-1"})
    assert done["command"]["status"] == "completed", done
    eve = await env.client(Account("eve", "Pw-eve-1", OTHER))
    assert eve.x.boundjid.bare == f"eve@{OTHER}"


async def test_cli_and_admin_api_take_the_domain(vhosts):
    listed = vhosts.cli("user", "list", "--domain", OTHER).stdout.split()
    assert f"bob@{OTHER}" in listed and "carol@localhost" not in listed, listed
    assert "carol@localhost" in vhosts.cli("user", "list").stdout.split()
    refused = vhosts.cli("user", "list", "--domain", "c.test", check=False)
    assert refused.returncode != 0 and "c.test" in refused.stderr
    token = (vhosts.dir / "data" / "admin.token").read_text().strip()

    def get(path):
        request = urllib.request.Request(vhosts.admin_url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, None

    status, body = await asyncio.to_thread(get, f"/api/v1/users?domain={OTHER}")
    assert status == 200 and f"bob@{OTHER}" in body["users"] and "carol@localhost" not in body["users"], body
    assert (await asyncio.to_thread(get, "/api/v1/users?domain=c.test"))[0] == 404
    status, body = await asyncio.to_thread(get, "/api/v1/status")
    assert body["hosts"] == [OTHER], body

    # Sessions and announcements of one domain.
    env = Env(Target("starling", vhosts.endpoint, []))
    here = await env.client(Account("carol", PASSWORD, "localhost"), resource="api", presence=True)
    there = await env.client(Account("bob", f"{PASSWORD}-{OTHER}", OTHER), resource="api", presence=True)
    status, body = await asyncio.to_thread(get, f"/api/v1/sessions?domain={OTHER}")
    jids = {session["jid"] for session in body["sessions"]}
    assert status == 200 and there.jid in jids and here.jid not in jids, body
    assert (await asyncio.to_thread(get, "/api/v1/sessions?domain=c.test"))[0] == 404

    def announce(body):
        request = urllib.request.Request(vhosts.admin_url + "/api/v1/announcements", data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    await asyncio.to_thread(announce, {"body": "b.test only", "domain": OTHER})
    got = await there.inbox.wait(is_message(body="b.test only", type_="headline"))
    assert got.get("from") == OTHER, to_str(got)
    await asyncio.to_thread(announce, {"body": "everyone"})
    await here.inbox.wait(is_message(body="everyone", type_="headline"))
    assert not here.inbox.find(is_message(body="b.test only")), "a localhost user got b.test's announcement"


async def test_each_domain_has_its_own_message_rate_limit(vhosts):
    env = Env(Target("starling", vhosts.endpoint, []))
    carol = await env.client(Account("carol", PASSWORD, "localhost"), presence=True)
    fast = await env.client(Account("fast", f"{PASSWORD}-{OTHER}", OTHER), presence=True)
    # b.test: the 4th message at once is refused (resource-constraint), the first 3 delivered.
    for n in range(6):
        fast.send(f"<message to='{carol.jid}' id='f{n}' type='chat'><body>f{n}</body></message>")
    error = await fast.inbox.wait(lambda el: el.get("type") == "error" and el.get("id") == "f3")
    assert error.find("c:error/stanzas:resource-constraint", NS) is not None, to_str(error)
    for n in range(3):
        await carol.inbox.wait(is_message(body=f"f{n}"))
    # localhost: the deployment's limit (a burst of 1,000), so 20 at once all go.
    for n in range(20):
        carol.message(fast.jid, f"c{n}")
    await fast.inbox.wait(is_message(body="c19"))
    assert not carol.inbox.find(lambda el: el.get("type") == "error"), carol.inbox.summary()
