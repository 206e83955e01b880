"""XEP-0163 Personal Eventing Protocol (XEP-0060 nodes on every account): publish with item ids
and publish-options, notifications to contacts whose clients asked for the node (`+notify` in
their XEP-0115 capabilities, here slixmpp's own xep_0115/xep_0163 plugins), the last item when
such a client comes online, items retrieval under each access model, and the XEP's errors."""

import asyncio

import pytest

from harness import NS, to_str

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = "http://jabber.org/protocol/pubsub#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
P = {**NS, "ps": PUBSUB, "ev": EVENT, "err": ERRORS}
PLUGINS = ["xep_0030", "xep_0115", "xep_0163"]

pytestmark = pytest.mark.starling_only


def tune(title: str) -> str:
    return f"<tune xmlns='http://jabber.org/protocol/tune'><title>{title}</title></tune>"


def publish(node: str, item_id: str, payload: str, options: dict[str, str] | None = None) -> str:
    form = ""
    if options:
        fields = "".join(f"<field var='{var}'><value>{value}</value></field>" for var, value in options.items())
        form = ("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>http://jabber.org/protocol/pubsub#publish-options</value></field>{fields}</x></publish-options>")
    return f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>{payload}</item></publish>{form}</pubsub>"


def event_items(client, node: str):
    return [m for m in client.inbox.find(lambda e: e.tag == "{jabber:client}message" and e.find(f"ev:event/ev:items[@node='{node}']", P) is not None)]


def app_condition(reply) -> tuple[str, str]:
    error = reply.find("c:error", P)
    stanza = next((c.tag.split("}")[1] for c in error if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith("text")), "")
    app = next((c.tag.split("}")[1] for c in error if c.tag.startswith("{" + ERRORS)), "")
    return stanza, app


async def announce(client, *nodes: str) -> None:
    """The client asks for these nodes (`NODE+notify`) and broadcasts its new capabilities."""
    for node in nodes:
        client.x.plugin["xep_0030"].add_feature(f"{node}+notify")
    await client.x.plugin["xep_0115"].update_caps()


async def interested(env, *nodes: str):
    client = await env.online(plugins=PLUGINS)
    await announce(client, *nodes)
    return client


async def wait_for(condition, what: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def test_pep_publish_notifies_contacts_that_asked_for_the_node(env):
    alice = await env.online(plugins=PLUGINS)
    bob, carol = await env.online(plugins=PLUGINS), await env.online(plugins=PLUGINS)
    await env.subscribe_mutually(alice, bob)
    await env.subscribe_mutually(alice, carol)
    await announce(bob, "http://jabber.org/protocol/tune")
    await announce(carol, "http://jabber.org/protocol/geoloc")
    await asyncio.sleep(1.0)  # caps announced, asked for and answered
    result = await alice.iq(publish("http://jabber.org/protocol/tune", "t1", tune("Yesterday")), "set")
    assert result.get("type") == "result", to_str(result)
    assert result.find("ps:pubsub/ps:publish/ps:item", P).get("id") == "t1", to_str(result)
    await wait_for(lambda: event_items(bob, "http://jabber.org/protocol/tune"), "bob (tune+notify) got no notification")
    notification = event_items(bob, "http://jabber.org/protocol/tune")[0]
    assert notification.get("from") == alice.jid.split("/")[0] and notification.get("type") == "headline", to_str(notification)
    assert notification.find("ev:event/ev:items/ev:item", P).get("id") == "t1", to_str(notification)
    await asyncio.sleep(0.5)
    assert not event_items(carol, "http://jabber.org/protocol/tune"), "carol asked only for geoloc"
    # A contact's client may read the items.
    items = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='http://jabber.org/protocol/tune'/></pubsub>", "get", alice.jid.split("/")[0])
    assert [i.get("id") for i in items.findall("ps:pubsub/ps:items/ps:item", P)] == ["t1"], to_str(items)


async def test_pep_the_last_item_reaches_a_contact_that_comes_online(env):
    alice = await env.online(plugins=PLUGINS)
    bob = await env.online(plugins=PLUGINS)
    await env.subscribe_mutually(alice, bob)
    await announce(bob, "http://jabber.org/protocol/mood")
    await asyncio.sleep(1.0)
    mood = "<mood xmlns='http://jabber.org/protocol/mood'><happy/></mood>"
    assert (await alice.iq(publish("http://jabber.org/protocol/mood", "m1", mood), "set")).get("type") == "result"
    await wait_for(lambda: event_items(bob, "http://jabber.org/protocol/mood"), "live notification")
    later = await env.online(bob.account, plugins=PLUGINS)
    await announce(later, "http://jabber.org/protocol/mood")
    await wait_for(lambda: event_items(later, "http://jabber.org/protocol/mood"), "the last item at the new resource's presence")


async def test_pep_access_models_publish_options_and_errors(env):
    alice = await env.online()
    stranger = await env.online()
    bare = alice.jid.split("/")[0]
    # Presence access (the default): a stranger may not read.
    assert (await alice.iq(publish("urn:xmpp:avatar:metadata", "a1", "<metadata xmlns='urn:xmpp:avatar:metadata'/>"), "set")).get("type") == "result"
    refused = await stranger.iq(f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:avatar:metadata'/></pubsub>", "get", bare)
    assert app_condition(refused) == ("not-authorized", "presence-subscription-required"), to_str(refused)
    # OMEMO's device list: open, made so by publish-options, readable by anyone.
    devices = "<devices xmlns='urn:xmpp:omemo:2'><device id='12345'/></devices>"
    opened = await alice.iq(publish("urn:xmpp:omemo:2:devices", "current", devices, {"pubsub#access_model": "open", "pubsub#max_items": "max"}), "set")
    assert opened.get("type") == "result", to_str(opened)
    read = await stranger.iq(f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:omemo:2:devices'/></pubsub>", "get", bare)
    assert read.find("ps:pubsub/ps:items/ps:item/{urn:xmpp:omemo:2}devices", P) is not None, to_str(read)
    # Publish-options the node does not have: precondition-not-met, nothing changed.
    mismatch = await alice.iq(publish("urn:xmpp:omemo:2:devices", "current", devices, {"pubsub#access_model": "presence"}), "set")
    assert app_condition(mismatch) == ("conflict", "precondition-not-met"), to_str(mismatch)
    # Nobody publishes to another account's PEP; an item needs a payload; unknown nodes.
    forbidden = await stranger.iq(publish("urn:xmpp:omemo:2:devices", "x", devices), "set", bare)
    assert app_condition(forbidden)[0] == "forbidden", to_str(forbidden)
    empty = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><publish node='n'><item id='i'/></publish></pubsub>", "set")
    assert app_condition(empty) == ("bad-request", "item-required"), to_str(empty)
    missing = await stranger.iq(f"<pubsub xmlns='{PUBSUB}'><items node='nothing-here'/></pubsub>", "get", bare)
    assert app_condition(missing)[0] == "item-not-found", to_str(missing)
    # Retract, then delete.
    retracted = await alice.iq(f"<pubsub xmlns='{PUBSUB}'><retract node='urn:xmpp:omemo:2:devices'><item id='current'/></retract></pubsub>", "set")
    assert retracted.get("type") == "result", to_str(retracted)
    empty_now = await stranger.iq(f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:omemo:2:devices'/></pubsub>", "get", bare)
    assert empty_now.findall("ps:pubsub/ps:items/ps:item", P) == [], to_str(empty_now)
    deleted = await alice.iq("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:xmpp:omemo:2:devices'/></pubsub>", "set")
    assert deleted.get("type") == "result", to_str(deleted)
    gone = await stranger.iq(f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:omemo:2:devices'/></pubsub>", "get", bare)
    assert app_condition(gone)[0] == "item-not-found", to_str(gone)


async def test_bookmarks_in_private_storage_and_on_pep_are_the_same(env):
    """XEP-0402 §5.3 / XEP-0411: a client writing XEP-0048 bookmarks to private storage has them
    published on `urn:xmpp:bookmarks:1` (its other resource, which asked for the node, is
    notified); a client publishing a XEP-0402 bookmark finds it in private storage; and the
    autojoin bookmark leads the second client into the room."""
    from test_xep0045_muc import create_instant_room, join, statuses
    legacy_client = await env.online(plugins=PLUGINS)
    modern = await env.online(legacy_client.account, plugins=PLUGINS)
    await announce(modern, "urn:xmpp:bookmarks:1")
    await asyncio.sleep(0.5)
    info = await legacy_client.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", "get", legacy_client.jid.split("/")[0])
    features = {f.get("var") for f in info.findall("{http://jabber.org/protocol/disco#info}query/{http://jabber.org/protocol/disco#info}feature")}
    assert {"urn:xmpp:bookmarks:1#compat", "urn:xmpp:bookmarks-conversion:0"} <= features, features
    owner = await env.online()
    room = await create_instant_room(owner)
    stored = await legacy_client.iq(
        f"<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>"
        f"<conference jid='{room}' name='Council' autojoin='true'><nick>elder</nick></conference></storage></query>", "set")
    assert stored.get("type") == "result", to_str(stored)
    await wait_for(lambda: event_items(modern, "urn:xmpp:bookmarks:1"), "the other resource was not notified of the converted bookmark")
    items = await modern.iq(f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:bookmarks:1'/></pubsub>", "get")
    item = items.find("ps:pubsub/ps:items/ps:item", P)
    assert item is not None and item.get("id") == room, to_str(items)
    conference = item.find("{urn:xmpp:bookmarks:1}conference")
    assert conference.get("autojoin") == "true" and conference.findtext("{urn:xmpp:bookmarks:1}nick") == "elder", to_str(items)
    # The autojoin bookmark: the modern client joins the room under the bookmarked nick.
    own = await join(modern, room, conference.findtext("{urn:xmpp:bookmarks:1}nick"))
    assert 110 in statuses(own), to_str(own)
    # A XEP-0402 publish shows in private storage.
    other_room = room.replace("room-", "second-")
    published = await modern.iq(publish("urn:xmpp:bookmarks:1", other_room,
                                         "<conference xmlns='urn:xmpp:bookmarks:1' name='Second'><nick>elder</nick></conference>",
                                         {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"}), "set")
    assert published.get("type") == "result", to_str(published)
    private = await legacy_client.iq("<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>", "get")
    jids = {c.get("jid") for c in private.findall(".//{storage:bookmarks}conference")}
    assert jids == {room, other_room}, to_str(private)


async def test_the_vcard_photo_and_the_pep_avatar_are_the_same(env):
    """XEP-0398: a vCard photo is published as the XEP-0084 avatar (a contact that asked for the
    metadata is notified, under the image's SHA-1), and an avatar published on PEP becomes the
    vCard's photo; empty metadata removes it."""
    import base64
    import hashlib
    alice = await env.online(plugins=PLUGINS)
    bob = await env.online(plugins=PLUGINS)
    await env.subscribe_mutually(alice, bob)
    await announce(bob, "urn:xmpp:avatar:metadata")
    await asyncio.sleep(0.5)
    bare = alice.jid.split("/")[0]
    first = b"\x89PNG first avatar"
    vcard = (f"<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>"
             f"<BINVAL>{base64.b64encode(first).decode()}</BINVAL></PHOTO></vCard>")
    assert (await alice.iq(vcard, "set")).get("type") == "result"
    await wait_for(lambda: event_items(bob, "urn:xmpp:avatar:metadata"), "no avatar metadata notification after the vCard set")
    info = event_items(bob, "urn:xmpp:avatar:metadata")[0].find(".//{urn:xmpp:avatar:metadata}info")
    assert info.get("id") == hashlib.sha1(first).hexdigest() and info.get("bytes") == str(len(first)), to_str(info)
    data = await bob.iq(f"<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:avatar:data'><item id='{info.get('id')}'/></items></pubsub>", "get", bare)
    assert base64.b64decode(data.findtext(".//{urn:xmpp:avatar:data}data")) == first, to_str(data)
    # PEP → vCard.
    second = b"\x89PNG second avatar"
    sid = hashlib.sha1(second).hexdigest()
    assert (await alice.iq(publish("urn:xmpp:avatar:data", sid, f"<data xmlns='urn:xmpp:avatar:data'>{base64.b64encode(second).decode()}</data>"), "set")).get("type") == "result"
    metadata = f"<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{sid}' bytes='{len(second)}' type='image/png'/></metadata>"
    assert (await alice.iq(publish("urn:xmpp:avatar:metadata", sid, metadata), "set")).get("type") == "result"
    card = await bob.iq("<vCard xmlns='vcard-temp'/>", "get", bare)
    assert base64.b64decode(card.findtext(".//{vcard-temp}BINVAL")) == second, to_str(card)
    assert card.findtext(".//{vcard-temp}FN") == "Alice", "the rest of the vCard stays"
    # Avatar disabled: empty metadata, no photo.
    assert (await alice.iq(publish("urn:xmpp:avatar:metadata", "none", "<metadata xmlns='urn:xmpp:avatar:metadata'/>"), "set")).get("type") == "result"
    card = await bob.iq("<vCard xmlns='vcard-temp'/>", "get", bare)
    assert card.find(".//{vcard-temp}PHOTO") is None, to_str(card)
