"""XEP-0191 blocking command."""

from harness import NS, is_message, is_presence, stanza_error, tag, to_str


def is_block_push(kind, jid=None):
    def pred(e):
        if e.tag != tag("c", "iq") or e.get("type") != "set":
            return False
        el = e.find(f"blocking:{kind}", NS)
        if el is None:
            return False
        return jid is None or jid in {i.get("jid") for i in el.findall("blocking:item", NS)}
    pred.__doc__ = f"blocking push <{kind}> {jid or ''}"
    return pred


def blocked_jids(res):
    return {i.get("jid") for i in res.findall("blocking:blocklist/blocking:item", NS)}


async def test_xep0191_blocklist_initially_empty(env):
    c = await env.client()
    res = await c.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")
    assert res.find("blocking:blocklist", NS) is not None and blocked_jids(res) == set(), to_str(res)


async def test_xep0191_block_push_and_list(env):
    acc = env.account()
    r1, r2 = await env.client(acc), await env.client(acc)
    for r in (r1, r2):  # interested resources (§3.1)
        await r.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")
    bad = env.account()
    await r1.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{bad.jid}'/></block>", "set")
    for r in (r1, r2):
        await r.inbox.wait(is_block_push("block", bad.jid))
    assert blocked_jids(await r2.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")) == {bad.jid}


async def test_xep0191_blocked_contact_messages_not_delivered(env):
    a, c, d = await env.online(), await env.online(), await env.client()
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></block>", "set")
    c.message(a.jid, "can you hear me")
    # An IQ after the message: once its (blocked) error is back, the message has been processed too.
    res = await c.iq("<query xmlns='jabber:iq:version'/>", to=a.jid)
    assert res.get("type") == "error", to_str(res)
    await d.barrier(a)
    assert not a.inbox.find(is_message(body="can you hear me")), "message from a blocked JID delivered"


async def test_xep0191_blocked_contact_message_bounced(env):
    """XEP-0191 §3.5 (SHOULD): a message from a blocked entity is answered with service-unavailable."""
    a, c = await env.online(), await env.online()
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></block>", "set")
    c.message(a.jid, "knock knock")
    err = await c.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("type") == "error")
    assert stanza_error(err)[1] == "service-unavailable", to_str(err)


async def test_xep0191_blocked_contact_iq_refused(env):
    a, c = await env.online(), await env.client()
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></block>", "set")
    res = await c.iq("<query xmlns='jabber:iq:version'/>", to=a.jid)
    assert res.get("type") == "error" and stanza_error(res)[1] == "service-unavailable", to_str(res)


async def test_xep0191_outbound_to_blocked_not_acceptable(env):
    a, c = await env.online(), await env.online()
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></block>", "set")
    a.message(c.jid, "should not go out")
    err = await a.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("type") == "error")
    assert stanza_error(err)[1] == "not-acceptable", to_str(err)
    assert err.find("c:error/blocking_errors:blocked", NS) is not None, to_str(err)
    assert not c.inbox.find(is_message(body="should not go out"))


async def test_xep0191_blocking_contact_sends_unavailable(env):
    a, c = await env.online(), await env.online()
    await env.subscribe_mutually(a, c)
    await c.inbox.wait(is_presence(frm=a.jid))
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></block>", "set")
    await c.inbox.wait(is_presence(type_="unavailable", frm=a.jid))


async def test_xep0191_unblock_restores_delivery(env):
    a, c = await env.online(), await env.client()
    await a.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></block>", "set")
    await a.inbox.wait(is_block_push("block", c.bare))
    await a.iq_ok(f"<unblock xmlns='urn:xmpp:blocking'><item jid='{c.bare}'/></unblock>", "set")
    await a.inbox.wait(is_block_push("unblock", c.bare))
    c.message(a.jid, "hello again")
    await a.inbox.wait(is_message(body="hello again"))
    assert blocked_jids(await a.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")) == set()


async def test_xep0191_unblock_all(env):
    a = await env.client()
    x, y = env.account(), env.account()
    await a.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")
    await a.iq_ok(f"<block xmlns='urn:xmpp:blocking'><item jid='{x.jid}'/><item jid='{y.jid}'/></block>", "set")
    await a.iq_ok("<unblock xmlns='urn:xmpp:blocking'/>", "set")
    await a.inbox.wait(lambda e: e.tag == tag("c", "iq") and e.get("type") == "set"
                       and e.find("blocking:unblock", NS) is not None
                       and not e.findall("blocking:unblock/blocking:item", NS))
    assert blocked_jids(await a.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>")) == set()


async def test_xep0191_block_without_items_bad_request(env):
    a = await env.client()
    res = await a.iq("<block xmlns='urn:xmpp:blocking'/>", "set")
    assert res.get("type") == "error" and stanza_error(res)[1] == "bad-request", to_str(res)


async def test_xep0377_a_report_with_a_block_is_kept_for_moderators(workdir):
    """XEP-0377: the server advertises reporting; a block that carries a report blocks as any
    other, and the report (reason, text, stanza ids) is what `starling reports` lists, newest
    first; a report without a reason is a bad request that blocks nothing."""
    import json
    from conftest import own_server
    from harness import Account, Env, Target
    with own_server(workdir, "reporting", "", ("victim", "spammer", "troll"), "report-Password-1") as server:
        env = Env(Target("starling", server.endpoint, []))
        victim = await env.client(Account("victim", "report-Password-1", "localhost"))
        info = await victim.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="localhost")
        assert "urn:xmpp:reporting:1" in {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
        await victim.iq_ok("<block xmlns='urn:xmpp:blocking'><item jid='spammer@localhost'>"
                           "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>"
                           "<stanza-id xmlns='urn:xmpp:sid:0' by='victim@localhost' id='S1'/><text>Buy cheap watches</text>"
                           "</report></item></block>", "set")
        await victim.iq_ok("<block xmlns='urn:xmpp:blocking'><item jid='troll@localhost/phone'>"
                           "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'/></item></block>", "set")
        bad = await victim.iq("<block xmlns='urn:xmpp:blocking'><item jid='someone@localhost'>"
                              "<report xmlns='urn:xmpp:reporting:1'/></item></block>", "set")
        assert stanza_error(bad)[1] == "bad-request"
        listed = blocked_jids(await victim.iq_ok("<blocklist xmlns='urn:xmpp:blocking'/>"))
        assert listed == {"spammer@localhost", "troll@localhost/phone"}, listed
        await victim.close()
    lines = [json.loads(line) for line in server.cli("reports").stdout.splitlines() if line.strip()]
    assert [(r["reported"], r["reason"]) for r in lines] == [
        ("troll@localhost", "urn:xmpp:reporting:abuse"), ("spammer@localhost", "urn:xmpp:reporting:spam")], lines
    assert (lines[1]["reporter"], lines[1]["text"], lines[1]["stanza_ids"]) == ("victim@localhost", "Buy cheap watches", ["S1"])
