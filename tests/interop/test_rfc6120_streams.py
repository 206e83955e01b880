"""RFC 6120: stream setup, STARTTLS (§5), direct TLS (XEP-0368), SASL (§6), resource binding (§7)."""

import asyncio
import base64
import time
import uuid

import pytest

from harness import NS, Account, fresh_source_ip, is_message, is_presence, tag, to_str


# --- §4: stream header ------------------------------------------------------------------------

async def test_rfc6120_4_7_response_stream_header(env):
    r = await env.raw()
    await r.open_stream()
    h = r.header
    assert h.get("from") == env.domain, h            # §4.7.1: 'from' is the service domain
    assert h.get("id"), h                             # §4.7.3: a fresh stream id
    assert h.get("version") == "1.0", h               # §4.7.5


async def test_rfc6120_4_7_3_stream_ids_are_unique(env):
    ids = set()
    for _ in range(3):
        r = await env.raw()
        await r.open_stream()
        ids.add(r.header.get("id"))
    assert len(ids) == 3


# --- §5: STARTTLS -------------------------------------------------------------------------------

async def test_rfc6120_5_3_1_starttls_offered_as_required(env):
    r = await env.raw()
    feats = await r.open_stream()
    starttls = feats.find("tls:starttls", NS)
    assert starttls is not None, to_str(feats)
    assert starttls.find("tls:required", NS) is not None, "require_tls=true must advertise <required/>"


async def test_rfc6120_5_3_1_no_plain_auth_offered_before_tls(env):
    r = await env.raw()
    feats = await r.open_stream()
    mechs = [m.text for m in feats.findall("sasl:mechanisms/sasl:mechanism", NS)]
    assert "PLAIN" not in mechs, f"PLAIN offered over an unencrypted stream: {mechs}"


async def test_rfc6120_5_4_3_starttls_negotiation(env):
    r = await env.raw()
    await r.open_stream()
    feats = await r.starttls()
    ssl_object = r.writer.get_extra_info("ssl_object")
    assert ssl_object is not None
    assert ssl_object.version() in ("TLSv1.2", "TLSv1.3"), ssl_object.version()  # RFC 7590 §3.1
    # §5.3.1: STARTTLS is not offered again once TLS is in place; SASL is now offered.
    assert feats.find("tls:starttls", NS) is None, to_str(feats)
    mechs = [m.text for m in feats.findall("sasl:mechanisms/sasl:mechanism", NS)]
    for m in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        assert m in mechs, f"{m} not offered after TLS: {mechs}"


async def test_rfc6120_5_4_3_session_over_starttls_with_slixmpp(env):
    c = await env.client()
    assert c.x.transport.get_extra_info("ssl_object") is not None, "session is not encrypted"
    pong = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert pong.get("type") == "result"


async def test_rfc6120_5_3_1_stanza_before_tls_refused(env):
    """With TLS required, nothing but STARTTLS is processed on the plain stream (§5.3.1, §4.9.3.12)."""
    r = await env.raw()
    await r.open_stream()
    r.send(f"<iq type='get' id='early' to='{env.domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    cond = await r.stream_error()
    assert cond in ("not-authorized", "policy-violation"), cond
    assert not r.inbox.find(lambda e: e.tag == tag("c", "iq") and e.get("type") == "result")


# --- XEP-0368: direct TLS ---------------------------------------------------------------------

async def test_xep0368_direct_tls_features(env):
    r = await env.raw(direct_tls=True)
    feats = await r.open_stream()
    assert r.writer.get_extra_info("ssl_object") is not None
    assert feats.find("tls:starttls", NS) is None, "STARTTLS offered on an already encrypted stream"
    mechs = [m.text for m in feats.findall("sasl:mechanisms/sasl:mechanism", NS)]
    assert "SCRAM-SHA-256" in mechs and "PLAIN" in mechs, mechs


async def test_xep0368_direct_tls_session_with_slixmpp(env):
    c = await env.client(direct_tls=True)
    assert c.x.transport.get_extra_info("ssl_object") is not None
    pong = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert pong.get("type") == "result"


async def test_xep0368_direct_tls_login_raw(env):
    acc = env.account()
    r = await env.raw(direct_tls=True)
    jid, _ = await r.login(acc, "dtls", tls=False)
    assert jid == f"{acc.jid}/dtls"


# --- §6: SASL -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_rfc6120_6_sasl_mechanism_with_slixmpp(env, mech):
    c = await env.client(mech=mech)
    assert c.mechanism == mech
    assert c.x.boundjid.bare == c.bare


@pytest.mark.parametrize("hash_name", ["SHA-256", "SHA-1"])
async def test_rfc6120_6_4_scram_exchange_raw(env, hash_name):
    """Full SCRAM exchange by hand, including verification of the server signature (RFC 5802 §3)."""
    acc = env.account()
    r = await env.raw()
    await r.open_stream()
    await r.starttls()
    res = await r.auth_scram(acc.localpart, acc.password, hash_name)
    assert res.tag == tag("sasl", "success"), to_str(res)
    await r.open_stream()
    jid = await r.bind("scram")
    assert jid == f"{acc.jid}/scram"


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"])
async def test_rfc6120_6_4_5_wrong_password_not_authorized(env, mech):
    acc = env.account()
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    await r.starttls()
    if mech == "PLAIN":
        res = await r.auth_plain(acc.localpart, "wrong-password")
    else:
        res = await r.auth_scram(acc.localpart, "wrong-password", mech[len("SCRAM-"):])
    assert res.tag == tag("sasl", "failure"), to_str(res)
    assert res.find("sasl:not-authorized", NS) is not None, to_str(res)


@pytest.mark.parametrize("client_first", ["n,a,n=user,r=abc", "n,,n,r=abc", "n,,n=user,r"])
async def test_rfc6120_6_4_5_scram_message_with_a_truncated_attribute_is_malformed(env, client_first):
    """Attributes shorter than `x=` (found by fuzzing: rsasl's parser panicked on them) are a
    `malformed-request` failure, and the stream goes on: a correct login follows on it."""
    acc = env.account()
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    await r.starttls()
    blob = base64.b64encode(client_first.encode()).decode()
    r.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{blob}</auth>")
    res = await r.inbox.wait(lambda e: e.tag in (tag("sasl", "failure"), tag("stream", "error"), "stream-end"))
    assert res.tag == tag("sasl", "failure") and res.find("sasl:malformed-request", NS) is not None, to_str(res)
    assert (await r.auth_plain(acc.localpart, acc.password)).tag == tag("sasl", "success")


async def test_rfc6120_6_4_5_unknown_user_not_authorized(env):
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    await r.starttls()
    res = await r.auth_plain("nosuchuser-" + uuid.uuid4().hex[:6], "whatever")
    assert res.tag == tag("sasl", "failure") and res.find("sasl:not-authorized", NS) is not None, to_str(res)


async def test_rfc6120_6_4_5_retries_limited_per_stream(env):
    """At least 2 retries are allowed, and the server stops accepting retries after at most 5 (§6.4.5):
    the stream is then closed with a stream error (Starling: policy-violation)."""
    acc = env.account()
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    await r.starttls()
    failures = 0
    for _ in range(7):
        res = await r.auth_plain(acc.localpart, "wrong-password")
        if res.tag != tag("sasl", "failure"):
            break
        assert res.find("sasl:not-authorized", NS) is not None, to_str(res)
        failures += 1
        if r.closed.is_set():
            break
    assert failures >= 3, f"only {failures} attempts allowed; RFC 6120 §6.4.5 asks for at least 2 retries"
    assert failures <= 6, f"{failures} failed attempts accepted on one stream; RFC 6120 §6.4.5: at most 5 retries"
    cond = await r.stream_error()
    assert cond == "policy-violation", cond


async def test_sasl_failures_throttle_the_account_from_that_address_only(env):
    """Repeated failures for one account from one address are throttled across connections: further
    attempts for it from there, even with the right password, get <temporary-auth-failure/> for a
    while. Nobody else is locked out: another account's right password from the same address (a
    NAT's other users) and the account's own right password from another address still work. Each
    further failure is answered later than the one before (a guesser slows down; one typo does not)."""
    ip = fresh_source_ip()
    victim, other = env.account(), env.account()
    attempts = 0
    throttled = False
    answered_after = []
    for _ in range(4):  # up to 4 connections x a few attempts each
        r = await env.raw(source_ip=ip)
        await r.open_stream()
        await r.starttls()
        while not r.closed.is_set() and attempts < 12:
            asked = time.monotonic()
            res = await r.auth_plain(victim.localpart, "wrong-password")
            answered_after.append(time.monotonic() - asked)
            if res.tag != tag("sasl", "failure"):
                break
            attempts += 1
            if res.find("sasl:temporary-auth-failure", NS) is not None:
                throttled = True
                break
        await r.close()
        if throttled:
            break
    assert throttled, f"{attempts} failed attempts from one address without any throttling"
    if env.target.kind == "starling":  # [c2s] auth_failure_delay_ms = 250 by default
        assert answered_after[0] < 0.2 and answered_after[1] >= 0.2 and answered_after[2] >= 0.45, answered_after
    # The victim's right password from the guessing address is refused while throttled.
    r = await env.raw(source_ip=ip)
    await r.open_stream()
    await r.starttls()
    res = await r.auth_plain(victim.localpart, victim.password)
    assert res.tag == tag("sasl", "failure") and res.find("sasl:temporary-auth-failure", NS) is not None, to_str(res)
    await r.close()
    # Another user behind the same address logs in.
    r = await env.raw(source_ip=ip)
    await r.open_stream()
    await r.starttls()
    res = await r.auth_plain(other.localpart, other.password)
    assert res.tag == tag("sasl", "success"), to_str(res)
    await r.close()
    # The victim logs in from elsewhere.
    c = await env.client(victim)
    assert c.x.boundjid.bare == victim.jid


async def test_rfc6120_6_4_plain_before_tls_refused(env):
    """PLAIN over an unencrypted stream must not authenticate (encryption-required / not offered)."""
    acc = env.account()
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    res = await r.auth_plain(acc.localpart, acc.password)
    assert res.tag != tag("sasl", "success"), "PLAIN succeeded before TLS"
    if res.tag == tag("sasl", "failure"):
        conds = [c.tag.split("}")[1] for c in res]
        assert {"encryption-required", "invalid-mechanism"} & set(conds), to_str(res)


# --- §7: resource binding -----------------------------------------------------------------------

async def test_rfc6120_7_7_client_chosen_resource(env):
    c = await env.client(resource="balcony-7")
    assert c.jid == f"{c.bare}/balcony-7"


async def test_rfc6120_7_6_server_generated_resource(env):
    acc = env.account()
    r = await env.raw()
    jid, _ = await r.login(acc, resource=None)
    assert jid and jid.startswith(acc.jid + "/") and len(jid) > len(acc.jid) + 1, jid


async def test_rfc6120_7_7_2_2_resource_conflict_new_session_wins(env):
    acc = env.account()
    old = await env.online(acc, "dup")
    new = await env.client(acc, "dup")
    assert new.jid == f"{acc.jid}/dup", "the new session must get the requested resource"
    await asyncio.wait_for(old.disconnected.wait(), 10)
    assert "conflict" in old.stream_errors, f"old session ended without a conflict stream error: {old.stream_errors}"
    # Stanzas for the full JID now reach the new session.
    peer = await env.client()
    peer.message(new.jid, "to-the-new-one")
    await new.inbox.wait(is_message(body="to-the-new-one"))


async def test_rfc6120_7_multiple_resources_bound(env):
    acc = env.account()
    r1 = await env.online(acc, "one")
    r2 = await env.online(acc, "two")
    assert {r1.jid, r2.jid} == {f"{acc.jid}/one", f"{acc.jid}/two"}
    # RFC 6121 §4.2.2: initial presence goes to all of the user's available resources.
    await r1.inbox.wait(is_presence(frm=r2.jid))
    peer = await env.client()
    peer.message(r2.jid, "for-two")
    peer.message(r1.jid, "for-one")
    await r2.inbox.wait(is_message(body="for-two"))
    await r1.inbox.wait(is_message(body="for-one"))
    assert not r1.inbox.find(is_message(body="for-two"))
    assert not r2.inbox.find(is_message(body="for-one"))


# --- §4.6.1 whitespace keepalive; XEP-0199 ping --------------------------------------------------

async def test_rfc6120_4_6_1_whitespace_keepalive_accepted(env):
    r, jid = await env.raw_session()
    for _ in range(5):
        r.send(" ")
        r.send("\n\t \r\n")
    res = await r.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert res.get("type") == "result", to_str(res)
    assert not r.closed.is_set()


async def test_xep0199_client_to_server_ping(env):
    c = await env.client()
    res = await c.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    assert res.get("type") == "result", to_str(res)
    assert res.get("from") == env.domain


@pytest.mark.starling_only
async def test_xep0199_server_pings_idle_client(env):
    """An idle client is pinged by the server (configured idle delay); answering keeps it connected."""
    r, jid = await env.raw_session()
    # The server looks at the connection again a ping timeout (10 s) after a ping, sees the answer
    # and waits another idle delay: the second ping comes ping_idle + 10 s after the first.
    deadline = env.target.ping_idle + 10 + 5
    for round_ in range(2):
        ping = await r.inbox.wait(
            lambda e: e.tag == tag("c", "iq") and e.get("type") == "get" and e.find("ping:ping", NS) is not None,
            deadline, what=f"server ping #{round_ + 1}")
        assert ping.get("from") in (None, env.domain), to_str(ping)
        r.send(f"<iq type='result' id='{ping.get('id')}' to='{env.domain}'/>")
    assert not r.closed.is_set()


@pytest.mark.starling_only
async def test_xep0199_unanswered_ping_closes_connection(env):
    """A client that answers nothing is considered dead after the ping timeout."""
    r, jid = await env.raw_session()
    await r.inbox.wait(lambda e: e.tag == tag("c", "iq") and e.find("ping:ping", NS) is not None,
                       env.target.ping_idle + 10, what="server ping")
    await r.wait_closed(timeout=30)
    errs = r.inbox.find(lambda e: e.tag == tag("stream", "error"))
    if errs:
        assert errs[0].find("streams:connection-timeout", NS) is not None, to_str(errs[0])
