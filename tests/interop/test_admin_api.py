"""Issue 18 item 6 (the part built): the admin API on the admin port. Accounts created, changed
and deleted through it work at once for logins (a real client logs in); every bad request gets its
status and a JSON error, and nothing half-done: no token 401, wrong token 403, malformed JSON or
unknown fields or a foreign address 400, an existing account 409, an unknown one 404, a body over
64 KiB 413."""

import json
import urllib.error
import urllib.request
import uuid

import pytest

from harness import Account, ConnectFailed

pytestmark = pytest.mark.starling_only


def call(target, method: str, path: str, body=None, token: str | None = "server", raw: bytes | None = None):
    """(status, JSON body or None, headers) of one API request."""
    if token == "server":
        token = (target.server.dir / "data" / "admin.token").read_text().strip()
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(target.admin_url + path, data=data, method=method)
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
