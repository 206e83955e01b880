"""RFC 6121 §4: presence broadcast, probes, unavailable presence, directed presence."""

import pytest

from harness import NS, is_message, is_presence, tag, to_str


async def _contacts(env):
    """Two available users with a mutual subscription."""
    a, b = await env.online(), await env.online()
    await env.subscribe_mutually(a, b)
    return a, b


async def test_rfc6121_4_2_2_initial_presence_reflected_to_own_resources(env):
    acc = env.account()
    r1 = await env.online(acc)  # waits for its own presence coming back
    r2 = await env.client(acc)
    r2.presence(status="second")
    got = await r1.inbox.wait(is_presence(frm=r2.jid))
    assert got.findtext("c:status", namespaces=NS) == "second"
    await r2.inbox.wait(is_presence(frm=r2.jid))


async def test_rfc6121_4_2_2_initial_presence_broadcast_to_subscribers(env):
    a, b = await _contacts(env)
    a2 = await env.client(a.account)
    a2.presence(status="hello from a2", priority=3)
    got = await b.inbox.wait(is_presence(frm=a2.jid))
    assert got.findtext("c:status", namespaces=NS) == "hello from a2"
    assert got.findtext("c:priority", namespaces=NS) == "3"


async def test_rfc6121_4_3_probe_on_initial_presence(env):
    """On initial presence the server probes the user's contacts and delivers their current presence."""
    a, b = await _contacts(env)
    b.presence(status="busy bee", show="dnd")
    await a.inbox.wait(lambda e: is_presence(frm=b.jid)(e) and e.findtext("c:status", namespaces=NS) == "busy bee")
    a2 = await env.client(a.account)
    a2.presence()
    got = await a2.inbox.wait(is_presence(frm=b.jid))
    assert got.findtext("c:status", namespaces=NS) == "busy bee", to_str(got)
    assert got.findtext("c:show", namespaces=NS) == "dnd", to_str(got)


async def test_rfc6121_4_3_probe_of_offline_contact_gets_nothing_available(env):
    a, b = await _contacts(env)
    await b.close()
    await a.inbox.wait(is_presence(type_="unavailable", frm=b.jid))
    a2 = await env.client(a.account)
    a2.presence()
    await a2.inbox.wait(is_presence(frm=a2.jid))
    await a.barrier(a2)
    assert not a2.inbox.find(is_presence(from_bare=b.bare, type_="available")), \
        "available presence delivered for a contact that is offline"


async def test_rfc6121_4_4_subsequent_presence_broadcast(env):
    a, b = await _contacts(env)
    a.presence(show="away", status="lunch")
    got = await b.inbox.wait(lambda e: is_presence(frm=a.jid)(e) and e.findtext("c:show", namespaces=NS) == "away")
    assert got.findtext("c:status", namespaces=NS) == "lunch"


async def test_rfc6121_4_2_presence_not_broadcast_to_non_subscribers(env):
    a, c = await env.online(), await env.online()
    a.presence(status="only for my contacts")
    await a.inbox.wait(lambda e: is_presence(frm=a.jid)(e) and e.findtext("c:status", namespaces=NS) == "only for my contacts")
    await a.barrier(c)
    assert not c.inbox.find(is_presence(from_bare=a.bare, type_=None)), "presence leaked to a non-subscriber"


async def test_rfc6121_4_5_explicit_unavailable_broadcast(env):
    a, b = await _contacts(env)
    a.presence(type_="unavailable", status="gone fishing")
    got = await b.inbox.wait(is_presence(type_="unavailable", frm=a.jid))
    assert got.findtext("c:status", namespaces=NS) == "gone fishing"


@pytest.mark.parametrize("how", ["stream_close", "tcp_abort"])
async def test_rfc6121_4_5_2_unavailable_on_disconnect(env, how):
    a, b = await _contacts(env)
    jid = a.jid
    if how == "stream_close":
        await a.close()
    else:
        a.kill()
    await b.inbox.wait(is_presence(type_="unavailable", frm=jid))


async def test_rfc6121_4_6_directed_presence_and_unavailable_on_disconnect(env):
    a, c = await env.online(), await env.online()
    a.presence(to=c.bare, status="just for you")
    got = await c.inbox.wait(is_presence(frm=a.jid))
    assert got.findtext("c:status", namespaces=NS) == "just for you"
    jid = a.jid
    a.kill()
    # §4.6.3: the server sends unavailable to entities that received directed presence.
    await c.inbox.wait(is_presence(type_="unavailable", frm=jid))


async def test_rfc6121_4_6_directed_presence_to_full_jid(env):
    a, c = await env.online(), await env.online()
    c2 = await env.online(c.account)
    a.presence(to=c.jid, status="full only")
    await c.inbox.wait(is_presence(frm=a.jid))
    await a.barrier(c2)
    assert not c2.inbox.find(is_presence(frm=a.jid)), "directed presence to a full JID reached another resource"


async def test_rfc6121_4_6_directed_unavailable(env):
    a, c = await env.online(), await env.online()
    a.presence(to=c.bare)
    await c.inbox.wait(is_presence(frm=a.jid))
    a.presence(to=c.bare, type_="unavailable")
    await c.inbox.wait(is_presence(type_="unavailable", frm=a.jid))
