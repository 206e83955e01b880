"""XEP-0280 message carbons."""

from harness import NS, bare, is_message, tag, to_str

ENABLE = "<enable xmlns='urn:xmpp:carbons:2'/>"
DISABLE = "<disable xmlns='urn:xmpp:carbons:2'/>"


def is_carbon(kind, body=None):
    def pred(e):
        if e.tag != tag("c", "message"):
            return False
        fwd = e.find(f"carbons:{kind}/forward:forwarded/c:message", NS)
        if fwd is None:
            return False
        return body is None or fwd.findtext("c:body", namespaces=NS) == body
    pred.__doc__ = f"<{kind}/> carbon of {body!r}"
    return pred


async def _user_with_two_resources(env, carbons=(True, True)):
    acc = env.account()
    r1 = await env.online(acc, "r1", priority=5)
    r2 = await env.online(acc, "r2", priority=1)
    for r, on in zip((r1, r2), carbons):
        if on:
            await r.iq_ok(ENABLE, "set")
    return r1, r2


async def test_xep0280_enable_and_disable(env):
    c = await env.client()
    await c.iq_ok(ENABLE, "set")
    await c.iq_ok(DISABLE, "set")


async def test_xep0280_received_carbon(env):
    r1, r2 = await _user_with_two_resources(env)
    b = await env.client()
    b.message(r1.jid, "hi r1")
    original = await r1.inbox.wait(is_message(body="hi r1"))
    assert original.find("carbons:received", NS) is None, "the addressed resource got a wrapped copy"
    carbon = await r2.inbox.wait(is_carbon("received", "hi r1"))
    assert carbon.get("from") == r1.bare, f"carbon must come from the user's bare JID: {to_str(carbon)}"
    inner = carbon.find("carbons:received/forward:forwarded/c:message", NS)
    assert inner.get("from") == b.jid and inner.get("to") == r1.jid, to_str(carbon)


async def test_xep0280_sent_carbon(env):
    r1, r2 = await _user_with_two_resources(env)
    b = await env.client()
    r1.message(b.jid, "from r1")
    await b.inbox.wait(is_message(body="from r1"))
    carbon = await r2.inbox.wait(is_carbon("sent", "from r1"))
    assert carbon.get("from") == r1.bare, to_str(carbon)
    inner = carbon.find("carbons:sent/forward:forwarded/c:message", NS)
    assert inner.get("to") == b.jid, to_str(carbon)
    assert inner.get("from") == r1.jid, f"the forwarded copy must carry the sender's full JID: {to_str(carbon)}"


async def test_xep0280_bare_jid_message_copied_to_other_resources(env):
    r1, r2 = await _user_with_two_resources(env)
    b = await env.client()
    b.message(r1.bare, "to the bare jid")
    await r1.inbox.wait(is_message(body="to the bare jid"))  # highest priority
    await r2.inbox.wait(is_carbon("received", "to the bare jid"))


async def test_xep0280_not_enabled_resource_gets_no_carbons(env):
    r1, r2 = await _user_with_two_resources(env, carbons=(True, False))
    b = await env.client()
    b.message(r1.jid, "private-ish")
    await r1.inbox.wait(is_message(body="private-ish"))
    await b.barrier(r2)
    assert not r2.inbox.find(is_carbon("received")), "carbon sent to a resource that did not enable carbons"


async def test_xep0280_disabled_resource_gets_no_carbons(env):
    r1, r2 = await _user_with_two_resources(env)
    await r2.iq_ok(DISABLE, "set")
    b = await env.client()
    b.message(r1.jid, "after disable")
    await r1.inbox.wait(is_message(body="after disable"))
    await b.barrier(r2)
    assert not r2.inbox.find(is_carbon("received")), "carbon after <disable/>"


async def test_xep0280_private_message_not_copied(env):
    r1, r2 = await _user_with_two_resources(env)
    b = await env.client()
    b.message(r1.jid, "keep it private",
              extra="<private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/>")
    await r1.inbox.wait(is_message(body="keep it private"))
    await b.barrier(r2)
    assert not r2.inbox.find(is_carbon("received")), "a <private/> message was carbon-copied"


async def test_xep0280_carbons_not_spoofable_by_contact(env):
    """A contact sending a fake <received/> wrapper: the server must not present it as a carbon from the
    user's own account (from stays the contact's JID)."""
    r1, _ = await _user_with_two_resources(env)
    b = await env.client()
    b.send(f"<message to='{r1.jid}' type='chat'><received xmlns='urn:xmpp:carbons:2'>"
           "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='evil@example.org/x' "
           f"to='{r1.jid}' type='chat'><body>fake</body></message></forwarded></received></message>")
    got = await r1.inbox.wait(is_carbon("received", "fake"))
    assert got.get("from") == b.jid, to_str(got)
