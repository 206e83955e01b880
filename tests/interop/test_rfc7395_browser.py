"""RFC 7395 XMPP over WebSocket, with a real browser: xmpp.js's own browser bundle in Debian's headless
Chromium (js/browser.mjs drives it with playwright-core; both installed by scripts/test) finds the
endpoint through XEP-0156 host-meta.json, logs in over wss:// and chats with a slixmpp client on TCP.
The page's screenshot is kept in the server's work dir, and copied to $STARLING_SCREENSHOT_OUT (a
file or a directory) when that is set and the test passed."""

import asyncio
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import MODE, PASSWORD, STORE_SECTION, _binary, _servers
from harness import WAIT, Account, Env, StarlingServer, Target, free_port, is_message, json_lines

JS = Path(__file__).parent / "js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WS_PATH = "/xmpp-websocket"


@dataclass
class WsTarget:
    target: Target
    port: int        # the wss:// listener
    page_port: int   # the page's own origin, http://127.0.0.1:page_port, the one allowed Origin
    dir: Path


@pytest.fixture(scope="module")
def ws_target(workdir):
    if MODE != "starling":
        pytest.skip("starts a server of its own with a WebSocket listener")
    port, page_port = free_port(), free_port()
    # allowed_origins names the page's origin, so the Origin header a real browser sends is checked.
    section = (f'[websocket]\ntls_listen = ["127.0.0.1:{port}"]\npath = "{WS_PATH}"\n'
               f'allowed_origins = ["http://127.0.0.1:{page_port}"]\n')
    server = StarlingServer(_binary(), workdir / "websocket-browser", extra={"store": STORE_SECTION, "sections": section},
                            name="starling-websocket-browser")
    _servers.append(server)
    accounts = [Account(name, PASSWORD, server.domain) for name in ("wsbrowser", "wstcp")]
    for account in accounts:
        server.cli("user", "add", account.localpart, "--password", account.password)
    server.start()
    yield WsTarget(Target("starling", server.endpoint, accounts, admin_url=server.admin_url, server=server),
                   port, page_port, server.dir)
    server.stop()
    _servers.remove(server)


@pytest.fixture
def ws_env(ws_target) -> Env:
    return Env(ws_target.target)


def browser_ready() -> None:
    # Missing tools fail rather than skip: scripts/test installs them, so absence is a broken setup.
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y --no-install-recommends chromium (scripts/test does)")
    if shutil.which("node") is None or not (JS / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run `npm ci --prefix tests/interop/js` (scripts/test does)")


async def run_browser(*args: str) -> tuple[int, list[dict]]:
    # Own process group, so a hung run takes its Chromium with it when killed.
    process = await asyncio.create_subprocess_exec("node", str(JS / "browser.mjs"), *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), WAIT * 4)
    except (asyncio.TimeoutError, TimeoutError):
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise AssertionError(f"browser.mjs did not finish within {WAIT * 4}s") from None
    return process.returncode, json_lines(output)


async def test_rfc7395_xmpp_js_in_chromium_chats_over_wss_with_a_tcp_client(ws_target, ws_env):
    browser_ready()
    account, peer_account = ws_target.target.pool
    peer = await ws_env.online(peer_account)
    service = f"wss://127.0.0.1:{ws_target.port}{WS_PATH}"
    shot = ws_target.dir / "websocket-browser.png"

    async def answer():
        got = await peer.inbox.wait(is_message(body="hello from the browser"), timeout=WAIT * 3)
        peer.message(got.get("from"), "hello back over TCP")
        return got

    answering = asyncio.create_task(answer())
    try:
        rc, lines = await run_browser(service, ws_env.domain, account.localpart, account.password, "browser",
                                      peer.jid, "hello from the browser", "hello back over TCP", str(shot),
                                      str(ws_target.page_port))
        assert {"page": {"xmpp": "function"}} in lines, f"xmpp.js's bundle did not load: {lines}"
        # XEP-0156: the link names this listener (by address or domain) and path.
        href = next((line["hostMeta"].get("websocket") for line in lines if "hostMeta" in line), None)
        assert href is not None, f"no websocket link from host-meta.json (the browser's reason is in the 'console' lines): {lines}"
        link = urlsplit(href)
        assert (link.scheme, link.hostname, link.port, link.path) in {
            ("wss", host, ws_target.port, WS_PATH) for host in ("127.0.0.1", ws_env.domain)}, href
        online = next((line["online"] for line in lines if "online" in line), None)
        assert online is not None and online.startswith(f"{account.jid}/"), f"did not log in over {service}: {lines}"
        got = await answering
        assert got.get("from") == online, f"the browser's message reached TCP from {got.get('from')}, not {online}"
        assert {"message": {"from": peer.jid, "body": "hello back over TCP"}} in lines, f"no reply in the browser: {lines}"
        assert rc == 0, lines
    finally:
        answering.cancel()
    assert shot.is_file(), f"no screenshot at {shot}: {lines}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{shot} is not a PNG"
    if out := os.environ.get("STARLING_SCREENSHOT_OUT"):
        target = Path(out) / shot.name if Path(out).is_dir() else Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
