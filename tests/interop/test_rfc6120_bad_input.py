"""Bad input: every case must end in the specified error, never a crash (the autouse fixture also
checks that the server process is still alive after each test)."""

import uuid

import pytest

from harness import NS, fresh_source_ip, is_message, stanza_error, tag, to_str

BILLION_LAUGHS = (
    "<?xml version='1.0'?>"
    "<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
    "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
    "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>]>"
)


async def _tls_stream(env, source_ip=None):
    r = await env.raw(source_ip=source_ip)
    await r.open_stream()
    await r.starttls()
    return r


async def _still_serving(env):
    """The server still accepts and serves a fresh session."""
    c = await env.client()
    res = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert res.get("type") == "result"


# --- §4.9.3.13 not-well-formed -----------------------------------------------------------------

@pytest.mark.parametrize("stage", ["after_tls", "authenticated"])
async def test_rfc6120_4_9_3_13_mismatched_tags_not_well_formed(env, stage):
    if stage == "after_tls":
        r = await _tls_stream(env)
    else:
        r, _ = await env.raw_session()
    r.send("<message><body>unclosed</message>")
    assert await r.stream_error() == "not-well-formed"
    await r.wait_closed()
    await _still_serving(env)


async def test_rfc6120_4_9_3_13_garbage_not_well_formed(env):
    r, _ = await env.raw_session()
    r.send("<<<>>>&&&")
    assert await r.stream_error() == "not-well-formed"


async def test_rfc6120_4_9_3_22_invalid_utf8(env):
    """Invalid UTF-8 is unsupported-encoding (§4.9.3.22) or, from an XML parser, not-well-formed."""
    r, _ = await env.raw_session()
    r.send(b"<message to='x@" + env.domain.encode() + b"'><body>\xff\xfe\xc3</body></message>")
    assert await r.stream_error() in ("unsupported-encoding", "not-well-formed")


# --- §11.1 restricted XML ----------------------------------------------------------------------

async def test_rfc6120_11_1_dtd_before_stream_header_restricted_xml(env):
    r = await env.raw()
    r.send(BILLION_LAUGHS + r.stream_header(decl=False))
    assert await r.stream_error() == "restricted-xml"
    await _still_serving(env)


async def test_rfc6120_11_1_dtd_after_starttls_restricted_xml(env):
    r = await env.raw()
    await r.open_stream()
    r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await r.inbox.wait(lambda e: e.tag == tag("tls", "proceed"))
    r._task.cancel()
    from harness import insecure_context
    await r.writer.start_tls(insecure_context(), server_hostname=env.domain)
    r.closed.clear()
    r._reset_parser()
    import asyncio
    r._task = asyncio.ensure_future(r._read_loop())
    r.send(BILLION_LAUGHS + r.stream_header(decl=False))
    assert await r.stream_error() == "restricted-xml"


async def test_rfc6120_11_1_entity_reference_rejected(env):
    """A reference to an entity that no (forbidden) DTD declared never reaches anyone."""
    r, jid = await env.raw_session()
    r.send(f"<message to='{jid}'><body>&lol9;</body></message>")
    assert await r.stream_error() in ("restricted-xml", "not-well-formed")


@pytest.mark.parametrize("where", ["between_stanzas", "inside_stanza"])
async def test_rfc6120_11_1_comment_restricted_xml(env, where):
    r, jid = await env.raw_session()
    if where == "between_stanzas":
        r.send("<!-- a comment -->")
    else:
        r.send(f"<message to='{jid}'><!-- a comment --><body>x</body></message>")
    assert await r.stream_error() == "restricted-xml"
    assert not r.inbox.find(is_message(body="x"))


@pytest.mark.parametrize("where", ["between_stanzas", "inside_stanza"])
async def test_rfc6120_11_1_processing_instruction_restricted_xml(env, where):
    r, jid = await env.raw_session()
    if where == "between_stanzas":
        r.send("<?evil instruction?>")
    else:
        r.send(f"<message to='{jid}'><?evil instruction?><body>x</body></message>")
    assert await r.stream_error() == "restricted-xml"


async def test_rfc6120_11_1_comment_before_auth_restricted_xml(env):
    r = await _tls_stream(env)
    r.send("<!-- hello -->")
    assert await r.stream_error() == "restricted-xml"


# --- §13.12 stanza size ------------------------------------------------------------------------

async def test_rfc6120_13_12_oversized_stanza_policy_violation(env):
    r, jid = await env.raw_session()
    r.send(f"<message to='{jid}' type='chat'><body>{'A' * (300 * 1024)}</body></message>")
    assert await r.stream_error() == "policy-violation"
    await _still_serving(env)


async def test_rfc6120_13_12_large_stanza_below_limit_delivered(env):
    c = await env.client()
    body = "B" * (200 * 1024)
    c.message(c.jid, body)
    got = await c.inbox.wait(is_message(frm=c.jid))
    assert got.findtext("c:body", namespaces=NS) == body


async def test_rfc6120_13_12_oversized_before_auth_policy_violation(env):
    r = await _tls_stream(env)
    r.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{'A' * (300 * 1024)}</auth>")
    assert await r.stream_error() == "policy-violation"


# --- §4.9.3 other stream-level errors ----------------------------------------------------------

async def test_rfc6120_4_9_3_6_host_unknown(env):
    r = await env.raw()
    r.send(r.stream_header(to="unknown-domain.example"))
    assert await r.stream_error() == "host-unknown"


async def test_rfc6120_4_9_3_10_invalid_namespace(env):
    r = await env.raw()
    r.send("<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' "
           "xmlns:stream='http://example.com/not-streams'>" % env.domain)
    assert await r.stream_error() == "invalid-namespace"


async def test_rfc6120_4_7_5_higher_major_version_not_accepted_as_is(env):
    """A client offering version 2.0 either gets the server's own version back (§4.7.5: the lower of the
    two) or an <unsupported-version/> stream error (§4.9.3.25); never a 2.0 stream."""
    r = await env.raw()
    r.send(r.stream_header(version="2.0"))
    el = await r.inbox.wait(lambda e: e.tag in ("stream-header", tag("stream", "error")))
    if el.tag == tag("stream", "error"):
        assert el.find("streams:unsupported-version", NS) is not None, to_str(el)
        return
    if el.get("version") != "1.0":
        assert await r.stream_error() == "unsupported-version", el.attrib


async def test_rfc6120_4_9_3_24_unsupported_stanza_type(env):
    r, _ = await env.raw_session()
    r.send("<foo xmlns='jabber:client'/>")
    assert await r.stream_error() == "unsupported-stanza-type"


# --- §8.1.2.1 'from' stamping ------------------------------------------------------------------

async def test_rfc6120_8_1_2_1_spoofed_from_on_message_is_stamped(env):
    a, b = await env.client(), await env.client()
    victim = env.account()
    a.send(f"<message from='{victim.jid}/x' to='{b.jid}' type='chat'><body>spoof</body></message>")
    got = await b.inbox.wait(is_message(body="spoof"))
    assert got.get("from") == a.jid, f"from not stamped with the sender's full JID: {to_str(got)}"


async def test_rfc6120_8_1_2_1_spoofed_from_on_subscription_is_stamped_bare(env):
    a, b = await env.online(), await env.online()
    victim = env.account()
    a.send(f"<presence from='{victim.jid}' to='{b.bare}' type='subscribe'/>")
    got = await b.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.get("type") == "subscribe")
    assert got.get("from") == a.bare, f"subscription request not stamped with the sender's bare JID: {to_str(got)}"


async def test_rfc6120_8_1_2_1_spoofed_from_on_iq_answered_to_sender(env):
    a = await env.client()
    victim = await env.client()
    a.send(f"<iq type='get' id='sp1' from='{victim.jid}' to='{env.domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    res = await a.inbox.wait(lambda e: e.tag == tag("c", "iq") and e.get("id") == "sp1")
    assert res.get("type") == "result"
    await victim.barrier(victim)
    assert not victim.inbox.find(lambda e: e.get("id") == "sp1")


# --- §8.2.3 / §8.3 IQ semantics -----------------------------------------------------------------

@pytest.mark.parametrize("to", ["domain", "own_bare"])
@pytest.mark.parametrize("type_", ["get", "set"])
async def test_rfc6120_8_4_iq_unknown_namespace_service_unavailable(env, to, type_):
    c = await env.client()
    dest = env.domain if to == "domain" else c.bare
    res = await c.iq("<query xmlns='urn:example:starling:unknown'/>", type_, to=dest)
    assert res.get("type") == "error", to_str(res)
    assert stanza_error(res) == ("cancel", "service-unavailable"), to_str(res)


async def test_rfc6120_8_2_3_iq_with_two_children_bad_request(env):
    c = await env.client()
    res = await c.iq("<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert res.get("type") == "error" and stanza_error(res)[1] == "bad-request", to_str(res)


async def test_rfc6120_8_2_3_iq_without_id_bad_request(env):
    r, _ = await env.raw_session()
    r.send(f"<iq type='get' to='{env.domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    el = await r.inbox.wait(lambda e: e.tag in (tag("c", "iq"), tag("stream", "error")))
    if el.tag == tag("c", "iq"):
        assert el.get("type") == "error" and stanza_error(el)[1] == "bad-request", to_str(el)
    else:  # a stream error is also acceptable for a malformed stanza (§8.3.1)
        assert el.find("streams:bad-format", NS) is not None or el.find("streams:invalid-xml", NS) is not None, to_str(el)


@pytest.mark.parametrize("type_", ["result", "error"])
async def test_rfc6120_8_2_3_unsolicited_iq_response_dropped(env, type_):
    c = await env.client()
    bogus = "bogus-" + uuid.uuid4().hex[:6]
    body = "" if type_ == "result" else \
        "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
    c.send(f"<iq type='{type_}' id='{bogus}' to='{env.domain}'>{body}</iq>")
    res = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert res.get("type") == "result"
    assert not c.inbox.find(lambda e: e.get("id") == bogus), "the server answered an unsolicited IQ response"


# --- RFC 6121 §8.5.1: no such user -------------------------------------------------------------

@pytest.mark.parametrize("type_", ["normal", "chat"])
async def test_rfc6121_8_5_1_message_to_unknown_user_service_unavailable(env, type_):
    c = await env.client()
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@{env.domain}"
    c.send(f"<message to='{ghost}' type='{type_}' id='m1'><body>hello?</body></message>")
    err = await c.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("type") == "error")
    assert err.get("from") == ghost and err.get("id") == "m1", to_str(err)
    assert stanza_error(err)[1] == "service-unavailable", to_str(err)


async def test_rfc6121_8_5_1_iq_to_unknown_user_service_unavailable(env):
    """RFC 6121 §8.5.1: IQ to a non-existent account -> service-unavailable (even for ping: the server must
    not answer on behalf of an account that does not exist)."""
    c = await env.client()
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@{env.domain}"
    res = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=ghost)
    assert res.get("type") == "error" and stanza_error(res)[1] == "service-unavailable", to_str(res)


# --- invalid addresses (RFC 7622) → jid-malformed ----------------------------------------------

BAD_JIDS = {
    "empty_localpart": "@{d}",
    "empty_resource": "someone@{d}/",
    "two_at_signs": "a@b@{d}",
    "forbidden_char_in_localpart": 'us"er@{d}',
    "localpart_too_long": "x" * 1024 + "@{d}",
    "space_in_localpart": "some one@{d}",
}


@pytest.mark.parametrize("name", sorted(BAD_JIDS))
async def test_rfc6120_8_3_3_8_invalid_to_jid_malformed(env, name):
    from xml.sax.saxutils import quoteattr
    c = await env.client()
    bad = BAD_JIDS[name].format(d=env.domain)
    c.send(f"<iq type='get' id='bad1' to={quoteattr(bad)}><ping xmlns='urn:xmpp:ping'/></iq>")
    res = await c.inbox.wait(lambda e: e.tag == tag("c", "iq") and e.get("id") == "bad1")
    assert res.get("type") == "error" and stanza_error(res) == ("modify", "jid-malformed"), to_str(res)
    c.send(f"<message type='chat' id='bad2' to={quoteattr(bad)}><body>x</body></message>")
    res = await c.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("id") == "bad2")
    assert res.get("type") == "error" and stanza_error(res)[1] == "jid-malformed", to_str(res)
    # The stream survives.
    pong = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert pong.get("type") == "result"


# --- unclosed streams and what is already stored ----------------------------------------------

async def test_rfc6120_unclosed_stream_half_stanza_then_drop(env):
    """A client that dies mid-stanza (stream never closed): the half stanza is never delivered, the
    resource goes unavailable for its contacts, and the server keeps serving."""
    watcher = await env.online()
    r, jid = await env.raw_session()
    r.send("<presence/>")
    await watcher.barrier(watcher)
    r.send(f"<message to='{watcher.jid}' type='chat'><body>half a stan")
    await r.close()
    watcher_probe = await env.client()
    watcher_probe.message(watcher.jid, "after the drop")
    await watcher.inbox.wait(is_message(body="after the drop"))
    assert not watcher.inbox.find(is_message(body="half a stan")), "a partial stanza was delivered"
    await _still_serving(env)


async def test_rfc6120_bad_input_does_not_lose_stored_messages(env):
    """Offline messages stored before a client sends hostile input are still delivered afterwards."""
    sender = await env.client()
    offline = env.account()
    sender.message(offline.jid, "kept across bad input", type_="chat")
    await sender.barrier(sender)
    attacker, _ = await env.raw_session(offline)
    attacker.send(BILLION_LAUGHS)
    assert await attacker.stream_error() == "restricted-xml"
    receiver = await env.online(offline)
    await receiver.inbox.wait(is_message(body="kept across bad input"))
