"""RFC 6121 §3: the presence subscription state machine, including pre-approval (§3.4)."""

from harness import NS, is_presence, is_roster_push, tag, to_str


def roster_item(res, jid):
    for item in res.findall("roster:query/roster:item", NS):
        if item.get("jid") == jid:
            return item
    return None


async def _pair(env):
    a, b = await env.online(), await env.online()
    await a.get_roster()
    await b.get_roster()
    return a, b


async def test_rfc6121_3_1_subscription_request_and_approval(env):
    a, b = await _pair(env)
    a.presence(to=b.bare, type_="subscribe")
    # §3.1.2: the user's server pushes the pending-out state.
    await a.inbox.wait(is_roster_push(jid=b.bare, subscription="none", ask="subscribe"))
    # §3.1.3: delivered to the contact, from the user's bare JID.
    req = await b.inbox.wait(is_presence(type_="subscribe", from_bare=a.bare))
    assert req.get("from") == a.bare, to_str(req)

    b.presence(to=a.bare, type_="subscribed")
    # §3.1.5: contact's server pushes 'from'; user's side gets subscribed + push 'to'.
    await b.inbox.wait(is_roster_push(jid=a.bare, subscription="from"))
    ok = await a.inbox.wait(is_presence(type_="subscribed", from_bare=b.bare))
    assert ok.get("from") == b.bare, to_str(ok)
    push = await a.inbox.wait(is_roster_push(jid=b.bare, subscription="to"))
    assert push.find("roster:query/roster:item", NS).get("ask") is None, to_str(push)
    # §3.1.6: the contact's current presence is sent to the new subscriber.
    await a.inbox.wait(is_presence(frm=b.jid))

    ra = roster_item(await a.get_roster(), b.bare)
    rb = roster_item(await b.get_roster(), a.bare)
    assert ra is not None and ra.get("subscription") == "to", to_str(ra) if ra is not None else "missing"
    assert rb is not None and rb.get("subscription") == "from", to_str(rb) if rb is not None else "missing"


async def test_rfc6121_3_1_6_mutual_subscription_both(env):
    a, b = await _pair(env)
    await env.subscribe_mutually(a, b)
    assert roster_item(await a.get_roster(), b.bare).get("subscription") == "both"
    assert roster_item(await b.get_roster(), a.bare).get("subscription") == "both"


async def test_rfc6121_3_1_3_request_stored_until_contact_available(env):
    a = await env.online()
    contact = env.account()
    a.presence(to=contact.jid, type_="subscribe")
    # A round trip to the server so the request has been processed before the contact logs in.
    await a.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    b = await env.client(contact)
    b.presence()
    req = await b.inbox.wait(is_presence(type_="subscribe", from_bare=a.bare))
    assert req.get("from") == a.bare


async def test_rfc6121_3_1_3_subscribe_when_already_subscribed_not_redelivered(env):
    """If the user already has a subscription, the contact's server auto-replies 'subscribed' and does not
    deliver the request to the contact (§3.1.3); the user's server then drops that redundant 'subscribed'
    (§3.1.6), so the only observable effect is that the contact sees nothing."""
    a, b = await _pair(env)
    a.presence(to=b.bare, type_="subscribe")
    await b.inbox.wait(is_presence(type_="subscribe", from_bare=a.bare))
    b.presence(to=a.bare, type_="subscribed")
    await a.inbox.wait(is_presence(type_="subscribed", from_bare=b.bare))
    await b.inbox.wait(is_roster_push(jid=a.bare, subscription="from"))
    a.presence(to=b.bare, type_="subscribe")
    await a.barrier(b)
    assert len(b.inbox.find(is_presence(type_="subscribe", from_bare=a.bare))) == 1, \
        "a subscription request was delivered again although the user is already subscribed"


async def test_rfc6121_3_2_contact_cancels_subscription(env):
    a, b = await _pair(env)
    a.presence(to=b.bare, type_="subscribe")
    await b.inbox.wait(is_presence(type_="subscribe", from_bare=a.bare))
    b.presence(to=a.bare, type_="subscribed")
    await a.inbox.wait(is_roster_push(jid=b.bare, subscription="to"))
    await a.inbox.wait(is_presence(frm=b.jid))

    b.presence(to=a.bare, type_="unsubscribed")
    await b.inbox.wait(is_roster_push(jid=a.bare, subscription="none"))
    got = await a.inbox.wait(is_presence(type_="unsubscribed", from_bare=b.bare))
    assert got.get("from") == b.bare
    await a.inbox.wait(is_roster_push(jid=b.bare, subscription="none"))
    # §3.2.3: the user is told the contact is now unavailable to them.
    await a.inbox.wait(is_presence(type_="unavailable", frm=b.jid))


async def test_rfc6121_3_3_user_unsubscribes(env):
    a, b = await _pair(env)
    a.presence(to=b.bare, type_="subscribe")
    await b.inbox.wait(is_presence(type_="subscribe", from_bare=a.bare))
    b.presence(to=a.bare, type_="subscribed")
    await a.inbox.wait(is_roster_push(jid=b.bare, subscription="to"))
    await b.inbox.wait(is_roster_push(jid=a.bare, subscription="from"))

    a.presence(to=b.bare, type_="unsubscribe")
    await a.inbox.wait(is_roster_push(jid=b.bare, subscription="none"))
    got = await b.inbox.wait(is_presence(type_="unsubscribe", from_bare=a.bare))
    assert got.get("from") == a.bare
    await b.inbox.wait(is_roster_push(jid=a.bare, subscription="none"))
    # §3.3.3: the contact's server sends unavailable from the contact's resources to the user.
    await a.inbox.wait(is_presence(type_="unavailable", frm=b.jid))


async def test_rfc6121_3_4_1_preapproval_feature_advertised(env):
    r = await env.raw()
    _, feats = await r.login(env.account())
    assert feats.find("preapproval:sub", NS) is not None, to_str(feats)


async def test_rfc6121_3_4_2_preapproval_pushed_with_approved_true(env):
    a, b = await _pair(env)
    b.presence(to=a.bare, type_="subscribed")
    push = await b.inbox.wait(is_roster_push(jid=a.bare))
    item = push.find("roster:query/roster:item", NS)
    assert item.get("approved") == "true", f"pre-approval push without approved='true': {to_str(push)}"
    assert item.get("subscription", "none") == "none", to_str(push)


async def test_rfc6121_3_4_preapproved_subscription_auto_approved(env):
    a, b = await _pair(env)
    # The contact pre-approves a subscription request from the user.
    b.presence(to=a.bare, type_="subscribed")
    await b.inbox.wait(is_roster_push(jid=a.bare))
    # The user subscribes: approved automatically, the contact never sees the request.
    a.presence(to=b.bare, type_="subscribe")
    await a.inbox.wait(is_presence(type_="subscribed", from_bare=b.bare))
    await a.inbox.wait(is_roster_push(jid=b.bare, subscription="to"))
    await b.inbox.wait(is_roster_push(jid=a.bare, subscription="from"))
    await a.barrier(b)
    assert not b.inbox.find(is_presence(type_="subscribe", from_bare=a.bare)), \
        "a pre-approved subscription request was delivered to the contact (§3.4.2)"


async def test_rfc6121_3_4_preapproval_cancelled_by_unsubscribed(env):
    a, b = await _pair(env)
    b.presence(to=a.bare, type_="subscribed")
    await b.inbox.wait(is_roster_push(jid=a.bare))
    b.presence(to=a.bare, type_="unsubscribed")  # cancels the pre-approval
    await b.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)  # processed before the request below
    a.presence(to=b.bare, type_="subscribe")
    await b.inbox.wait(is_presence(type_="subscribe", from_bare=a.bare))
