"""Issue 18 item 6: the admin API on the admin port. Accounts created, changed
and deleted through it work at once for logins (a real client logs in); every bad request gets its
status and a JSON error, and nothing half-done: no token 401, wrong token 403, malformed JSON or
unknown fields or a foreign address 400, an existing account 409, an unknown one 404, a body over
64 KiB 413."""

import asyncio
import json
import urllib.error
import urllib.request
import uuid

import pytest

from harness import Account, ConnectFailed, is_message, to_str

pytestmark = pytest.mark.starling_only


def call(at, method: str, path: str, body=None, token: str | None = "server", raw: bytes | None = None):
    """(status, JSON body or None, headers) of one API request to the suite's target or to a
    StarlingServer (`at`)."""
    server = getattr(at, "server", at)
    if token == "server":
        token = (server.dir / "data" / "admin.token").read_text().strip()
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.admin_url + path, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, (json.loads(text) if text else None), response.headers
    except urllib.error.HTTPError as refused:
        text = refused.read()
        return refused.code, (json.loads(text) if text else None), refused.headers


async def logs_in(env, account: Account) -> bool:
    try:
        client = await env.client(account)
    except ConnectFailed:
        return False
    client.kill()
    return True


async def test_admin_api_manages_accounts_and_refuses_bad_requests(env, target):
    status, body, headers = call(target, "GET", "/api/v1/status", token=None)
    assert status == 401 and "error" in body and headers["WWW-Authenticate"] == "Bearer"
    assert call(target, "GET", "/api/v1/status", token="0" * 64)[0] == 403
    status, body, _ = call(target, "GET", "/api/v1/status")
    assert status == 200 and body["domain"] == env.domain and body["role"] == "all" and body["ready"] is True, body

    name = f"api{uuid.uuid4().hex[:8]}"
    account = Account(name, "first-Pw-1", env.domain)
    assert call(target, "POST", "/api/v1/users", {"user": name, "password": "first-Pw-1"})[:2] == (201, {"jid": account.jid})
    assert await logs_in(env, account)
    assert name + "@" + env.domain in call(target, "GET", "/api/v1/users")[1]["users"]
    assert call(target, "POST", "/api/v1/users", {"user": account.jid, "password": "x"})[0] == 409

    for bad in ({"user": name}, {"user": name, "password": "p", "admin": True}, {"user": f"{name}@elsewhere.example", "password": "p"},
                {"user": "a b", "password": "p"}, {"user": "fresh" + name, "password": ""}):
        status, body, _ = call(target, "POST", "/api/v1/users", bad)
        assert status == 400 and body["error"], (bad, status, body)
    assert call(target, "POST", "/api/v1/users", raw=b"{not json")[0] == 400
    assert call(target, "POST", "/api/v1/users", raw=b"{" + b" " * 70_000 + b"}")[0] == 413
    assert f"fresh{name}@{env.domain}" not in call(target, "GET", "/api/v1/users")[1]["users"], "a refused create creates nothing"

    assert call(target, "PUT", f"/api/v1/users/{name}/password", {"password": "second-Pw-2"})[0] == 204
    assert not await logs_in(env, account)
    assert await logs_in(env, Account(name, "second-Pw-2", env.domain))
    assert call(target, "PUT", "/api/v1/users/nobody-here/password", {"password": "x"})[0] == 404

    assert call(target, "DELETE", f"/api/v1/users/{name}")[0] == 204
    assert call(target, "DELETE", f"/api/v1/users/{name}")[0] == 404
    assert not await logs_in(env, Account(name, "second-Pw-2", env.domain))


async def test_the_cli_goes_through_the_running_servers_api(env, target):
    """`starling user …` while the server runs (on the embedded store the server holds the only
    write lock): the CLI finds the admin API with the configuration's token and asks it."""
    name = f"cli{uuid.uuid4().hex[:8]}"
    cli = target.server.cli
    assert f"created {name}@{env.domain}" in cli("user", "add", name, "--password", "cli-Pw-1").stdout
    assert await logs_in(env, Account(name, "cli-Pw-1", env.domain))
    assert f"{name}@{env.domain}" in cli("user", "list").stdout.split()
    refused = cli("user", "add", name, "--password", "x", check=False)
    assert refused.returncode != 0 and "409" in refused.stderr, refused.stderr
    cli("user", "passwd", name, "--password", "cli-Pw-2")
    assert await logs_in(env, Account(name, "cli-Pw-2", env.domain))
    cli("user", "remove", name)
    assert f"{name}@{env.domain}" not in cli("user", "list").stdout.split()


async def test_admin_api_lists_and_ends_sessions_and_sends_messages(env, target):
    """Sessions: listed with their state; ended for a user or one resource (`policy-violation`);
    deleting an account that is online ends its streams (`not-authorized`). Messages from the
    server's domain to one user, and an announcement (a headline) to everyone online."""
    account = env.account()
    phone = await env.online(account, resource="phone")
    laptop = await env.online(account, resource="laptop")
    status, body, _ = call(target, "GET", "/api/v1/sessions?limit=100000")
    assert status == 200 and body["truncated"] is False, body
    mine = {entry["jid"]: entry for entry in body["sessions"] if entry["jid"].startswith(account.jid + "/")}
    assert set(mine) == {phone.jid, laptop.jid} and all(entry["available"] and entry["connected"] for entry in mine.values()), mine
    assert call(target, "GET", "/api/v1/sessions?limit=many")[0] == 400

    status, body, _ = call(target, "POST", "/api/v1/messages", {"to": account.localpart, "body": "maintenance at noon", "subject": "ops"})
    assert status == 202 and body["to"] == account.jid, body
    for client in (phone, laptop):
        got = await client.inbox.wait(is_message(frm=env.domain, body="maintenance at noon"))
        assert got.get("type") == "normal", to_str(got)
    for bad in ({"to": account.jid, "body": ""}, {"to": account.jid, "body": "x", "type": "groupchat"},
                {"to": "someone@elsewhere.example", "body": "x"}, {"to": account.jid, "body": "x", "from": "evil"}):
        assert call(target, "POST", "/api/v1/messages", bad)[0] == 400, bad

    status, body, _ = call(target, "POST", "/api/v1/announcements", {"body": "we are back", "subject": "ops"})
    assert status == 200 and body["users"] >= 1, body
    got = await phone.inbox.wait(is_message(frm=env.domain, body="we are back"))
    assert got.get("type") == "headline", to_str(got)
    assert call(target, "POST", "/api/v1/announcements", {"body": ""})[0] == 400

    # One resource, then the rest.
    assert call(target, "DELETE", f"/api/v1/users/{account.localpart}/sessions?resource=phone")[0] == 202
    await asyncio.wait_for(phone.disconnected.wait(), 10)
    assert phone.stream_errors == ["policy-violation"], phone.stream_errors
    assert not laptop.disconnected.is_set()
    assert call(target, "DELETE", f"/api/v1/users/{account.localpart}/sessions")[0] == 202
    await asyncio.wait_for(laptop.disconnected.wait(), 10)
    assert laptop.stream_errors == ["policy-violation"], laptop.stream_errors
    assert call(target, "DELETE", "/api/v1/users/a@elsewhere.example/sessions")[0] == 400
    assert call(target, "DELETE", f"/api/v1/users/{account.localpart}/sessions?colour=red")[0] == 400

    # Deleting an account that is online ends its streams.
    name = f"gone{uuid.uuid4().hex[:8]}"
    assert call(target, "POST", "/api/v1/users", {"user": name, "password": "gone-Pw-1"})[0] == 201
    doomed = await env.online(Account(name, "gone-Pw-1", env.domain))
    assert call(target, "DELETE", f"/api/v1/users/{name}")[0] == 204
    await asyncio.wait_for(doomed.disconnected.wait(), 10)
    assert doomed.stream_errors == ["not-authorized"], doomed.stream_errors
