"""Refused messages store nothing, and no single user fills the disk (per-user limits before the
store): a flood at an offline user whose queue is full, a burst over the message rate, a day's
archive allowance spent; and the per-connection read shaper holds one connection to its rate
without slowing anyone else. Every refused message got an error and left no archive row for either
party; what was accepted is archived once on each side. Runs on the embedded store and, with
STARLING_TEST_STORE=scylla, on the CQL store (a server of its own with small limits)."""

import asyncio
import time
from pathlib import Path

import pytest

from conftest import MODE, PASSWORD, STORE_SECTION, _binary, _servers
from harness import Account, Env, StarlingServer, Target, is_message, new_id, stanza_error
from test_xep0313_mam import form, query, rsm

OFFLINE_MAX = 20
RATE, BURST = 40, 100
SENT_PER_DAY = 150
LIMITS = f"""
[sessions]
max_offline_per_user = {OFFLINE_MAX}
max_offline_bytes_per_user = 262144
message_rate = {RATE}
message_burst = {BURST}
[archive]
max_sent_per_day = {SENT_PER_DAY}
max_sent_bytes_per_day = 1048576
max_received_per_day = 1000
max_received_bytes_per_day = 4194304
"""
READ_RATE, READ_BURST = 524_288, 262_144
SHAPER = f"read_rate_bytes = {READ_RATE}\nread_burst_bytes = {READ_BURST}\n"
PAD = "x" * 1000


@pytest.fixture(scope="module")
def quota_env_target(workdir):
    if MODE != "starling":
        pytest.skip("Starling's own limits")
    server = StarlingServer(_binary(), workdir / "quotas", extra={"c2s": SHAPER, "store": STORE_SECTION, "sections": LIMITS}, name="starling-quotas")
    _servers.append(server)
    server.cli("user", "add-bulk", "--prefix", "quota", "--count", "12", "--password", PASSWORD)
    server.start()
    yield Target("starling", server.endpoint, [Account(f"quota{i}", PASSWORD, server.domain) for i in range(1, 13)],
                 admin_url=server.admin_url, server=server)
    server.stop()
    _servers.remove(server)


@pytest.fixture
def qenv(quota_env_target) -> Env:
    return Env(quota_env_target)


async def archived_bodies(client, peer: str) -> list[str]:
    """Every body in the client's archive of its conversation with `peer`, oldest first."""
    bodies, after = [], None
    while True:
        page = await query(client, form(**{"with": peer}), rsm(250, after=after))
        bodies += [b for b in page.bodies if b is not None]
        if page.complete or not page.ids:
            return bodies
        after = page.last


def errors_by_id(client, prefix: str) -> dict[str, str | None]:
    """The condition of each error the client got for a message whose id starts with `prefix`."""
    return {e.get("id"): stanza_error(e)[1] for e in client.inbox.find(
        lambda e: e.get("type") == "error" and (e.get("id") or "").startswith(prefix) and e.tag.endswith("message"))}


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def caught_up(sender, recipient) -> None:
    """Waits until what `sender` sent `recipient` before has arrived (one sender's stanzas keep their
    order): a chat state, which no archive keeps and no daily allowance counts, after the rate
    refilled enough for one more message."""
    await asyncio.sleep(1.5 / RATE)
    marker = f"marker-{new_id()}"
    sender.send(f"<message to='{recipient.jid}' type='chat' id='{marker}'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
    await recipient.inbox.wait(lambda e: e.get("id") == marker, what="the marker")


def data_bytes(server: StarlingServer) -> int:
    return sum(p.stat().st_size for p in Path(server.dir / "data").rglob("*") if p.is_file())


@pytest.mark.deadline(180)
async def test_flood_at_a_full_offline_queue_leaves_nothing_stored(qenv):
    """Issue 20's shape: one user floods another who is offline and whose queue is full. Every
    flooded message is refused (`service-unavailable` for the full queue, `resource-constraint`
    over the rate), and neither archive holds any of them."""
    sender = await qenv.client()
    recipient = qenv.account()
    for i in range(OFFLINE_MAX):
        sender.send(f"<message to='{recipient.jid}' type='chat' id='kept-{i}'><body>kept:{i}</body></message>")
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=qenv.domain)
    server = qenv.target.server
    before = data_bytes(server)

    flood = 1500
    chunk = "".join(f"<message to='{recipient.jid}' type='chat' id='flood-{i}'><body>flood:{i}</body>"
                    f"<pad xmlns='urn:example:pad'>{PAD}</pad></message>" for i in range(flood))
    sender.send(chunk)
    await wait_for(lambda: len(errors_by_id(sender, "flood-")) == flood, 120, "an error for every flooded message")
    conditions = errors_by_id(sender, "flood-")
    assert set(conditions.values()) <= {"service-unavailable", "resource-constraint"}, set(conditions.values())
    assert "service-unavailable" in conditions.values(), "some messages passed the rate and met the full queue"
    assert not any(e.get("id", "").startswith("kept-") for e in sender.inbox.find(lambda e: e.get("type") == "error"))

    assert await archived_bodies(sender, recipient.jid) == [f"kept:{i}" for i in range(OFFLINE_MAX)], \
        "the sender's archive holds a refused message"
    grown = data_bytes(server) - before
    print(f"flood of {flood} refused messages ({flood * len(PAD) // 1024} KiB of padding): the data directory grew by {grown} bytes")
    if not STORE_SECTION:
        # The rows of the messages that passed the rate were written and removed again; what
        # the file keeps of them is bounded by the sender's daily allowance, far below the flood.
        assert grown < 1_048_576 + 262_144, f"the embedded store grew by {grown} bytes"

    online = await qenv.online(recipient)
    await online.inbox.wait(is_message(body=f"kept:{OFFLINE_MAX - 1}"))
    await caught_up(sender, online)
    got = [m.findtext("{jabber:client}body") for m in online.inbox.find(is_message(frm=sender.jid))]
    assert [b for b in got if b and b.startswith(("kept:", "flood:"))] == [f"kept:{i}" for i in range(OFFLINE_MAX)], got
    assert [b for b in await archived_bodies(online, sender.account.jid) if b.startswith(("kept:", "flood:"))] == \
        [f"kept:{i}" for i in range(OFFLINE_MAX)], \
        "the recipient's archive holds a refused message"


@pytest.mark.deadline(120)
async def test_a_burst_over_the_message_rate_is_refused_before_the_archive(qenv):
    sender = await qenv.client()
    recipient = await qenv.online()
    burst = 3 * BURST
    sender.send("".join(f"<message to='{recipient.jid}' type='chat' id='burst-{i}'><body>burst:{i}</body></message>"
                        for i in range(burst)))
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=qenv.domain)
    await caught_up(sender, recipient)
    refused = errors_by_id(sender, "burst-")
    delivered = [m.findtext("{jabber:client}body") for m in recipient.inbox.find(is_message(frm=sender.jid))]
    delivered = [b for b in delivered if b and b.startswith("burst:")]
    assert BURST <= len(delivered) < burst, f"{len(delivered)} of {burst} delivered"
    assert set(refused.values()) == {"resource-constraint"}, set(refused.values())
    assert len(refused) + len(delivered) == burst, "a message neither delivered nor refused"
    assert {f"burst-{b.split(':')[1]}" for b in delivered}.isdisjoint(refused), "delivered and refused"
    assert await archived_bodies(sender, recipient.bare) == delivered
    assert await archived_bodies(recipient, sender.bare) == delivered


@pytest.mark.deadline(120)
async def test_a_spent_daily_allowance_refuses_before_the_archive(qenv):
    sender = await qenv.client()
    recipient = await qenv.online()
    total = SENT_PER_DAY + 10
    for i in range(total):
        sender.send(f"<message to='{recipient.jid}' type='chat' id='day-{i}'><body>day:{i}</body></message>")
        if i % RATE == RATE - 1:
            await asyncio.sleep(1.1)  # under the rate: only the daily allowance refuses
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=qenv.domain)
    await caught_up(sender, recipient)
    refused = errors_by_id(sender, "day-")
    assert sorted(refused) == sorted(f"day-{i}" for i in range(SENT_PER_DAY, total)), sorted(refused)
    assert set(refused.values()) == {"resource-constraint"}
    text = next(e for e in sender.inbox.find(lambda e: e.get("id") == f"day-{SENT_PER_DAY}")).findtext(
        "{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}text")
    assert text and "allowance" in text, text
    accepted = [f"day:{i}" for i in range(SENT_PER_DAY)]
    assert await archived_bodies(sender, recipient.bare) == accepted
    assert await archived_bodies(recipient, sender.bare) == accepted


@pytest.mark.deadline(60)
async def test_the_read_shaper_holds_one_connection_to_its_rate_and_no_one_else(qenv):
    """A client writes 1.25 MiB of presence updates (no message limit applies to them) and then a
    ping: the server reads the burst at once and the rest at the rate, so the ping is answered no
    sooner than (1.25 MiB - burst) / rate. Another client, meanwhile, is answered at once."""
    pusher, other = await qenv.client(), await qenv.client()
    status = "s" * 10_000
    updates = 128
    started = time.monotonic()
    pusher.send("".join(f"<presence><status>{status}</status></presence>" for _ in range(updates)))
    pinging = asyncio.ensure_future(pusher.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=qenv.domain))
    await asyncio.sleep(0.3)
    other_started = time.monotonic()
    await other.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=qenv.domain)
    other_took = time.monotonic() - other_started
    await asyncio.wait_for(pinging, 30)
    took = time.monotonic() - started
    held = (updates * len(status) - READ_BURST) / READ_RATE
    print(f"{updates * len(status)} bytes: the pusher's ping answered after {took:.2f} s (the rate allows "
          f"{held:.2f} s), another client's after {other_took * 1000:.0f} ms")
    assert took >= held * 0.9, f"the pusher was not held to the rate: {took:.2f} s"
    assert other_took < 1.0, f"another connection waited {other_took:.2f} s"
