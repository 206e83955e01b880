"""XEP-0030 service discovery on the server and on accounts; XEP-0115 server caps in stream features."""

import base64
import hashlib

import pytest

from harness import NS, new_id, stanza_error, tag, to_str


def features(res):
    return {f.get("var") for f in res.findall("disco_info:query/disco_info:feature", NS)}


def identities(res):
    return {(i.get("category"), i.get("type")) for i in res.findall("disco_info:query/disco_info:identity", NS)}


async def test_xep0030_server_info_identity_and_base_features(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=env.domain)
    assert ("server", "im") in identities(res), to_str(res)
    feats = features(res)
    assert {"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items"} <= feats, feats


# Each feature the server implements is advertised (XEP-0030 §3 and the XEP of each feature).
@pytest.mark.parametrize("feature", [
    "urn:xmpp:ping",          # XEP-0199 §6
    "vcard-temp",             # XEP-0054 §6
    "urn:xmpp:blocking",      # XEP-0191 §2
    "urn:xmpp:carbons:2",     # XEP-0280 §3
    "jabber:iq:version",      # XEP-0092 §4
    "jabber:iq:last",         # XEP-0012 §7
    "msgoffline",             # XEP-0160 §4 (SHOULD)
])
async def test_xep0030_server_advertises(env, feature):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=env.domain)
    assert feature in features(res), sorted(features(res))


async def test_xep0030_server_items(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to=env.domain)
    assert res.find("disco_items:query", NS) is not None, to_str(res)


async def test_xep0030_unknown_node_item_not_found(env):
    c = await env.client()
    res = await c.iq(f"<query xmlns='http://jabber.org/protocol/disco#info' node='urn:example:none:{new_id()}'/>",
                     to=env.domain)
    assert res.get("type") == "error" and stanza_error(res)[1] == "item-not-found", to_str(res)


async def test_xep0030_account_info_from_self(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=c.bare)
    assert ("account", "registered") in identities(res), to_str(res)


async def test_xep0030_account_items_from_self(env):
    c = await env.client()
    res = await c.iq_ok("<query xmlns='http://jabber.org/protocol/disco#items'/>", to=c.bare)
    assert res.find("disco_items:query", NS) is not None, to_str(res)


async def test_xep0030_account_info_from_contact(env):
    a, b = await env.online(), await env.online()
    await env.subscribe_mutually(a, b)
    res = await b.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=a.bare)
    assert ("account", "registered") in identities(res), to_str(res)


async def test_xep0030_info_of_unknown_account(env):
    c = await env.client()
    res = await c.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=f"ghost-{new_id()}@{env.domain}")
    assert res.get("type") == "error" and stanza_error(res)[1] in ("service-unavailable", "item-not-found"), to_str(res)


# --- XEP-0115 ----------------------------------------------------------------------------------

def caps_ver(info) -> str:
    """XEP-0115 §5.1 verification string (sha-1) of a disco#info result."""
    q = info.find("disco_info:query", NS)
    ids = sorted(
        "/".join([i.get("category", ""), i.get("type", ""), i.get("{http://www.w3.org/XML/1998/namespace}lang", ""),
                  i.get("name", "")])
        for i in q.findall("disco_info:identity", NS))
    s = "".join(x + "<" for x in ids)
    s += "".join(f + "<" for f in sorted(f.get("var") for f in q.findall("disco_info:feature", NS)))
    forms = []
    for form in q.findall("xdata:x", NS):
        fields = {}
        form_type = None
        for fld in form.findall("xdata:field", NS):
            values = sorted(v.text or "" for v in fld.findall("xdata:value", NS))
            if fld.get("var") == "FORM_TYPE":
                form_type = values[0] if values else ""
            else:
                fields[fld.get("var")] = values
        if form_type is None:
            continue
        part = form_type + "<" + "".join(var + "<" + "".join(v + "<" for v in vals)
                                         for var, vals in sorted(fields.items()))
        forms.append((form_type, part))
    s += "".join(p for _, p in sorted(forms))
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode()


async def test_xep0115_server_caps_in_stream_features(env):
    acc = env.account()
    r = await env.raw()
    _, feats = await r.login(acc)
    c = feats.find("caps:c", NS)
    assert c is not None, f"no caps in post-auth stream features: {to_str(feats)}"
    assert c.get("hash") == "sha-1" and c.get("node") and c.get("ver"), to_str(c)
    info = await r.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=env.domain)
    assert info.get("type") == "result", to_str(info)
    assert c.get("ver") == caps_ver(info), f"caps ver {c.get('ver')} does not match disco#info ({caps_ver(info)})"
    # §6.2: the node#ver form of the query is answered with the same information.
    node_info = await r.iq(f"<query xmlns='http://jabber.org/protocol/disco#info' node='{c.get('node')}#{c.get('ver')}'/>",
                           to=env.domain)
    assert node_info.get("type") == "result", to_str(node_info)
    assert caps_ver(node_info) == c.get("ver")
