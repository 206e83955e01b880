"""RFC 6121 §2: roster management, pushes, versioning (§2.6, XEP-0237)."""

from harness import NS, is_roster_push, new_id, stanza_error, tag, to_str


def items(res):
    return res.findall("roster:query/roster:item", NS)


async def test_rfc6121_2_1_3_roster_get_of_new_account_is_empty(env):
    c = await env.client()
    res = await c.get_roster()
    assert res.find("roster:query", NS) is not None, to_str(res)
    assert items(res) == [], to_str(res)


async def test_rfc6121_2_1_5_roster_set_result_and_push_to_all_interested_resources(env):
    acc, contact = env.account(), env.account()
    r1 = await env.client(acc)
    r2 = await env.client(acc)
    await r1.get_roster()
    await r2.get_roster()
    res = await r1.iq(f"<query xmlns='jabber:iq:roster'><item jid='{contact.jid}' name='Cee'>"
                      "<group>Friends</group></item></query>", "set")
    assert res.get("type") == "result", to_str(res)
    for r in (r1, r2):
        push = await r.inbox.wait(is_roster_push(jid=contact.jid))
        item = push.find("roster:query/roster:item", NS)
        assert item.get("name") == "Cee" and item.get("subscription", "none") == "none", to_str(push)
        assert [g.text for g in item.findall("roster:group", NS)] == ["Friends"], to_str(push)
        assert push.get("from") in (None, acc.jid), f"push must come from the account itself: {to_str(push)}"
    got = items(await r1.get_roster())
    assert [(i.get("jid"), i.get("name")) for i in got] == [(contact.jid, "Cee")]


async def test_rfc6121_2_4_roster_update_item(env):
    acc, contact = env.account(), env.account()
    c = await env.client(acc)
    await c.get_roster()
    await c.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='{contact.jid}' name='Old'/></query>", "set")
    await c.inbox.wait(is_roster_push(jid=contact.jid, name="Old"))
    await c.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='{contact.jid}' name='New'>"
                  "<group>A</group><group>B</group></item></query>", "set")
    push = await c.inbox.wait(is_roster_push(jid=contact.jid, name="New"))
    groups = sorted(g.text for g in push.findall("roster:query/roster:item/roster:group", NS))
    assert groups == ["A", "B"]
    got = items(await c.get_roster())
    assert len(got) == 1 and got[0].get("name") == "New"


async def test_rfc6121_2_5_roster_remove_item(env):
    acc, contact = env.account(), env.account()
    c = await env.client(acc)
    await c.get_roster()
    await c.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='{contact.jid}'/></query>", "set")
    await c.inbox.wait(is_roster_push(jid=contact.jid))
    await c.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='{contact.jid}' subscription='remove'/></query>", "set")
    await c.inbox.wait(is_roster_push(jid=contact.jid, subscription="remove"))
    assert items(await c.get_roster()) == []


async def test_rfc6121_2_5_3_remove_unknown_item_not_found(env):
    c = await env.client()
    res = await c.iq(f"<query xmlns='jabber:iq:roster'><item jid='nobody-{new_id()}@{env.domain}' "
                     "subscription='remove'/></query>", "set")
    assert res.get("type") == "error" and stanza_error(res)[1] == "item-not-found", to_str(res)


async def test_rfc6121_2_3_3_roster_set_with_two_items_bad_request(env):
    c = await env.client()
    a, b = env.account(), env.account()
    res = await c.iq(f"<query xmlns='jabber:iq:roster'><item jid='{a.jid}'/><item jid='{b.jid}'/></query>", "set")
    assert res.get("type") == "error" and stanza_error(res)[1] == "bad-request", to_str(res)


async def test_rfc6121_2_3_3_roster_set_with_subscription_other_than_remove_ignored(env):
    """A client cannot set the subscription state itself (§2.1.2.5): subscription='both' is ignored."""
    c = await env.client()
    contact = env.account()
    await c.get_roster()
    res = await c.iq(f"<query xmlns='jabber:iq:roster'><item jid='{contact.jid}' subscription='both'/></query>", "set")
    if res.get("type") == "result":
        got = items(await c.get_roster())
        assert got and got[0].get("subscription", "none") == "none", to_str(got[0])
    else:
        assert stanza_error(res)[1] == "bad-request", to_str(res)


async def test_rfc6121_2_1_5_roster_get_of_other_user_refused(env):
    """A roster belongs to its account: a get addressed to another user's bare JID must not return it."""
    a, b = await env.client(), await env.client()
    await a.get_roster()
    await a.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='secret-{new_id()}@{env.domain}'/></query>", "set")
    res = await b.iq("<query xmlns='jabber:iq:roster'/>", to=a.bare)
    assert res.get("type") == "error", f"another user's roster was returned: {to_str(res)}"


async def test_xep0237_rosterver_feature_advertised(env):
    r = await env.raw()
    _, feats = await r.login(env.account())
    assert feats.find("rosterver:ver", NS) is not None, to_str(feats)


async def test_rfc6121_2_6_roster_versioning(env):
    acc, x, y = env.account(), env.account(), env.account()
    c = await env.client(acc)
    first = await c.get_roster(ver="")
    q = first.find("roster:query", NS)
    assert q is not None and q.get("ver") is not None, f"no version in reply to ver='': {to_str(first)}"
    v0 = q.get("ver")

    await c.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='{x.jid}'/></query>", "set")
    push = await c.inbox.wait(is_roster_push(jid=x.jid))
    v1 = push.find("roster:query", NS).get("ver")
    assert v1 and v1 != v0, f"push without a new version: {to_str(push)}"

    # §2.6.3: up to date -> empty result (no items), changes would come as pushes.
    same = await c.get_roster(ver=v1)
    assert items(same) == [], f"items resent although the client is up to date: {to_str(same)}"

    await c.iq_ok(f"<query xmlns='jabber:iq:roster'><item jid='{y.jid}'/></query>", "set")
    push = await c.inbox.wait(is_roster_push(jid=y.jid))
    v2 = push.find("roster:query", NS).get("ver")
    assert v2 and v2 not in (v0, v1)

    # From an old version, the client must end up knowing both items: either the whole roster with the
    # new version, or an empty result followed by pushes of what changed.
    old = await c.get_roster(ver=v0)
    got = {i.get("jid") for i in items(old)}
    if got:
        assert got == {x.jid, y.jid}, to_str(old)
        assert old.find("roster:query", NS).get("ver") == v2
    else:
        await c.inbox.wait(is_roster_push(jid=x.jid))
        await c.inbox.wait(is_roster_push(jid=y.jid))
