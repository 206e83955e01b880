"""Federation between two Starling processes (RFC 6120 server-to-server), each serving its own
domain, routed to each other by `[s2s] hosts` on loopback: messages, presence subscriptions and
probes, vCard and disco of remote users, the archive of a federated conversation, bounces for
unreachable and refused domains. `a.test` and `b.test` have self-signed certificates, so they
authenticate each other by Server Dialback (XEP-0220); `c.test` and `d.test` have certificates
from a CA both trust and dialback off, so only SASL EXTERNAL (XEP-0178) can authenticate them.
Bad input from a hand-driven remote server: an unknown domain, stanzas before authentication, a
wrong dialback key, and a stanza whose `from` is not the domain its certificate proved (spoofing).
Driven by slixmpp clients and raw s2s streams."""

import asyncio
import base64
import ssl

import pytest

from conftest import PASSWORD, own_server
from federation_peers import make_ca
from harness import NS, Account, Endpoint, Env, RawStream, Target, free_port, is_message, is_presence, stanza_error, tag, to_str

pytestmark = pytest.mark.starling_only

SECRET = "federation-test-secret"
UNREACHABLE = "unreachable.test"
DENIED = "denied.test"


def s2s_section(port: int, routes: dict[str, int], extra: str = "") -> str:
    hosts = ", ".join(f'"{domain}" = "127.0.0.1:{p}"' for domain, p in routes.items())
    return (f'[s2s]\nenabled = true\nlisten = ["127.0.0.1:{port}"]\ndialback_secret = "{SECRET}-{port}"\n'
            f'hosts = {{ {hosts} }}\ndeny = ["{DENIED}"]\nconnect_timeout_seconds = 2\n{extra}')


@pytest.fixture(scope="module")
def pair(workdir):
    """a.test and b.test, federating by dialback."""
    port_a, port_b = free_port(), free_port()
    closed = free_port()  # nothing listens there
    routes_a = {"b.test": port_b, UNREACHABLE: closed}
    with own_server(workdir, "s2s-a", s2s_section(port_a, routes_a), ("alice", "ann"), PASSWORD, domain="a.test") as a, \
            own_server(workdir, "s2s-b", s2s_section(port_b, {"a.test": port_a}), ("bob", "bea"), PASSWORD, domain="b.test") as b:
        a.s2s_port, b.s2s_port = port_a, port_b
        yield a, b


def env_of(server) -> Env:
    return Env(Target("starling", server.endpoint, []))


async def clients(pair, a_user="alice", b_user="bob"):
    a, b = pair
    env_a, env_b = env_of(a), env_of(b)
    alice = await env_a.client(Account(a_user, PASSWORD, "a.test"), presence=True)
    bob = await env_b.client(Account(b_user, PASSWORD, "b.test"), presence=True)
    return (env_a, env_b), alice, bob


async def close(*envs):
    for env in envs:
        await env.aclose()


async def test_messages_cross_both_ways_by_dialback(pair):
    envs, alice, bob = await clients(pair)
    try:
        alice.message(bob.jid, "hello b.test")
        got = await bob.inbox.wait(is_message(frm=alice.jid, body="hello b.test"))
        assert got.get("to") == bob.jid
        bob.message(alice.bare, "hello a.test")
        await alice.inbox.wait(is_message(frm=bob.jid, body="hello a.test"))
        # Order is kept on a pair's stream.
        for n in range(20):
            alice.message(bob.jid, f"n{n}")
        for n in range(20):
            await bob.inbox.wait(is_message(frm=alice.jid, body=f"n{n}"))
        bodies = [el.findtext(tag("c", "body")) for el in bob.inbox.find(lambda e: e.tag == tag("c", "message"))]
        numbered = [body for body in bodies if body and body.startswith("n")]
        assert numbered == [f"n{n}" for n in range(20)], numbered
    finally:
        await close(*envs)
    log_b = pair[1].log_tail(400)
    assert "s2s dialback" in log_b and "Valid" in log_b, log_b


async def test_presence_subscription_and_probes_across_servers(pair):
    (env_a, env_b), ann, bea = await clients(pair, "ann", "bea")
    try:
        await env_a.subscribe_mutually(ann, bea)
        await ann.inbox.wait(is_presence(frm=bea.jid))
        await bea.inbox.wait(is_presence(frm=ann.jid))
        # A new resource of bea's learns ann is online from a probe a.test answers.
        second = await env_b.client(Account("bea", PASSWORD, "b.test"), presence=True)
        await second.inbox.wait(is_presence(frm=ann.jid), what="ann's presence, answering b.test's probe")
        # ann going offline reaches both of bea's resources.
        await ann.close()
        await second.inbox.wait(is_presence(frm=ann.jid, type_="unavailable"))
    finally:
        await close(env_a, env_b)


async def test_vcard_and_disco_of_remote_users_and_server(pair):
    envs, alice, bob = await clients(pair)
    try:
        await alice.iq_ok("<vCard xmlns='vcard-temp'><FN>Alice of A</FN></vCard>", type_="set")
        card = await bob.iq_ok("<vCard xmlns='vcard-temp'/>", to=alice.bare)
        assert card.findtext("{vcard-temp}vCard/{vcard-temp}FN") == "Alice of A", to_str(card)
        info = await bob.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="a.test")
        features = {f.get("var") for f in info.iter(tag("disco_info", "feature"))}
        assert "http://jabber.org/protocol/disco#info" in features, to_str(info)
        items = await bob.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to="a.test")
        assert "conference.a.test" in {item.get("jid") for item in items.iter(tag("disco_items", "item"))}, to_str(items)
    finally:
        await close(*envs)


async def test_a_federated_conversation_is_archived_on_both_sides(pair):
    envs, alice, bob = await clients(pair)
    try:
        alice.message(bob.bare, "archived across servers")
        await bob.inbox.wait(is_message(body="archived across servers"))
        for client, peer in ((alice, bob.bare), (bob, alice.bare)):
            query_id = f"q-{client.bare}"
            form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
                    f"<field var='with'><value>{peer}</value></field></x>")
            await client.iq_ok(f"<query xmlns='urn:xmpp:mam:2' queryid='{query_id}'>{form}</query>", type_="set")
            results = client.inbox.find(lambda e: e.find(f"{{urn:xmpp:mam:2}}result[@queryid='{query_id}']") is not None)
            bodies = [el.findtext(".//{jabber:client}body") for el in results]
            assert "archived across servers" in bodies, client.inbox.summary()
    finally:
        await close(*envs)


async def test_unreachable_and_refused_domains_bounce(pair):
    (env_a, env_b), alice, bob = await clients(pair)
    try:
        for domain, condition in ((UNREACHABLE, "remote-server-not-found"), (DENIED, "not-allowed"), ("no-dns.invalid", "remote-server-not-found")):
            alice.message(f"someone@{domain}", "anyone there?")
            error = await alice.inbox.wait(lambda e, d=domain: e.get("type") == "error" and e.get("from") == d, timeout=30)
            assert stanza_error(error)[1] == condition, to_str(error)
        # An IQ to a remote domain that is down gets its error too.
        reply = await alice.iq("<query xmlns='jabber:iq:version'/>", to=UNREACHABLE)
        assert reply.get("type") == "error" and stanza_error(reply)[1] == "remote-server-not-found", to_str(reply)
        # A good domain still works after those failures.
        alice.message(bob.jid, "still federating")
        await bob.inbox.wait(is_message(body="still federating"))
    finally:
        await close(env_a, env_b)


# -- bad input from a hand-driven remote server ------------------------------------------------------

def s2s_header(frm: str, to: str) -> str:
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
            f"xmlns:db='jabber:server:dialback' from='{frm}' to='{to}' version='1.0'>")


async def s2s_raw(server, frm: str, to: str) -> RawStream:
    raw = await RawStream.open(Endpoint("127.0.0.1", server.s2s_port, server.s2s_port, to))
    raw.send(s2s_header(frm, to))
    await raw.next(tag("stream", "features"))
    return raw


def no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_a_stream_naming_a_domain_not_served_ends_with_host_unknown(pair):
    a, _ = pair
    raw = await RawStream.open(Endpoint("127.0.0.1", a.s2s_port, a.s2s_port, "a.test"))
    try:
        raw.send(s2s_header("b.test", "elsewhere.test"))
        assert await raw.stream_error() == "host-unknown"
    finally:
        await raw.close()


async def test_stanzas_before_authentication_and_a_wrong_dialback_key_are_refused(pair):
    a, _ = pair
    raw = await s2s_raw(a, "b.test", "a.test")
    try:
        await raw.starttls(no_verify(), s2s_header("b.test", "a.test"))
        # b.test's real server (the authoritative one) says this key is not its.
        raw.send("<db:result from='b.test' to='a.test'>00112233445566778899aabbccddeeff</db:result>")
        verdict = await raw.next("{jabber:server:dialback}result", timeout=20)
        assert verdict.get("type") == "invalid", to_str(verdict)
        raw.send("<message from='mallory@b.test' to='alice@a.test' type='chat'><body>unauthenticated</body></message>")
        assert await raw.stream_error() == "not-authorized"
    finally:
        await raw.close()
    before_tls = await s2s_raw(a, "b.test", "a.test")
    try:
        before_tls.send("<message from='mallory@b.test' to='alice@a.test'><body>plain</body></message>")
        assert await before_tls.stream_error() == "policy-violation"  # TLS first
    finally:
        await before_tls.close()


async def test_dialback_requests_that_cannot_be_honest_are_refused_per_pair_or_end_the_stream(pair):
    """A key for one of a.test's own domains is refused for that pair (`forbidden`), not checked,
    and the stream goes on; a `from` that is an address literal (which would choose what we
    connect to) ends it with `improper-addressing`."""
    a, _ = pair
    raw = await s2s_raw(a, "b.test", "a.test")
    try:
        await raw.starttls(no_verify(), s2s_header("b.test", "a.test"))
        raw.send("<db:result from='conference.a.test' to='a.test'>00112233</db:result>")
        refused = await raw.next("{jabber:server:dialback}result")
        assert refused.get("type") == "error" and refused.find(f"{{jabber:server}}error/{{{NS['stanzas']}}}forbidden") is not None, to_str(refused)
        raw.send("<db:result from='127.0.0.1' to='a.test'>00112233</db:result>")
        assert await raw.stream_error() == "improper-addressing"
    finally:
        await raw.close()


@pytest.fixture(scope="module")
def certified(workdir):
    """c.test and d.test with certificates from a CA they trust, and dialback off."""
    directory = workdir / "s2s-ca"
    ca = make_ca(directory, ("c.test", "d.test", "evil.test"))
    port_c, port_d = free_port(), free_port()

    def tls(domain: str) -> str:
        return f'cert_file = "{directory / (domain + ".crt")}"\nkey_file = "{directory / (domain + ".key")}"'

    extra = f'dialback = false\nca_file = "{ca}"\n'
    with own_server(workdir, "s2s-c", s2s_section(port_c, {"d.test": port_d}, extra), ("carl",), PASSWORD, domain="c.test", tls=tls("c.test")) as c, \
            own_server(workdir, "s2s-d", s2s_section(port_d, {"c.test": port_c}, extra), ("dora",), PASSWORD, domain="d.test", tls=tls("d.test")) as d:
        c.s2s_port, d.s2s_port = port_c, port_d
        yield c, d, directory


async def test_certificates_that_verify_authenticate_by_sasl_external(certified):
    c, d, _ = certified
    env_c, env_d = env_of(c), env_of(d)
    try:
        carl = await env_c.client(Account("carl", PASSWORD, "c.test"), presence=True)
        dora = await env_d.client(Account("dora", PASSWORD, "d.test"), presence=True)
        carl.message(dora.jid, "over SASL EXTERNAL")
        await dora.inbox.wait(is_message(frm=carl.jid, body="over SASL EXTERNAL"))
        dora.message(carl.jid, "and back")
        await carl.inbox.wait(is_message(frm=dora.jid, body="and back"))
    finally:
        await close(env_c, env_d)


async def test_a_stanza_from_outside_the_authenticated_domain_ends_the_stream_invalid_from(certified):
    """evil.test proves its name with a certificate (SASL EXTERNAL), then tries to speak for
    d.test: its own stanza is delivered, the spoofed one ends the stream with `invalid-from`."""
    c, _, directory = certified
    env_c = env_of(c)
    carl = await env_c.client(Account("carl", PASSWORD, "c.test"), presence=True)
    raw = await s2s_raw(c, "evil.test", "c.test")
    try:
        context = no_verify()
        context.load_cert_chain(directory / "evil.test.crt", directory / "evil.test.key")
        features = await raw.starttls(context, s2s_header("evil.test", "c.test"))
        mechanisms = [m.text for m in features.iter(f"{{{NS['sasl']}}}mechanism")]
        assert mechanisms == ["EXTERNAL"], to_str(features)
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{base64.b64encode(b'evil.test').decode()}</auth>")
        await raw.next(tag("sasl", "success"))
        raw._reset_parser()
        raw.send(s2s_header("evil.test", "c.test"))
        await raw.next(tag("stream", "features"))
        raw.send(f"<message from='mallory@evil.test/x' to='{carl.jid}' type='chat'><body>from evil, honestly</body></message>")
        await carl.inbox.wait(is_message(frm="mallory@evil.test/x", body="from evil, honestly"))
        raw.send(f"<message from='dora@d.test/x' to='{carl.jid}' type='chat'><body>spoofed</body></message>")
        assert await raw.stream_error() == "invalid-from"
        await asyncio.sleep(0.5)
        assert not carl.inbox.find(is_message(body="spoofed"))
    finally:
        await raw.close()
        await env_c.aclose()
