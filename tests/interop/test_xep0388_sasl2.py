"""XEP-0388 SASL2, XEP-0386 Bind2 and XEP-0484 FAST with a real client that implements them:
xmpp.js (`@xmpp/client` 0.14, Node, in tests/interop/js, installed by scripts/test) logs in over
STARTTLS, prefers SASL2 when offered, binds inline with stream management enabled in the same
round trip, asks for a FAST token, exchanges messages with a slixmpp client, and logs in again
with the token (HT-SHA-256-NONE)."""

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from harness import WAIT, is_message, json_lines, to_str

JS = Path(__file__).parent / "js"


def node_client_ready(env) -> None:
    if env.target.kind != "starling":
        pytest.skip("drives a server the suite starts")
    if shutil.which("node") is None or not (JS / "node_modules" / "@xmpp" / "client").is_dir():
        pytest.fail("xmpp.js is not installed: run `npm ci --prefix tests/interop/js` (scripts/test does)")


async def run_node(*args: str) -> list[dict]:
    process = await asyncio.create_subprocess_exec("node", str(JS / "client.mjs"), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), WAIT * 3)
    return json_lines(output)


async def test_xep0388_xmpp_js_logs_in_with_sasl2_and_chats_with_slixmpp(env):
    node_client_ready(env)
    peer = await env.online()
    account = env.account()
    ep = env.target.ep

    async def answer():
        got = await peer.inbox.wait(is_message(body="hello from xmpp.js"), timeout=WAIT * 2)
        peer.message(got.get("from"), "hello back")
        return got

    answering = asyncio.create_task(answer())
    lines = await run_node(ep.host, str(ep.port), env.domain, account.localpart, account.password, "js", peer.jid, "hello from xmpp.js", "hello back")
    got = await answering
    online = next((line["online"] for line in lines if "online" in line), None)
    # Bind2: the client's tag, then an id the server chose.
    assert online is not None and online.startswith(f"{account.jid}/js/"), lines
    used = next(line for line in lines if "online" in line)
    assert used["sasl2"] is True, f"xmpp.js did not use SASL2: {lines}"
    assert used["bind2"] is True, f"no inline bind: {lines}"
    assert {"streamManagement": True, "resumable": True} in lines, f"stream management not enabled inline: {lines}"
    assert used["mechanism"] in ("SCRAM-SHA-1", "PLAIN"), lines
    assert got.get("from") == online, to_str(got)
    assert {"message": {"from": peer.jid, "body": "hello back"}} in lines, lines


async def test_xep0388_xmpp_js_wrong_password_fails(env):
    node_client_ready(env)
    account = env.account()
    ep = env.target.ep
    lines = await run_node(ep.host, str(ep.port), env.domain, account.localpart, "wrong-password", "js", account.jid, "x", "never")
    assert not any("online" in line for line in lines), lines
    assert any("not-authorized" in line.get("error", "") for line in lines), lines


async def test_xep0484_xmpp_js_logs_in_again_with_its_fast_token(env):
    node_client_ready(env)
    peer = await env.online()
    account = env.account()
    ep = env.target.ep

    async def answer():
        got = await peer.inbox.wait(is_message(body="fast one"), timeout=WAIT * 2)
        peer.message(got.get("from"), "fast back")

    answering = asyncio.create_task(answer())
    lines = await run_node(ep.host, str(ep.port), env.domain, account.localpart, account.password, "js", peer.jid, "fast one", "fast back", "again")
    await answering
    first = next(line for line in lines if "online" in line)
    assert first["tokenRequested"] is True, f"no FAST token asked for: {lines}"
    second = next((line for line in lines if "again" in line), None)
    assert second is not None, f"the second login failed: {lines}"
    assert second["mechanism"] == "HT-SHA-256-NONE", f"the second login did not use the token: {lines}"
    # The same client gets the same Bind2 resource.
    assert second["again"] == first["online"] and second["bind2"] is True, lines
