#!/usr/bin/env python3
"""What XEP-0352 client state indication saves a phone in a presence-heavy run.

One user (the phone) has CONTACTS mutual contacts. Each contact changes its presence UPDATES
times and sends a composing/paused chat-state pair between updates, at an even pace over SECONDS;
then one contact sends a message with a body (what an inactive phone must get at once, and which
brings what was held). The run is done twice on a fresh server, once with the phone active and
once after it sent <inactive/>, and reports the XMPP bytes the phone read and its socket reads
(wake-ups) during the updates, up to that last message.

    loadtest/scripts/csi-savings.py [--contacts 50] [--updates 20] [--seconds 10]

Uses the interop harness (tests/interop) to start Starling ($STARLING_BIN, default the debug build
in $CARGO_TARGET_DIR) and to drive the contacts with slixmpp.
"""

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "interop"))

from harness import Account, Env, RawStream, StarlingServer, Target, is_message, is_presence  # noqa: E402

PASSWORD = "csi-Password-1"


class CountingStream(RawStream):
    """A raw stream that counts the bytes it reads and the reads (wake-ups)."""

    bytes_read = 0
    reads = 0

    def _feed(self, data: bytes) -> None:
        self.bytes_read += len(data)
        self.reads += 1
        super()._feed(data)


async def one_run(env: Env, contacts: int, updates: int, seconds: float, inactive: bool) -> tuple[int, int]:
    phone_account = env.account()
    phone = await env.online(phone_account)
    friends = [await env.online() for _ in range(contacts)]
    for friend in friends:
        await env.subscribe_mutually(phone, friend)
    await phone.close()
    raw = await CountingStream.open(env.target.ep)
    env._raws.append(raw)
    jid, _ = await raw.login(phone_account, "phone")
    raw.send("<presence/>")
    for friend in friends:
        await raw.inbox.wait(is_presence(frm=friend.jid), timeout=30)
    if inactive:
        raw.send("<inactive xmlns='urn:xmpp:csi:0'/>")
    await raw.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    start_bytes, start_reads = raw.bytes_read, raw.reads
    interval = seconds / updates
    for n in range(updates):
        for friend in friends:
            friend.send(f"<message to='{jid}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
            friend.presence(status=f"update {n}", show="away")
            friend.send(f"<message to='{jid}' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await asyncio.sleep(interval)
    friends[0].message(jid, "the last one")
    await raw.inbox.wait(is_message(body="the last one"), timeout=60)
    return raw.bytes_read - start_bytes, raw.reads - start_reads


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=50)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    binary = os.environ.get("STARLING_BIN") or os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/cache/starling/target"), "debug", "starling")
    results = {}
    for inactive in (False, True):
        server = StarlingServer(binary, Path(tempfile.mkdtemp(prefix="starling-csi-")))
        users = 2 * (args.contacts + 1)
        server.cli("user", "add-bulk", "--prefix", "csi", "--count", str(users), "--password", PASSWORD)
        server.start()
        try:
            target = Target("starling", server.endpoint, [Account(f"csi{i}", PASSWORD, server.domain) for i in range(1, users + 1)])
            env = Env(target)
            try:
                results[inactive] = await one_run(env, args.contacts, args.updates, args.seconds, inactive)
            finally:
                await env.aclose()
        finally:
            server.stop()
    (active_bytes, active_reads), (inactive_bytes, inactive_reads) = results[False], results[True]
    stanzas = args.contacts * args.updates * 3
    print(f"{args.contacts} contacts x {args.updates} updates (presence + 2 chat states each: {stanzas} stanzas) over {args.seconds}s")
    print(f"  active:   {active_bytes:>9,} bytes, {active_reads:>6,} socket reads")
    print(f"  inactive: {inactive_bytes:>9,} bytes, {inactive_reads:>6,} socket reads")
    print(f"  saved:    {1 - inactive_bytes / active_bytes:.1%} of the bytes, {1 - inactive_reads / active_reads:.1%} of the wake-ups")


if __name__ == "__main__":
    asyncio.run(main())
