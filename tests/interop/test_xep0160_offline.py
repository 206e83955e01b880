"""XEP-0160 / RFC 6121 §8.5.2.2: offline storage, delivered on the next initial presence."""

from harness import NS, is_message, to_str


async def test_xep0160_offline_message_delivered_with_delay(env):
    a = await env.client()
    offline = env.account()
    a.message(offline.jid, "while you were out")
    await a.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)  # stored before the recipient logs in
    b = await env.client(offline)
    b.presence()
    got = await b.inbox.wait(is_message(body="while you were out"))
    assert got.get("from") == a.jid, to_str(got)
    delay = got.find("delay:delay", NS)
    assert delay is not None and delay.get("stamp"), f"no XEP-0203 delay on an offline message: {to_str(got)}"
    # No error bounced to the sender.
    assert not a.inbox.find(lambda e: e.get("type") == "error")


async def test_xep0160_not_delivered_before_initial_presence(env):
    a = await env.client()
    acc = env.account()
    a.message(acc.jid, "after presence please")
    await a.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    b = await env.client(acc)            # connected, not yet available
    await a.barrier(b)
    assert not b.inbox.find(is_message(body="after presence please")), "offline message before initial presence"
    b.presence()
    await b.inbox.wait(is_message(body="after presence please"))


async def test_xep0160_order_preserved(env):
    a = await env.client()
    acc = env.account()
    for i in range(5):
        a.message(acc.jid, f"n{i}")
    await a.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    b = await env.client(acc)
    b.presence()
    await b.inbox.wait(is_message(body="n4"))
    bodies = [m.findtext("c:body", namespaces=NS) for m in b.inbox.find(is_message()) if m.findtext("c:body", namespaces=NS)]
    assert bodies == [f"n{i}" for i in range(5)], bodies


async def test_xep0160_delivered_once(env):
    a = await env.client()
    acc = env.account()
    a.message(acc.jid, "only once")
    await a.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    b1 = await env.online(acc)
    await b1.inbox.wait(is_message(body="only once"))
    b2 = await env.online(acc)
    await a.barrier(b2)
    assert not b2.inbox.find(is_message(body="only once")), "offline message delivered a second time"


async def test_xep0160_negative_priority_then_available(env):
    """RFC 6121 §8.5.2.1.1: a bare-JID message while the only resource has negative priority is stored
    and delivered once a resource with non-negative priority becomes available."""
    acc = env.account()
    neg = await env.online(acc, "neg", priority=-1)
    a = await env.client()
    a.message(acc.jid, "waiting for a real resource")
    await a.barrier(neg)
    assert not neg.inbox.find(is_message(body="waiting for a real resource"))
    pos = await env.client(acc, "pos")
    pos.presence(priority=1)
    await pos.inbox.wait(is_message(body="waiting for a real resource"))


async def test_xep0160_headline_not_stored(env):
    a = await env.client()
    acc = env.account()
    a.message(acc.jid, "headline news", type_="headline")
    a.message(acc.jid, "chat after headline")
    await a.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    b = await env.online(acc)
    await b.inbox.wait(is_message(body="chat after headline"))
    assert not b.inbox.find(is_message(body="headline news")), "headline message stored offline (RFC 6121 §8.5.2.2.1)"
