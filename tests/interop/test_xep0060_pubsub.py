"""XEP-0060 Publish-Subscribe, the service at pubsub.DOMAIN: driven through slixmpp's own xep_0060
plugin (a real client implementation) where it has a call for the step, and raw XML for the
errors, so the wire shows exactly what the XEP's examples show. Explicit subscriptions, the
access models (open, presence, whitelist, authorize with the approval form), affiliations,
owners' requests, notifications, the last item on subscription, and the limits the interop
server is configured with ([pubsub] in conftest.py)."""

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from harness import NS, to_str

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = "http://jabber.org/protocol/pubsub#owner"
EVENT = "http://jabber.org/protocol/pubsub#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
P = {**NS, "ps": PUBSUB, "ev": EVENT, "o": OWNER, "x": "jabber:x:data"}
PLUGINS = ["xep_0030", "xep_0004", "xep_0060"]

pytestmark = pytest.mark.starling_only


def service(client) -> str:
    return "pubsub." + client.bare.split("@")[1]


def entry(text: str) -> ET.Element:
    element = ET.Element("{http://www.w3.org/2005/Atom}entry")
    ET.SubElement(element, "{http://www.w3.org/2005/Atom}title").text = text
    return element


def events(client, node: str, kind: str = "items"):
    return client.inbox.find(lambda e: e.tag == "{jabber:client}message" and e.find(f"ev:event/ev:{kind}[@node='{node}']", P) is not None)


def published_ids(client, node: str) -> list[str]:
    return [i.get("id") for m in events(client, node) for i in m.findall("ev:event/ev:items/ev:item", P)]


def conditions(reply) -> tuple[str, str]:
    error = reply.find("c:error", P)
    assert error is not None, to_str(reply)
    stanza = next((c.tag.split("}")[1] for c in error if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith("text")), "")
    app = next((c.tag.split("}")[1] for c in error if c.tag.startswith("{" + ERRORS)), "")
    return stanza, app


def condition_of(error: IqError) -> str:
    return error.iq["error"]["condition"]


async def wait_for(condition, what: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


def config_form(client, **fields: str):
    form = client.x.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config")
    for var, value in fields.items():
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


async def create(client, node: str, **config: str) -> None:
    await client.x.plugin["xep_0060"].create_node(service(client), node, config=config_form(client, **config) if config else None)


async def test_the_service_is_discovered_and_lists_its_nodes(env):
    alice = await env.online(plugins=PLUGINS)
    disco = alice.x.plugin["xep_0030"]
    items = await disco.get_items(jid=alice.bare.split("@")[1])
    assert service(alice) in {item[0] for item in items["disco_items"]["items"]}, items
    info = await disco.get_info(jid=service(alice))
    assert ("pubsub", "service") in {(i[0], i[1]) for i in info["disco_info"]["identities"]}, info
    assert {"http://jabber.org/protocol/pubsub#subscribe", "http://jabber.org/protocol/pubsub#access-authorize"} <= set(info["disco_info"]["features"])
    node = f"news-{alice.bare.split('@')[0]}"
    await create(alice, node, title="Village news")
    listed = await disco.get_items(jid=service(alice))
    assert (service(alice), node, "Village news") in set(listed["disco_items"]["items"]), listed
    meta = await disco.get_info(jid=service(alice), node=node)
    assert ("pubsub", "leaf") in {(i[0], i[1]) for i in meta["disco_info"]["identities"]}, meta
    # An instant node (§8.1.2): the service picks the id.
    instant = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><create/></pubsub>", "set", service(alice))
    assert instant.find("ps:pubsub/ps:create", P).get("node"), to_str(instant)


async def test_subscribers_get_publications_and_the_last_item(env):
    alice, bob, carol = await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS)
    pubsub = lambda c: c.x.plugin["xep_0060"]  # noqa: E731
    node = f"musings-{alice.bare.split('@')[0]}"
    await create(alice, node)
    subscribed = await pubsub(bob).subscribe(service(bob), node)
    assert subscribed["pubsub"]["subscription"]["subscription"] == "subscribed", subscribed
    published = await pubsub(alice).publish(service(alice), node, id="first", payload=entry("Soliloquy"))
    assert published["pubsub"]["publish"]["item"]["id"] == "first"
    await wait_for(lambda: published_ids(bob, node) == ["first"], "bob got no notification")
    notification = events(bob, node)[0]
    assert notification.get("from") == service(bob), to_str(notification)
    assert notification.find("ev:event/ev:items/ev:item/{http://www.w3.org/2005/Atom}entry", P) is not None, to_str(notification)
    # Carol subscribes later: the last item comes with it (send_last_published_item on_sub).
    await pubsub(carol).subscribe(service(carol), node)
    await wait_for(lambda: published_ids(carol, node) == ["first"], "carol did not get the last item on subscribing")
    items = await pubsub(carol).get_items(service(carol), node)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["first"], items
    subscriptions = await pubsub(bob).get_subscriptions(service(bob))
    assert [(s["node"], s["subscription"]) for s in subscriptions["pubsub"]["subscriptions"]] == [(node, "subscribed")], subscriptions
    # Unsubscribed, bob gets nothing more; carol gets the retraction too.
    await pubsub(bob).unsubscribe(service(bob), node)
    await pubsub(alice).publish(service(alice), node, id="second", payload=entry("Second thoughts"))
    await wait_for(lambda: "second" in published_ids(carol, node), "carol missed the second item")
    await pubsub(alice).retract(service(alice), node, "second", notify=True)
    await wait_for(lambda: carol.inbox.find(lambda e: e.find("ev:event/ev:items/ev:retract[@id='second']", P) is not None), "no retraction")
    await asyncio.sleep(0.3)
    assert published_ids(bob, node) == ["first"], "bob unsubscribed"
    not_subscribed = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><unsubscribe node='{node}' jid='{bob.bare}'/></pubsub>", "set", service(bob))
    assert conditions(not_subscribed) == ("unexpected-request", "not-subscribed"), to_str(not_subscribed)


async def test_owners_configure_purge_delete_and_manage_affiliations(env):
    alice, bob = await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS)
    pubsub = lambda c: c.x.plugin["xep_0060"]  # noqa: E731
    node = f"ledger-{alice.bare.split('@')[0]}"
    await create(alice, node, max_items="2")
    config = await pubsub(alice).get_node_config(service(alice), node)
    assert config["pubsub_owner"]["configure"]["form"].get_values()["pubsub#max_items"] == "2"
    await pubsub(alice).set_node_config(service(alice), node, config_form(alice, title="Ledger", max_items="3"))
    config = await pubsub(alice).get_node_config(service(alice), node)
    assert config["pubsub_owner"]["configure"]["form"].get_values()["pubsub#title"] == "Ledger"
    # Bob may not publish until he is a publisher.
    with pytest.raises(IqError) as refused:
        await pubsub(bob).publish(service(bob), node, id="b1", payload=entry("mine"))
    assert condition_of(refused.value) == "forbidden"
    await pubsub(alice).modify_affiliations(service(alice), node, [(bob.bare, "publisher")])
    affiliations = await pubsub(alice).get_node_affiliations(service(alice), node)
    assert {(a["jid"].bare, a["affiliation"]) for a in affiliations["pubsub_owner"]["affiliations"]} == {(alice.bare, "owner"), (bob.bare, "publisher")}
    await pubsub(bob).subscribe(service(bob), node)
    for n in range(4):
        await pubsub(bob).publish(service(bob), node, id=f"b{n}", payload=entry(f"entry {n}"))
    items = await pubsub(alice).get_items(service(alice), node)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["b3", "b2", "b1"], "max_items 3 keeps the newest three"
    mine = await pubsub(bob).get_affiliations(service(bob), node)
    assert [(a["node"], a["affiliation"]) for a in mine["pubsub"]["affiliations"]] == [(node, "publisher")], mine
    subscribers = await pubsub(alice).get_node_subscriptions(service(alice), node)
    assert [(s["jid"].bare, s["subscription"]) for s in subscribers["pubsub_owner"]["subscriptions"]] == [(bob.bare, "subscribed")]
    # Bob is not an owner: no purge, no delete, no configuration.
    not_owner = await bob.iq(f"<pubsub xmlns='{OWNER}'><delete node='{node}'/></pubsub>", "set", service(bob))
    assert conditions(not_owner)[0] == "forbidden", to_str(not_owner)
    await pubsub(alice).purge(service(alice), node)
    await wait_for(lambda: events(bob, node, "purge"), "no purge notification")
    assert (await pubsub(alice).get_items(service(alice), node))["pubsub"]["items"]["substanzas"] == []
    # The last owner stays an owner.
    last_owner = await alice.iq(f"<pubsub xmlns='{OWNER}'><affiliations node='{node}'><affiliation jid='{alice.bare}' affiliation='none'/></affiliations></pubsub>",
                                "set", service(alice))
    assert conditions(last_owner)[0] == "not-acceptable", to_str(last_owner)
    await pubsub(alice).delete_node(service(alice), node)
    await wait_for(lambda: events(bob, node, "delete"), "no delete notification")
    gone = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>", "get", service(bob))
    assert conditions(gone)[0] == "item-not-found", to_str(gone)


async def test_access_models_whitelist_presence_and_authorize(env):
    alice, bob, carol = await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS)
    pubsub = lambda c: c.x.plugin["xep_0060"]  # noqa: E731
    who = alice.bare.split("@")[0]
    # Whitelist: closed until the owner makes bob a member; an outcast is shut out.
    await create(alice, f"council-{who}", access_model="whitelist")
    closed = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><subscribe node='council-{who}' jid='{bob.bare}'/></pubsub>", "set", service(bob))
    assert conditions(closed) == ("not-allowed", "closed-node"), to_str(closed)
    await pubsub(alice).modify_affiliations(service(alice), f"council-{who}", [(bob.bare, "member"), (carol.bare, "outcast")])
    await pubsub(bob).subscribe(service(bob), f"council-{who}")
    outcast = await carol.iq(f"<pubsub xmlns='{PUBSUB}'><items node='council-{who}'/></pubsub>", "get", service(carol))
    assert conditions(outcast)[0] == "forbidden", to_str(outcast)
    # Presence: only those with a subscription to an owner's presence.
    await create(alice, f"diary-{who}", access_model="presence")
    stranger = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='diary-{who}'/></pubsub>", "get", service(bob))
    assert conditions(stranger) == ("not-authorized", "presence-subscription-required"), to_str(stranger)
    await env.subscribe_mutually(alice, bob)
    await pubsub(bob).subscribe(service(bob), f"diary-{who}")
    # Authorize: pending until an owner approves through the form the service sends.
    await create(alice, f"salon-{who}", access_model="authorize")
    asked = await carol.iq(f"<pubsub xmlns='{PUBSUB}'><subscribe node='salon-{who}' jid='{carol.bare}'/></pubsub>", "set", service(carol))
    assert asked.find("ps:pubsub/ps:subscription", P).get("subscription") == "pending", to_str(asked)
    form = await alice.inbox.wait(lambda e: e.tag == "{jabber:client}message" and e.find("x:x/x:field[@var='pubsub#subscriber_jid']", P) is not None,
                                  what="the approval form")
    values = {f.get("var"): f.findtext("x:value", namespaces=P) for f in form.findall("x:x/x:field", P)}
    assert values["pubsub#node"] == f"salon-{who}" and values["pubsub#subscriber_jid"] == carol.bare, to_str(form)
    fields = "".join(f"<field var='{var}'><value>{value}</value></field>" for var, value in
                     {**values, "FORM_TYPE": "http://jabber.org/protocol/pubsub#subscribe_authorization", "pubsub#allow": "true"}.items())
    alice.send(f"<message to='{service(alice)}'><x xmlns='jabber:x:data' type='submit'>{fields}</x></message>")
    approved = await carol.inbox.wait(lambda e: e.find(f"ev:event/ev:subscription[@node='salon-{who}']", P) is not None, what="approval notification")
    assert approved.find("ev:event/ev:subscription", P).get("subscription") == "subscribed", to_str(approved)
    await pubsub(alice).publish(service(alice), f"salon-{who}", id="s1", payload=entry("Welcome"))
    await wait_for(lambda: published_ids(carol, f"salon-{who}") == ["s1"], "the approved subscriber got nothing")


async def test_bad_requests_get_the_xeps_errors_and_lose_nothing(env):
    alice, bob = await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS)
    pubsub = lambda c: c.x.plugin["xep_0060"]  # noqa: E731
    odd = "a node/with spaces & ünïcode <ok>"
    await create(alice, odd)
    await pubsub(alice).publish(service(alice), odd, id="kept", payload=entry("kept"))
    escaped = odd.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    again = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><create node='{escaped}'/></pubsub>", "set", service(alice))
    assert conditions(again)[0] == "conflict", to_str(again)
    other_jid = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><subscribe node='{escaped}' jid='{alice.bare}'/></pubsub>", "set", service(bob))
    assert conditions(other_jid) == ("bad-request", "invalid-jid"), to_str(other_jid)
    big = "x" * 5000  # above [pubsub] max_payload_bytes = 4096
    too_big = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{escaped}'><item id='big'><blob xmlns='urn:example'>{big}</blob></item></publish></pubsub>",
                             "set", service(alice))
    assert conditions(too_big) == ("not-acceptable", "payload-too-big"), to_str(too_big)
    options = ("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
               "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
               "<field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>")
    mismatch = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{escaped}'><item id='p'><blob xmlns='urn:example'/></item></publish>{options}</pubsub>",
                              "set", service(alice))
    assert conditions(mismatch) == ("conflict", "precondition-not-met"), to_str(mismatch)
    no_item = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{escaped}'><item id='e'/></publish></pubsub>", "set", service(alice))
    assert conditions(no_item) == ("bad-request", "payload-required"), to_str(no_item)
    no_item_at_all = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='{escaped}'/></pubsub>", "set", service(alice))
    assert conditions(no_item_at_all) == ("bad-request", "item-required"), to_str(no_item_at_all)
    # A transient notification-only node takes no item (§7.1.3.6), and tells subscribers all the same.
    await create(alice, f"pings-{bob.bare}", persist_items="0", deliver_payloads="0")
    await bob.x.plugin["xep_0060"].subscribe(service(bob), f"pings-{bob.bare}")
    forbidden = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='pings-{bob.bare}'><item id='i'><blob xmlns='urn:example'/></item></publish></pubsub>",
                               "set", service(alice))
    assert conditions(forbidden) == ("bad-request", "item-forbidden"), to_str(forbidden)
    await alice.iq_ok(f"<pubsub xmlns='{PUBSUB}'><publish node='pings-{bob.bare}'/></pubsub>", "set", service(alice))
    await wait_for(lambda: len(published_ids(bob, f"pings-{bob.bare}")) == 1, "no notification from the notification-only node")
    bad_config = await alice.iq(f"<pubsub xmlns='{OWNER}'><configure node='{escaped}'><x xmlns='jabber:x:data' type='submit'>"
                                "<field var='pubsub#max_items'><value>-3</value></field></x></configure></pubsub>", "set", service(alice))
    assert conditions(bad_config)[0] == "not-acceptable", to_str(bad_config)
    malformed = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish/></pubsub>", "set", service(alice))
    assert conditions(malformed)[0] == "bad-request", to_str(malformed)
    unknown = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='nothing-here-{bob.bare}'/></pubsub>", "get", service(bob))
    assert conditions(unknown)[0] == "item-not-found", to_str(unknown)
    # Nothing stored was lost on the way.
    items = await pubsub(bob).get_items(service(bob), odd)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["kept"], items


async def test_limits_on_nodes_per_user_and_subscriptions_per_node(env):
    """[pubsub] max_nodes_per_user = 8 and max_subscriptions_per_node = 3 on the interop server."""
    alice = await env.online(plugins=PLUGINS)
    who = alice.bare.split("@")[0]
    created = 0
    refusal = None
    for n in range(10):
        reply = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><create node='limit-{who}-{n}'/></pubsub>", "set", service(alice))
        if reply.get("type") == "error":
            refusal = reply
            break
        created += 1
    assert created == 8 and conditions(refusal)[0] == "not-allowed", (created, to_str(refusal) if refusal is not None else None)
    readers = [await env.online() for _ in range(4)]
    answers = [await r.iq(f"<pubsub xmlns='{PUBSUB}'><subscribe node='limit-{who}-0' jid='{r.bare}'/></pubsub>", "set", service(r)) for r in readers]
    assert [a.get("type") for a in answers] == ["result"] * 3 + ["error"], [to_str(a) for a in answers]
    assert conditions(answers[3]) == ("not-allowed", "too-many-subscriptions"), to_str(answers[3])
    # Deleting a node frees its place.
    await alice.iq_ok(f"<pubsub xmlns='{OWNER}'><delete node='limit-{who}-7'/></pubsub>", "set", service(alice))
    await alice.iq_ok(f"<pubsub xmlns='{PUBSUB}'><create node='limit-{who}-again'/></pubsub>", "set", service(alice))
