"""Issue 4 item 5: the archive's store stalls (Cassandra frozen with SIGSTOP) under a server whose
archive queue holds 8 entries and lets a sender wait 0.5 s for room. Every message must end one of
two ways: refused to its sender with <resource-constraint/> (type wait), or delivered and found in
the archive once the store is back. Nothing delivered may be missing from the archive, nothing may
vanish without an error, and the server must stay up with bounded memory."""

import asyncio
import os
import signal
from pathlib import Path

from harness import is_message, stanza_error, tag, to_str
from test_xep0313_mam import query

CASSANDRA_PID = Path(os.environ.get("STARLING_STATE", "/var/cache/starling/state/cassandra")) / "cassandra.pid"


async def test_archive_store_outage_refuses_or_archives_every_message(outage_env):
    env = outage_env
    pid = int(CASSANDRA_PID.read_text().strip())
    alice = await env.client()
    bob = await env.online()
    alice.message(bob.jid, "before")
    await bob.inbox.wait(is_message(body="before"))

    bodies = [f"stalled{i}" for i in range(30)]
    os.kill(pid, signal.SIGSTOP)
    try:
        for body in bodies:
            # The id is the body: an error reply carries the id, not necessarily the body.
            alice.send(f"<message to='{bob.jid}' type='chat' id='{body}'><body>{body}</body></message>")
        await asyncio.sleep(6)
    finally:
        os.kill(pid, signal.SIGCONT)

    def refused(body):
        return alice.inbox.find(lambda e: e.tag == tag("c", "message") and e.get("type") == "error" and e.get("id") == body)

    # Once the store is back, every message arrives or is refused. Not necessarily in order: the
    # last one may be refused by Alice's archive queue while an earlier one, which got past it, is
    # refused later by Bob's (his copy) and the error is still on its way back to Alice.
    def accounted(body):
        return bob.inbox.find(is_message(body=body)) or refused(body)

    deadline = asyncio.get_running_loop().time() + 60
    while not all(accounted(body) for body in bodies):
        if asyncio.get_running_loop().time() > deadline:
            break  # the assertions below say which
        await asyncio.sleep(0.2)

    page = await query(bob, paging="<set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set>")
    archived = page.bodies
    delivered, errors = [], []
    for body in bodies:
        got, bounced = bob.inbox.find(is_message(body=body)), refused(body)
        assert len(got) + len(bounced) == 1, f"{body}: delivered {len(got)}x, refused {len(bounced)}x"
        if bounced:
            assert stanza_error(bounced[0]) == ("wait", "resource-constraint"), to_str(bounced[0])
            errors.append(body)
        else:
            delivered.append(body)
    assert errors, "the 8-entry queue never filled while the store was frozen"
    assert delivered, "nothing was accepted while the store was frozen"
    assert archived == ["before"] + delivered, f"archive {archived} vs delivered {delivered}"

    # And it keeps working afterwards.
    alice.message(bob.jid, "after")
    await bob.inbox.wait(is_message(body="after"))
    assert (await query(bob, paging="<set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set>")).bodies == ["after"]
