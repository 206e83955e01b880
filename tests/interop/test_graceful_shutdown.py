"""Graceful shutdown (issue 18): on SIGTERM a server stops being ready, stops accepting, ends every
client stream with `system-shutdown` (RFC 6120 §4.9.3.20), ends the sessions — what a
stream-managed client never acknowledged goes to offline storage — stores everything its archive
queue holds, and exits well within its grace period. Nothing it accepted is lost: after a restart
on the same data the archive, the offline store and the stream-managed client's messages are all
there. (The rolling restart of a cluster is in test_cluster_faults.py.)"""

import asyncio
import signal
import time
import urllib.request

from conftest import PASSWORD, own_server
from harness import NS, Account, Env, Target, is_message, tag
from test_xep0198_stream_management import enable
from test_xep0313_mam import form, query, rsm

COUNT = 300  # messages to each of three recipients, accepted just before the signal


def bodies(raw, prefix: str) -> list[str]:
    found = [m.findtext("c:body", namespaces=NS) or "" for m in raw.inbox.find(is_message())]
    return [b for b in found if b.startswith(prefix)]


async def archived(client, with_jid: str) -> list[str]:
    """Every body in `client`'s archive with `with_jid`, page after page."""
    got, after = [], None
    while True:
        page = await query(client, form(**{"with": with_jid}), rsm(max_=100, after=after))
        got += page.bodies
        if page.complete or not page.results:
            return got
        after = page.last


async def test_sigterm_ends_streams_keeps_what_was_accepted_and_exits_in_time(workdir):
    users = ("dalice", "dbob", "dcarol", "dphone")
    with own_server(workdir, "drain", "", users, PASSWORD) as server:
        alice, bob, carol, phone = (Account(user, PASSWORD, server.domain) for user in users)
        env = Env(Target("starling", server.endpoint, []))
        sender, reader, managed = await env.raw(), await env.raw(), await env.raw()
        await sender.login(alice)
        await reader.login(bob)
        reader.send("<presence/>")
        phone_jid, _ = await managed.login(phone, "phone")
        assert (await enable(managed)).tag == tag("sm", "enabled")
        managed.send("<presence/>")
        await asyncio.sleep(0.3)  # both presences taken
        for to in (bob.jid, carol.jid, phone_jid):
            for i in range(COUNT):
                sender.send(f"<message to='{to}' type='chat' id='{to[:5]}-{i}'><body>{to[:5]}:{i}</body></message>")
        # The ping's answer comes after the sender's owner took every message before it.
        assert (await sender.iq("<ping xmlns='urn:xmpp:ping'/>", to=server.domain, timeout=30)).get("type") == "result"

        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for raw in (sender, reader, managed):
            assert await raw.stream_error(timeout=15) == "system-shutdown"
        exit_code = await asyncio.to_thread(server.proc.wait, 30)
        took = time.monotonic() - signalled
        assert exit_code == 0, server.log_tail()
        assert took < 10, f"draining took {took:.1f} s"
        log = server.log_path.read_text()
        for step in ("draining: not ready", "draining: client connections closed", "draining: sessions ended, archive stored"):
            assert step in log, step

        server.start()
        with urllib.request.urlopen(server.admin_url + "/readyz", timeout=5) as ready:
            assert ready.status == 200
        env = Env(Target("starling", server.endpoint, []))
        checker = await env.raw()
        await checker.login(alice, "checker")
        for to in (bob.jid, carol.jid, phone_jid):
            got = await archived(checker, to.split("/")[0])
            assert got == [f"{to[:5]}:{i}" for i in range(COUNT)], f"archive with {to}: {len(got)} of {COUNT}"
        # Each recipient has each message once: live before the stream ended, or from offline
        # storage now (Bob was online without stream management; Carol offline; the phone never
        # acknowledged).
        for account, earlier, prefix in ((bob, reader, bob.jid[:5]), (carol, None, carol.jid[:5]), (phone, managed, phone_jid[:5])):
            live = bodies(earlier, prefix) if earlier is not None and earlier is not managed else []
            back = await env.raw()
            await back.login(account, "back")
            back.send("<presence/>")
            if len(live) < COUNT:
                await back.inbox.wait(is_message(body=f"{prefix}:{COUNT - 1}"), timeout=20)
            else:
                await asyncio.sleep(1)  # nothing should come
            assert live + bodies(back, prefix) == [f"{prefix}:{i}" for i in range(COUNT)], f"{account.jid}: {len(live)} live"
