"""XEP-0352 client state indication: while a client is inactive, presence updates and chat states
to it are held (only the latest per contact), and go out with the next stanza that cannot wait or
when the client is active again; subscription requests and messages with a body are not held."""

import asyncio

from harness import NS, is_message, is_presence, tag, to_str

CSI = "urn:xmpp:csi:0"
CHAT_STATES = "http://jabber.org/protocol/chatstates"


async def contacts(env):
    """An inactive-to-be client and a contact, subscribed both ways, both available."""
    phone = await env.online()
    friend = await env.online()
    await env.subscribe_mutually(phone, friend)
    await phone.inbox.wait(is_presence(frm=friend.jid))
    return phone, friend


def chat_state(el, state: str) -> bool:
    return el.tag == tag("c", "message") and el.find("{%s}%s" % (CHAT_STATES, state)) is not None


async def test_xep0352_feature_advertised(env):
    raw = await env.raw()
    _, features = await raw.login(env.account())
    assert features.find("{%s}csi" % CSI) is not None, to_str(features)


async def test_xep0352_inactive_client_gets_only_the_latest_presence_and_chat_state(env):
    phone, friend = await contacts(env)
    phone.send(f"<inactive xmlns='{CSI}'/>")
    await phone.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)  # the server has it
    for status in ("away 1", "away 2", "away 3"):
        friend.presence(status=status, show="away")
    for state in ("composing", "paused"):
        friend.send(f"<message to='{phone.jid}' type='chat'><{state} xmlns='{CHAT_STATES}'/></message>")
    friend.message(phone.jid, "wake up")
    await phone.inbox.wait(is_message(body="wake up"))
    seen = [el for el in phone.inbox.items if el.get("from") == friend.jid]
    statuses = [el.findtext("c:status", namespaces=NS) for el in seen if el.tag == tag("c", "presence")]
    assert "away 1" not in statuses and "away 2" not in statuses, statuses
    assert statuses[-1] == "away 3", statuses
    assert not [el for el in seen if chat_state(el, "composing")], "a superseded chat state was sent"
    order = [to_str(el) for el in seen[-3:]]
    assert seen[-1].findtext("c:body", namespaces=NS) == "wake up", order
    assert seen[-2].tag == tag("c", "message") and chat_state(seen[-2], "paused"), order
    assert seen[-3].findtext("c:status", namespaces=NS) == "away 3", order


async def test_xep0352_active_flushes_what_was_held(env):
    phone, friend = await contacts(env)
    phone.send(f"<inactive xmlns='{CSI}'/>")
    await phone.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    friend.presence(status="in a meeting", show="dnd")
    await friend.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    await asyncio.sleep(0.5)  # a window for a presence that should not come yet
    assert not phone.inbox.find(lambda e: e.findtext("c:status", namespaces=NS) == "in a meeting"), "sent while inactive"
    phone.send(f"<active xmlns='{CSI}'/>")
    got = await phone.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.findtext("c:status", namespaces=NS) == "in a meeting")
    assert got.get("from") == friend.jid
    # Active again: presence flows at once.
    friend.presence(status="free")
    await phone.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.findtext("c:status", namespaces=NS) == "free")


async def test_xep0352_subscription_requests_and_messages_are_not_held(env):
    phone = await env.online()
    stranger = await env.online()
    phone.send(f"<inactive xmlns='{CSI}'/>")
    await phone.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    stranger.presence(to=phone.bare, type_="subscribe")
    await phone.inbox.wait(is_presence(from_bare=stranger.bare, type_="subscribe"))
    stranger.message(phone.jid, "urgent")
    await phone.inbox.wait(is_message(body="urgent"))
