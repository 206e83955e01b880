"""Starling's own surface: the account CLI (run by the session fixture before start) and the admin HTTP."""

import urllib.request

import pytest

from harness import Account, fresh_source_ip, tag, to_str

pytestmark = pytest.mark.starling_only


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode(errors="replace")


def test_admin_healthz_readyz(target):
    assert _get(target.admin_url + "/healthz")[0] == 200
    assert _get(target.admin_url + "/readyz")[0] == 200


def test_admin_metrics_prometheus_text(target):
    status, body = _get(target.admin_url + "/metrics")
    assert status == 200
    assert "# TYPE" in body, body[:500]


def test_cli_user_list(target):
    out = target.user_list_output
    assert "user1@" in out and "changedpw" in out, out[:2000]
    assert "removeduser" not in out, "removed account still listed"


async def test_cli_user_passwd_new_password_works(env):
    acc = env.target.special["passwd"]
    c = await env.client(Account(acc.localpart, "new-Password-2", acc.domain))
    assert c.x.boundjid.bare == acc.jid


async def test_cli_user_passwd_old_password_refused(env):
    acc = env.target.special["passwd"]
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    await r.starttls()
    res = await r.auth_plain(acc.localpart, acc.password)
    assert res.tag == tag("sasl", "failure"), to_str(res)


async def test_cli_user_remove_refuses_login(env):
    acc = env.target.special["removed"]
    r = await env.raw(source_ip=fresh_source_ip())
    await r.open_stream()
    await r.starttls()
    res = await r.auth_plain(acc.localpart, acc.password)
    assert res.tag == tag("sasl", "failure"), to_str(res)


async def test_metrics_count_logins(env):
    before = _get(env.target.admin_url + "/metrics")[1]
    await env.client()
    after = _get(env.target.admin_url + "/metrics")[1]
    assert before != after, "metrics did not change after a login"
