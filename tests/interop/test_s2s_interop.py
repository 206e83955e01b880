"""Federation with another implementation: Starling (`starling.test`) with Prosody 0.12
(`prosody.test`), the Debian package, each on its own loopback address (federation_peers.py).
Both ways, with slixmpp clients on each server: chat, presence subscription and probes, vCard and
disco of remote users and servers, the archive of the federated conversation on both sides, and
rooms — ours joined from theirs, theirs from ours. Certificates are self-signed, so every stream
is authenticated by dialback."""

import pytest

from conftest import PASSWORD, own_server
from federation_peers import ADDRESSES, S2S_PORT, prosody
from harness import Account, Endpoint, Env, Target, free_port, is_message, is_presence, tag, to_str

pytestmark = pytest.mark.starling_only

PEERS = ("prosody.test",)
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"


@pytest.fixture(scope="module")
def servers(workdir):
    """Starling and both peers, federating; yields {domain: Endpoint}."""
    ip = ADDRESSES["starling.test"]
    routes = ", ".join(f'"{name}" = "{ADDRESSES[domain]}:{S2S_PORT}"' for domain in PEERS for name in (domain, f"conference.{domain}"))
    sections = f'[s2s]\nenabled = true\nlisten = ["{ip}:{S2S_PORT}"]\ndialback_secret = "interop-secret"\nhosts = {{ {routes} }}\n'
    ports = {domain: free_port(ADDRESSES[domain]) for domain in PEERS}
    users = {"pat": PASSWORD, "quinn": PASSWORD}
    with own_server(workdir, "s2s-interop", sections, ("sam", "sky"), PASSWORD, domain="starling.test", ip=ip) as starling, \
            prosody(workdir / "prosody", ports["prosody.test"], users):
        endpoints = {domain: Endpoint(ADDRESSES[domain], port, port, domain) for domain, port in ports.items()}
        endpoints["starling.test"] = starling.endpoint
        yield endpoints


async def connect(servers, domain: str, user: str, resource: str = "auto"):
    env = Env(Target(domain, servers[domain], []))
    client = await env.client(Account(user, PASSWORD, domain), resource, presence=True)
    return env, client


@pytest.fixture(params=PEERS)
def peer(request):
    return request.param


async def test_chat_both_ways(servers, peer):
    env_s, sam = await connect(servers, "starling.test", "sam")
    env_p, pat = await connect(servers, peer, "pat")
    try:
        sam.message(pat.jid, f"hello {peer}")
        await pat.inbox.wait(is_message(frm=sam.jid, body=f"hello {peer}"), timeout=30)
        pat.message(sam.bare, "hello starling")
        await sam.inbox.wait(is_message(frm=pat.jid, body="hello starling"), timeout=30)
    finally:
        await env_s.aclose()
        await env_p.aclose()


async def test_subscription_probe_vcard_disco_and_archive(servers, peer):
    env_s, sky = await connect(servers, "starling.test", "sky")
    env_p, quinn = await connect(servers, peer, "quinn")
    try:
        await env_s.subscribe_mutually(sky, quinn)
        await sky.inbox.wait(is_presence(frm=quinn.jid), timeout=30)
        # A second resource of sky's gets quinn's presence from the probe the peer answers.
        env_s2, sky2 = await connect(servers, "starling.test", "sky", "second")
        await sky2.inbox.wait(is_presence(frm=quinn.jid), timeout=30, what=f"{peer} answers our probe")
        await env_s2.aclose()
        # vCards across, both ways.
        await sky.iq_ok("<vCard xmlns='vcard-temp'><FN>Sky at Starling</FN></vCard>", type_="set")
        await quinn.iq_ok(f"<vCard xmlns='vcard-temp'><FN>Quinn at {peer}</FN></vCard>", type_="set")
        card = await quinn.iq_ok("<vCard xmlns='vcard-temp'/>", to=sky.bare)
        assert card.findtext("{vcard-temp}vCard/{vcard-temp}FN") == "Sky at Starling", to_str(card)
        card = await sky.iq_ok("<vCard xmlns='vcard-temp'/>", to=quinn.bare)
        assert card.findtext("{vcard-temp}vCard/{vcard-temp}FN") == f"Quinn at {peer}", to_str(card)
        # Disco of the other server, both ways.
        for client, server in ((sky, peer), (quinn, "starling.test")):
            info = await client.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=server)
            assert any(identity.get("category") == "server" for identity in info.iter(tag("disco_info", "identity"))), to_str(info)
        # The federated conversation is in both archives.
        sky.message(quinn.bare, "for the archives")
        await quinn.inbox.wait(is_message(body="for the archives"), timeout=30)
        for client, other in ((sky, quinn.bare), (quinn, sky.bare)):
            query_id = f"q{abs(hash(client.jid))}"
            form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
                    f"<field var='with'><value>{other}</value></field></x>")
            await client.iq_ok(f"<query xmlns='urn:xmpp:mam:2' queryid='{query_id}'>{form}</query>", type_="set")
            results = client.inbox.find(lambda e, q=query_id: e.find(f"{{urn:xmpp:mam:2}}result[@queryid='{q}']") is not None)
            bodies = [el.findtext(".//{jabber:client}body") for el in results]
            assert "for the archives" in bodies, f"{client.jid}: {client.inbox.summary()}"
    finally:
        await env_s.aclose()
        await env_p.aclose()


async def join(client, room: str, nick: str):
    client.presence(to=f"{room}/{nick}", extra=f"<x xmlns='{MUC}'/>")
    own = await client.inbox.wait(
        lambda e: e.tag == tag("c", "presence") and e.get("from") == f"{room}/{nick}"
        and any(s.get("code") == "110" for s in e.iter(f"{{{MUC_USER}}}status")), timeout=30, what=f"joined {room}")
    if any(s.get("code") == "201" for s in own.iter(f"{{{MUC_USER}}}status")):
        # A new room stays locked until its owner configures it: the defaults (instant room).
        await client.iq_ok("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
                           type_="set", to=room)


async def test_rooms_joined_across_servers_both_ways(servers, peer):
    env_s, sam = await connect(servers, "starling.test", "sam")
    env_p, pat = await connect(servers, peer, "pat")
    try:
        for owner, guest, service in ((sam, pat, "conference.starling.test"), (pat, sam, f"conference.{peer}")):
            room = f"fed-{peer.split('.')[0]}@{service}"
            await join(owner, room, "owner")
            await join(guest, room, "guest")
            await owner.inbox.wait(lambda e, r=room: e.tag == tag("c", "presence") and e.get("from") == f"{r}/guest", timeout=30)
            guest.send(f"<message to='{room}' type='groupchat'><body>hi from the guest</body></message>")
            await owner.inbox.wait(is_message(frm=f"{room}/guest", body="hi from the guest", type_="groupchat"), timeout=30)
            owner.send(f"<message to='{room}' type='groupchat'><body>welcome</body></message>")
            await guest.inbox.wait(is_message(frm=f"{room}/owner", body="welcome", type_="groupchat"), timeout=30)
    finally:
        await env_s.aclose()
        await env_p.aclose()
