"""RFC 6121 §8.5: routing of messages to bare and full JIDs of local users."""

import pytest

from harness import NS, is_message, stanza_error, tag, to_str


async def test_rfc6121_8_5_3_1_message_to_full_jid_only_reaches_that_resource(env):
    acc = env.account()
    r1, r2 = await env.online(acc), await env.online(acc)
    b = await env.client()
    b.message(r1.jid, "just r1")
    got = await r1.inbox.wait(is_message(body="just r1"))
    assert got.get("from") == b.jid and got.get("to") == r1.jid, to_str(got)
    await b.barrier(r2)
    assert not r2.inbox.find(is_message(body="just r1"))


@pytest.mark.parametrize("type_", ["chat", "normal"])
async def test_rfc6121_8_5_2_1_1_bare_jid_goes_to_highest_priority(env, type_):
    """Starling delivers bare-JID messages to the most available (highest priority) resource — option (a)
    of §8.5.2.1.1."""
    acc = env.account()
    high = await env.online(acc, "high", priority=5)
    low = await env.online(acc, "low", priority=1)
    await high.inbox.wait(is_presence_from(low.jid))
    b = await env.client()
    b.message(acc.jid, f"bare {type_}", type_=type_)
    await high.inbox.wait(is_message(body=f"bare {type_}"))
    await b.barrier(low)
    assert not low.inbox.find(is_message(body=f"bare {type_}")), "lower-priority resource got the bare-JID message"


async def test_rfc6121_8_5_2_1_1_priority_change_moves_delivery(env):
    acc = env.account()
    r1 = await env.online(acc, "r1", priority=5)
    r2 = await env.online(acc, "r2", priority=1)
    r2.presence(priority=10)
    await r1.inbox.wait(lambda e: is_presence_from(r2.jid)(e) and e.findtext("c:priority", namespaces=NS) == "10")
    b = await env.client()
    b.message(acc.jid, "now r2")
    await r2.inbox.wait(is_message(body="now r2"))
    await b.barrier(r1)
    assert not r1.inbox.find(is_message(body="now r2"))


async def test_rfc6121_8_5_2_1_1_negative_priority_not_delivered(env):
    acc = env.account()
    neg = await env.online(acc, "neg", priority=-1)
    b = await env.client()
    b.message(acc.jid, "not for negative")
    await b.barrier(neg)
    assert not neg.inbox.find(is_message(body="not for negative")), \
        "bare-JID message delivered to a negative-priority resource"
    # The full JID of a negative-priority resource still works.
    b.message(neg.jid, "direct to neg")
    await neg.inbox.wait(is_message(body="direct to neg"))


async def test_rfc6121_8_5_2_1_1_connected_but_unavailable_resource_gets_no_bare_messages(env):
    acc = env.account()
    quiet = await env.client(acc)   # bound, no initial presence
    b = await env.client()
    b.message(acc.jid, "for the bare jid")
    await b.barrier(quiet)
    assert not quiet.inbox.find(is_message(body="for the bare jid"))


async def test_rfc6121_8_5_3_2_1_chat_to_unknown_resource_handled_as_bare(env):
    acc = env.account()
    r = await env.online(acc, "here")
    b = await env.client()
    b.message(f"{acc.jid}/not-here", "wrong resource", type_="chat")
    got = await r.inbox.wait(is_message(body="wrong resource"))
    assert got.get("from") == b.jid


async def test_rfc6121_8_5_message_to_self_bare_delivered(env):
    c = await env.online()
    c.message(c.bare, "note to self")
    await c.inbox.wait(is_message(body="note to self"))


async def test_rfc6121_8_5_message_attributes_preserved(env):
    a, b = await env.client(), await env.client()
    a.send(f"<message to='{b.jid}' type='chat' id='keep-me' xml:lang='de'><body>Hallo</body>"
           "<thread>t-1</thread><custom xmlns='urn:example:x'><deep attr='1'/></custom></message>")
    got = await b.inbox.wait(is_message(body="Hallo"))
    assert got.get("id") == "keep-me" and got.get("type") == "chat", to_str(got)
    assert got.findtext("c:thread", namespaces=NS) == "t-1"
    assert got.find("{urn:example:x}custom/{urn:example:x}deep").get("attr") == "1", to_str(got)


def is_presence_from(jid):
    def pred(e):
        return e.tag == tag("c", "presence") and e.get("from") == jid and e.get("type") is None
    pred.__doc__ = f"available presence from {jid}"
    return pred


async def test_rfc6121_8_5_3_1_iq_to_full_jid_and_its_result_routed_back(env):
    """An IQ request to another user's full JID reaches that resource, and its result reaches the asker
    (the path of XEP-0096/XEP-0047 negotiation and every client-to-client query)."""
    a, b = await env.client(), await env.client()
    a.send(f"<iq type='set' id='c2c-1' to='{b.jid}'><open xmlns='http://jabber.org/protocol/ibb' sid='s1' block-size='4096'/></iq>")
    req = await b.inbox.wait(lambda e: e.tag == tag("c", "iq") and e.get("id") == "c2c-1")
    assert req.get("from") == a.jid and req.get("type") == "set", to_str(req)
    # slixmpp answers an IQ it has no handler for by itself (feature-not-implemented); either answer
    # coming back from b shows the response path.
    res = await a.inbox.wait(lambda e: e.tag == tag("c", "iq") and e.get("id") == "c2c-1")
    assert res.get("type") in ("result", "error") and res.get("from") == b.jid, to_str(res)
