"""XEP-0077 in-band registration: off by default; when on, only over TLS and rate-limited per address.

Each registration attempt comes from its own loopback source address so the per-address limit of one
test does not affect another.
"""

from harness import NS, Account, fresh_source_ip, new_id, stanza_error, tag, to_str


async def _tls_stream(env, ip=None):
    r = await env.raw(source_ip=ip or fresh_source_ip())
    await r.open_stream()
    feats = await r.starttls()
    return r, feats


def _form(username=None, password=None):
    u = f"<username>{username}</username>" if username is not None else ""
    p = f"<password>{password}</password>" if password is not None else ""
    return f"<query xmlns='jabber:iq:register'>{u}{p}</query>"


async def _register(env, username, password, ip=None):
    r, _ = await _tls_stream(env, ip)
    return await r.iq(_form(username, password), "set")


async def _login_result(env, acc: Account):
    """Tries PLAIN from a fresh address; returns the SASL outcome element."""
    r, _ = await _tls_stream(env)
    return await r.auth_plain(acc.localpart, acc.password)


def _name():
    return "reg" + new_id()


# --- registration disabled (the default) -------------------------------------------------------

async def test_xep0077_disabled_by_default_not_advertised(env):
    r, feats = await _tls_stream(env)
    assert feats.find("register_feature:register", NS) is None, to_str(feats)


async def test_xep0077_disabled_by_default_refused(env):
    name, pw = _name(), "Pw-" + new_id()
    res = await _register(env, name, pw)
    assert res.get("type") == "error", f"registration accepted although disabled: {to_str(res)}"
    out = await _login_result(env, Account(name, pw, env.domain))
    assert out.tag == tag("sasl", "failure"), f"account exists after a refused registration: {to_str(out)}"


# --- registration enabled ----------------------------------------------------------------------

async def test_xep0077_feature_advertised_after_tls(reg_env):
    r, feats = await _tls_stream(reg_env)
    assert feats.find("register_feature:register", NS) is not None, to_str(feats)


async def test_xep0077_not_offered_before_tls(reg_env):
    r = await reg_env.raw(source_ip=fresh_source_ip())
    feats = await r.open_stream()
    assert feats.find("register_feature:register", NS) is None, f"registration offered in the clear: {to_str(feats)}"


async def test_xep0077_registration_form(reg_env):
    r, _ = await _tls_stream(reg_env)
    res = await r.iq(_form(), "get")
    assert res.get("type") == "result", to_str(res)
    q = res.find("register:query", NS)
    assert q.find("register:username", NS) is not None and q.find("register:password", NS) is not None, to_str(res)


async def test_xep0077_register_then_login(reg_env):
    name, pw = _name(), "Pw-" + new_id()
    res = await _register(reg_env, name, pw)
    assert res.get("type") == "result", to_str(res)
    c = await reg_env.client(Account(name, pw, reg_env.domain))
    assert c.x.boundjid.bare == f"{name}@{reg_env.domain}"


async def test_xep0077_duplicate_username_conflict(reg_env):
    name = _name()
    first = await _register(reg_env, name, "Pw-1-" + new_id())
    assert first.get("type") == "result", to_str(first)
    second = await _register(reg_env, name, "Pw-2-" + new_id())
    assert second.get("type") == "error" and stanza_error(second)[1] == "conflict", to_str(second)


async def test_xep0077_missing_password_not_acceptable(reg_env):
    res = await _register(reg_env, _name(), None)
    assert res.get("type") == "error" and stanza_error(res)[1] in ("not-acceptable", "bad-request"), to_str(res)


async def test_xep0077_rate_limited_per_address(reg_env):
    ip = fresh_source_ip()
    first = await _register(reg_env, _name(), "Pw-" + new_id(), ip)
    assert first.get("type") == "result", to_str(first)
    second = await _register(reg_env, _name(), "Pw-" + new_id(), ip)
    assert second.get("type") == "error", f"second registration from the same address accepted at once: {to_str(second)}"
    etype, cond = stanza_error(second)
    assert etype == "wait" or cond in ("resource-constraint", "policy-violation", "not-allowed"), to_str(second)
    # Another address is not affected.
    third = await _register(reg_env, _name(), "Pw-" + new_id())
    assert third.get("type") == "result", to_str(third)


async def test_xep0077_a_taken_name_does_not_use_up_the_address(reg_env):
    """Only registrations that happened count against the address: someone who picked a taken
    name tries another at once."""
    taken = _name()
    assert (await _register(reg_env, taken, "Pw-" + new_id())).get("type") == "result"
    ip = fresh_source_ip()
    refused = await _register(reg_env, taken, "Pw-" + new_id(), ip)
    assert stanza_error(refused)[1] == "conflict", to_str(refused)
    again = await _register(reg_env, _name(), "Pw-" + new_id(), ip)
    assert again.get("type") == "result", to_str(again)


async def test_xep0077_3_3_change_password(reg_env):
    name, old, new = _name(), "Old-" + new_id(), "New-" + new_id()
    assert (await _register(reg_env, name, old)).get("type") == "result"
    r = await reg_env.raw(source_ip=fresh_source_ip())
    await r.login(Account(name, old, reg_env.domain))
    res = await r.iq(_form(name, new), "set")
    assert res.get("type") == "result", to_str(res)
    assert (await _login_result(reg_env, Account(name, new, reg_env.domain))).tag == tag("sasl", "success")
    assert (await _login_result(reg_env, Account(name, old, reg_env.domain))).tag == tag("sasl", "failure")


async def test_xep0077_3_2_cancel_registration(reg_env):
    name, pw = _name(), "Pw-" + new_id()
    assert (await _register(reg_env, name, pw)).get("type") == "result"
    r = await reg_env.raw(source_ip=fresh_source_ip())
    await r.login(Account(name, pw, reg_env.domain))
    res = await r.iq("<query xmlns='jabber:iq:register'><remove/></query>", "set")
    assert res.get("type") == "result", to_str(res)
    out = await _login_result(reg_env, Account(name, pw, reg_env.domain))
    assert out.tag == tag("sasl", "failure"), f"account still usable after <remove/>: {to_str(out)}"
