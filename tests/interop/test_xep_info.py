"""XEP-0092 software version, XEP-0012 last activity."""

from harness import NS, is_presence, stanza_error, to_str


async def test_xep0092_server_software_version(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='jabber:iq:version'/>", to=env.domain)
    assert res.get("from") == env.domain
    assert res.findtext("version:query/version:name", namespaces=NS), to_str(res)
    assert res.findtext("version:query/version:version", namespaces=NS), to_str(res)


async def test_xep0012_server_uptime(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='jabber:iq:last'/>", to=env.domain)
    seconds = res.find("last:query", NS).get("seconds")
    assert seconds is not None and seconds.isdigit(), to_str(res)


async def test_xep0012_last_activity_of_offline_contact(env):
    a, b = await env.online(), await env.online()
    await env.subscribe_mutually(a, b)
    b.presence(type_="unavailable", status="gone to bed")
    await a.inbox.wait(is_presence(type_="unavailable", frm=b.jid))
    await b.close()
    res = await a.iq_ok("<query xmlns='jabber:iq:last'/>", to=b.bare)
    q = res.find("last:query", NS)
    assert q.get("seconds") is not None and q.get("seconds").isdigit() and int(q.get("seconds")) < 600, to_str(res)
    assert (q.text or "") == "gone to bed", f"status of the last unavailable presence expected: {to_str(res)}"


async def test_xep0012_last_activity_refused_without_subscription(env):
    a, stranger = await env.client(), await env.client()
    res = await stranger.iq("<query xmlns='jabber:iq:last'/>", to=a.bare)
    assert res.get("type") == "error", to_str(res)
    assert stanza_error(res)[1] in ("forbidden", "service-unavailable"), to_str(res)
