"""XEP-0347 Internet of Things — Discovery, the Thing Registry at registry.DOMAIN, on a server of
its own (small limits): finding it by disco; a Thing registers, its owner claims it with exactly
its tags (the Thing is told, and a new registration is answered with its owner); searches find
claimed public Things and never show or match KEY; updates; remove (the Thing is told), disown
(asked of the Thing first: answered → unclaimed with a fresh KEY, refused or offline →
not-allowed), unregister; and the bad input: wrong or missing tags, someone else's Thing, malformed
or too many tags, past the per-account limit. Things answer the registry's requests through
slixmpp handlers, as a device's client would. Smack's IoTDiscoveryIntegrationTest runs in
tests/sint."""

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from conftest import PASSWORD, own_server
from harness import NS, Account, Env, Target, stanza_error, tag, to_str

pytestmark = pytest.mark.starling_only

IOT = "urn:xmpp:iot:discovery"
P = {**NS, "iot": IOT}
REGISTRY = "registry.localhost"
SECTIONS = "[iot]\nmax_things_per_account = 3\nmax_tags = 8\ndisown_timeout_seconds = 2\n"
TAGS = "<str name='SN' value='394872348732948723'/><str name='MAN' value='www.ktc.se'/><str name='MODEL' value='IMC'/><num name='V' value='1.2'/>"


def tags(key: str) -> str:
    return TAGS + f"<str name='KEY' value='{key}'/>"


@pytest.fixture(scope="module")
def iot(workdir):
    with own_server(workdir, "iot", SECTIONS, ("lamp", "meter", "owner", "other"), PASSWORD) as server:
        yield server


def answers_registry(client, answer: bool = True) -> list:
    """Makes `client` a Thing that answers (or refuses) the registry's claimed/removed/disowned;
    returns the list they are recorded in."""
    received = []

    def handle(iq):
        if iq["type"] != "set":  # a result that carries one (a registration's <claimed/>)
            return
        received.append(iq["id"])
        if answer:
            iq.reply().send()
        else:
            client.send(f"<iq type='error' id='{iq['id']}' to='{iq['from']}'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")

    for name in ("claimed", "removed", "disowned"):
        client.x.register_handler(Callback(f"iot {name}", MatchXPath(f"{{jabber:client}}iq/{{{IOT}}}{name}"), handle))
    return received


async def request(client, payload: str, type_: str = "set"):
    return await client.iq(payload, type_, to=REGISTRY)


async def test_discovered_registered_claimed_searched_updated_and_disowned(iot):
    env = Env(Target("starling", iot.endpoint, []))
    lamp = await env.client(Account("lamp", PASSWORD, "localhost"))
    owner = await env.client(Account("owner", PASSWORD, "localhost"))
    other = await env.client(Account("other", PASSWORD, "localhost"))
    told = answers_registry(lamp)

    items = await owner.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to="localhost")
    assert REGISTRY in {item.get("jid") for item in items.iter(tag("disco_items", "item"))}, to_str(items)
    info = await owner.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=REGISTRY)
    assert IOT in {feature.get("var") for feature in info.iter("{http://jabber.org/protocol/disco#info}feature")}, to_str(info)

    # Registered (Smack sends its requests as type get: taken too), then claimed.
    registered = await request(lamp, f"<register xmlns='{IOT}'>{tags('k-1')}</register>", "get")
    assert registered.get("type") == "result" and len(registered) == 0, to_str(registered)
    wrong = await request(owner, f"<mine xmlns='{IOT}'>{tags('guess')}</mine>")
    assert stanza_error(wrong)[1] == "item-not-found", to_str(wrong)
    partial = await request(owner, f"<mine xmlns='{IOT}'><str name='KEY' value='k-1'/></mine>")
    assert stanza_error(partial)[1] == "item-not-found", to_str(partial)
    mine = await request(owner, f"<mine xmlns='{IOT}'><str name='key' value='k-1'/>{TAGS}</mine>")
    assert mine.find("iot:claimed", P).get("jid") == "lamp@localhost", to_str(mine)
    told_claimed = await lamp.inbox.wait(lambda el: el.find("iot:claimed", P) is not None)
    assert (told_claimed.get("from"), told_claimed.find("iot:claimed", P).get("jid")) == (REGISTRY, "owner@localhost"), to_str(told_claimed)
    again = await request(lamp, f"<register xmlns='{IOT}'>{tags('k-1')}</register>")
    assert again.find("iot:claimed", P).get("jid") == "owner@localhost", to_str(again)

    # Searches: claimed public Things, never KEY.
    found = await request(other, f"<search xmlns='{IOT}' offset='0' maxCount='10'><strEq name='MAN' value='www.ktc.se'/><numGtEq name='V' value='1'/></search>", "get")
    things = found.findall("iot:found/iot:thing", P)
    assert [(t.get("jid"), t.get("owner")) for t in things] == [("lamp@localhost", "owner@localhost")], to_str(found)
    assert "KEY" not in {t.get("name") for t in things[0]}, to_str(found)
    by_key = await request(other, f"<search xmlns='{IOT}'><strEq name='KEY' value='k-1'/></search>", "get")
    assert by_key.find("iot:found", P) is not None and not by_key.findall("iot:found/iot:thing", P), to_str(by_key)
    masked = await request(other, f"<search xmlns='{IOT}'><strMask name='SN' value='3948*' wildcard='*'/></search>", "get")
    assert len(masked.findall("iot:found/iot:thing", P)) == 1, to_str(masked)

    # Updates: by the Thing (KEY emptied, a tag added), by someone else refused.
    updated = await request(lamp, f"<update xmlns='{IOT}'><str name='KEY' value=''/><num name='LAT' value='59.3'/></update>")
    assert updated.get("type") == "result", to_str(updated)
    found = await request(other, f"<search xmlns='{IOT}'><numRange name='LAT' min='59' max='60'/></search>", "get")
    assert len(found.findall("iot:found/iot:thing", P)) == 1, to_str(found)
    for refused in (f"<update xmlns='{IOT}' jid='lamp@localhost'><str name='NAME' value='x'/></update>",
                    f"<remove xmlns='{IOT}' jid='lamp@localhost'/>", f"<disown xmlns='{IOT}' jid='lamp@localhost'/>"):
        answer = await request(other, refused)
        assert stanza_error(answer)[1] == "item-not-found", to_str(answer)

    # Disowned: the Thing is asked first, then it is unclaimed with a KEY nobody knows.
    disowned = await request(owner, f"<disown xmlns='{IOT}' jid='lamp@localhost'/>")
    assert disowned.get("type") == "result", to_str(disowned)
    assert len(told) == 2, told
    reclaim = await request(owner, f"<mine xmlns='{IOT}'>{TAGS}<num name='LAT' value='59.3'/></mine>")
    assert stanza_error(reclaim)[1] == "item-not-found", to_str(reclaim)
    found = await request(other, f"<search xmlns='{IOT}'><strEq name='MAN' value='www.ktc.se'/></search>", "get")
    assert not found.findall("iot:found/iot:thing", P), to_str(found)
    stale = await request(lamp, f"<update xmlns='{IOT}'><str name='NAME' value='x'/></update>")
    assert stale.find("iot:disowned", P) is not None, to_str(stale)

    # Registered again, claimed, removed by its owner: the Thing is told; then it unregisters.
    assert (await request(lamp, f"<register xmlns='{IOT}'>{tags('k-2')}</register>")).get("type") == "result"
    assert (await request(owner, f"<mine xmlns='{IOT}' public='false'>{tags('k-2')}</mine>")).find("iot:claimed", P) is not None
    found = await request(other, f"<search xmlns='{IOT}'><strEq name='MODEL' value='IMC'/></search>", "get")
    assert not found.findall("iot:found/iot:thing", P), f"a private Thing was found: {to_str(found)}"
    removed = await request(owner, f"<remove xmlns='{IOT}' jid='lamp@localhost'/>")
    assert removed.get("type") == "result", to_str(removed)
    await lamp.inbox.wait(lambda el: el.find("iot:removed", P) is not None)
    assert (await request(lamp, f"<unregister xmlns='{IOT}'/>")).get("type") == "result", "always answered"


async def test_a_disown_the_thing_refuses_or_cannot_hear_is_not_allowed(iot):
    env = Env(Target("starling", iot.endpoint, []))
    meter = await env.client(Account("meter", PASSWORD, "localhost"), resource="m1")
    owner = await env.client(Account("owner", PASSWORD, "localhost"), resource="o2")
    answers_registry(meter, answer=False)
    node = "nodeId='n1' sourceId='MeteringTopology'"
    assert (await request(meter, f"<register xmlns='{IOT}' {node}>{tags('m-1')}</register>")).get("type") == "result"
    claimed = await request(owner, f"<mine xmlns='{IOT}'>{tags('m-1')}</mine>")
    assert (claimed.find("iot:claimed", P).get("nodeId"), claimed.find("iot:claimed", P).get("sourceId")) == ("n1", "MeteringTopology"), to_str(claimed)
    refused = await request(owner, f"<disown xmlns='{IOT}' jid='meter@localhost' {node}/>")
    assert stanza_error(refused)[1] == "not-allowed", to_str(refused)
    await meter.close()
    offline = await request(owner, f"<disown xmlns='{IOT}' jid='meter@localhost' {node}/>")
    assert stanza_error(offline)[1] == "not-allowed", to_str(offline)
    # Still the owner's: a removal works.
    assert (await request(owner, f"<remove xmlns='{IOT}' jid='meter@localhost' {node}/>")).get("type") == "result"


async def test_bad_registrations_get_the_right_errors(iot):
    env = Env(Target("starling", iot.endpoint, []))
    other = await env.client(Account("other", PASSWORD, "localhost"), resource="bad")
    nine = "".join(f"<str name='T{n}' value='x'/>" for n in range(9))
    cases = {
        f"<register xmlns='{IOT}'><str name='SN' value='1'/><str name='sn' value='2'/></register>": "bad-request",
        f"<register xmlns='{IOT}'><str name='{'N' * 33}' value='1'/></register>": "bad-request",
        f"<register xmlns='{IOT}'><num name='V' value='version one'/></register>": "bad-request",
        f"<register xmlns='{IOT}'>{nine}</register>": "not-acceptable",
        f"<search xmlns='{IOT}'/>": "bad-request",
        f"<frobnicate xmlns='{IOT}'/>": "feature-not-implemented",
    }
    for payload, condition in cases.items():
        answer = await request(other, payload)
        assert stanza_error(answer)[1] == condition, f"{payload}: {to_str(answer)}"
    # At most 3 Things per account (a concentrator registers one per node).
    for n in range(3):
        assert (await request(other, f"<register xmlns='{IOT}' nodeId='n{n}'><str name='SN' value='{n}'/></register>")).get("type") == "result"
    over = await request(other, f"<register xmlns='{IOT}' nodeId='n3'><str name='SN' value='3'/></register>")
    assert stanza_error(over)[1] == "resource-constraint", to_str(over)
    assert (await request(other, f"<register xmlns='{IOT}' nodeId='n2'><str name='SN' value='two'/></register>")).get("type") == "result", "re-registering is no new Thing"
    version = await other.iq("<query xmlns='jabber:iq:version'/>", to=REGISTRY)
    assert stanza_error(version)[1] == "service-unavailable", to_str(version)
