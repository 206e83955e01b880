"""XEP-0054 vcard-temp and XEP-0049 private XML storage."""

from harness import NS, new_id, stanza_error, tag, to_str

VCARD = ("<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><NICKNAME>{nick}</NICKNAME>"
         "<EMAIL><INTERNET/><USERID>juliet@example.com</USERID></EMAIL></vCard>")


# --- XEP-0054 ----------------------------------------------------------------------------------

async def test_xep0054_set_and_get_own_vcard(env):
    c = await env.client()
    nick = "jc-" + new_id()
    await c.iq_ok(VCARD.format(nick=nick), "set")
    res = await c.iq_ok("<vCard xmlns='vcard-temp'/>")
    assert res.findtext("vcard:vCard/vcard:FN", namespaces=NS) == "Juliet Capulet", to_str(res)
    assert res.findtext("vcard:vCard/vcard:NICKNAME", namespaces=NS) == nick
    assert res.findtext("vcard:vCard/vcard:EMAIL/vcard:USERID", namespaces=NS) == "juliet@example.com"


async def test_xep0054_get_other_users_vcard(env):
    a, b = await env.client(), await env.client()
    nick = "pub-" + new_id()
    await a.iq_ok(VCARD.format(nick=nick), "set")
    res = await b.iq_ok("<vCard xmlns='vcard-temp'/>", to=a.bare)
    assert res.get("from") == a.bare, to_str(res)
    assert res.findtext("vcard:vCard/vcard:NICKNAME", namespaces=NS) == nick, to_str(res)


async def test_xep0054_vcard_replaced_on_set(env):
    c = await env.client()
    await c.iq_ok(VCARD.format(nick="first"), "set")
    await c.iq_ok("<vCard xmlns='vcard-temp'><NICKNAME>second</NICKNAME></vCard>", "set")
    res = await c.iq_ok("<vCard xmlns='vcard-temp'/>")
    assert res.findtext("vcard:vCard/vcard:NICKNAME", namespaces=NS) == "second"
    assert res.find("vcard:vCard/vcard:FN", NS) is None, "vCard set must replace, not merge"


async def test_xep0054_no_vcard_yet(env):
    c = await env.client()
    res = await c.iq("<vCard xmlns='vcard-temp'/>")
    if res.get("type") == "result":
        v = res.find("vcard:vCard", NS)
        assert v is None or len(v) == 0, to_str(res)
    else:
        assert stanza_error(res)[1] == "item-not-found", to_str(res)


async def test_xep0054_cannot_set_other_users_vcard(env):
    a, b = await env.client(), await env.client()
    await a.iq_ok(VCARD.format(nick="mine"), "set")
    res = await b.iq(VCARD.format(nick="hijacked"), "set", to=a.bare)
    assert res.get("type") == "error", f"set on another user's vCard accepted: {to_str(res)}"
    mine = await a.iq_ok("<vCard xmlns='vcard-temp'/>")
    assert mine.findtext("vcard:vCard/vcard:NICKNAME", namespaces=NS) == "mine"


# --- XEP-0049 ----------------------------------------------------------------------------------

PRIV = "<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>{nick}</defaultnick></exodus></query>"


async def test_xep0049_store_and_retrieve(env):
    c = await env.client()
    nick = "Hamlet-" + new_id()
    await c.iq_ok(PRIV.format(nick=nick), "set")
    res = await c.iq_ok("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>")
    assert res.findtext("private:query/{exodus:prefs}exodus/{exodus:prefs}defaultnick", namespaces=NS) == nick, to_str(res)


async def test_xep0049_private_data_survives_reconnect(env):
    acc = env.account()
    c = await env.client(acc)
    await c.iq_ok(PRIV.format(nick="persisted"), "set")
    await c.close()
    c2 = await env.client(acc)
    res = await c2.iq_ok("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>")
    assert res.findtext("private:query/{exodus:prefs}exodus/{exodus:prefs}defaultnick", namespaces=NS) == "persisted"


async def test_xep0049_unknown_namespace_returns_empty_element(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='jabber:iq:private'><nothing xmlns='urn:example:nothing-here'/></query>")
    el = res.find("private:query/{urn:example:nothing-here}nothing", NS)
    assert el is not None and len(el) == 0, to_str(res)


async def test_xep0049_jabber_namespace_not_acceptable(env):
    c = await env.client()
    res = await c.iq("<query xmlns='jabber:iq:private'><foo xmlns='jabber:iq:roster'/></query>", "set")
    assert res.get("type") == "error" and stanza_error(res)[1] == "not-acceptable", to_str(res)


async def test_xep0049_other_users_data_refused(env):
    a, b = await env.client(), await env.client()
    await a.iq_ok(PRIV.format(nick="secret"), "set")
    res = await b.iq("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>", to=a.bare)
    assert res.get("type") == "error", f"another user's private data returned: {to_str(res)}"
    assert "secret" not in to_str(res)
    assert stanza_error(res)[1] in ("forbidden", "service-unavailable", "not-allowed"), to_str(res)
