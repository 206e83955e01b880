"""XEP-0133 service administration over XEP-0050 ad-hoc commands, driven by slixmpp's own
XEP-0050/XEP-0133 plugins: the commands an administrator (`[admin] jids`) sees and nobody else
does; add-user, change-user-password, end-user-session and delete-user, each checked by what a
real client then sees (logins, stream errors); and the bad requests — a non-admin (`forbidden`),
an unknown command (`item-not-found`), mismatched or empty passwords (`not-acceptable`), a foreign
address (`not-acceptable`), an existing account (`conflict`)."""

import asyncio

import pytest
import slixmpp

from conftest import PASSWORD, own_server
from harness import Account, Env, Target
from test_admin_api import logs_in

pytestmark = pytest.mark.starling_only

ADMIN = "http://jabber.org/protocol/admin"


def submitted(client, values: dict):
    form = client.x["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


async def run(client, command: str, values: dict):
    """Executes `command` (the form comes back), then submits `values`; the final IQ, or the error."""
    adhoc = client.x["xep_0050"]
    node = f"{ADMIN}#{command}"
    try:
        first = await adhoc.send_command(client.x.boundjid.domain, node, action="execute")
    except slixmpp.exceptions.IqError as refused:
        return refused.iq
    assert first["command"]["status"] == "executing", first
    assert first["command"]["form"]["type"] == "form"
    try:
        return await adhoc.send_command(client.x.boundjid.domain, node, action="complete", sessionid=first["command"]["sessionid"],
                                        payload=submitted(client, values))
    except slixmpp.exceptions.IqError as refused:
        return refused.iq


async def test_xep0133_commands_for_administrators_only(workdir):
    users = ("ops", "alice", "bob")
    with own_server(workdir, "adhoc", "", users, PASSWORD, admin='jids = ["ops@localhost"]') as server:
        env = Env(Target("starling", server.endpoint, []))
        ops = await env.client(Account("ops", PASSWORD, server.domain), plugins=("xep_0050", "xep_0133"))
        alice = await env.client(Account("alice", PASSWORD, server.domain), plugins=("xep_0050", "xep_0133"))

        listed = await ops.x["xep_0133"].get_commands()
        nodes = {item[1] for item in listed["disco_items"]["items"]}
        assert nodes == {f"{ADMIN}#{name}" for name in ("add-user", "delete-user", "change-user-password", "end-user-session")}, nodes
        assert not (await alice.x["xep_0133"].get_commands())["disco_items"]["items"]
        assert (await run(alice, "add-user", {}))["error"]["condition"] == "forbidden"
        assert (await run(ops, "restart", {}))["error"]["condition"] == "item-not-found"

        carol = Account("carol", "carol-Pw-1", server.domain)
        added = await run(ops, "add-user", {"accountjid": carol.jid, "password": carol.password, "password-verify": carol.password})
        assert added["command"]["status"] == "completed", added
        assert await logs_in(env, carol)
        again = await run(ops, "add-user", {"accountjid": carol.jid, "password": "x", "password-verify": "x"})
        assert again["error"]["condition"] == "conflict", again
        for bad in ({"accountjid": "dave@localhost", "password": "a", "password-verify": "b"},
                    {"accountjid": "dave@localhost", "password": "", "password-verify": ""},
                    {"accountjid": "dave@elsewhere.example", "password": "a", "password-verify": "a"}):
            assert (await run(ops, "add-user", bad))["error"]["condition"] == "not-acceptable", bad
        assert not await logs_in(env, Account("dave", "a", server.domain))

        changed = await run(ops, "change-user-password", {"accountjid": carol.jid, "password": "carol-Pw-2"})
        assert changed["command"]["status"] == "completed", changed
        assert not await logs_in(env, carol)
        carol = Account("carol", "carol-Pw-2", server.domain)
        assert await logs_in(env, carol)

        bob = await env.online(Account("bob", PASSWORD, server.domain))
        ended = await run(ops, "end-user-session", {"accountjids": bob.bare})
        assert ended["command"]["status"] == "completed", ended
        await asyncio.wait_for(bob.disconnected.wait(), 10)
        assert bob.stream_errors == ["policy-violation"], bob.stream_errors

        online_carol = await env.online(carol)
        deleted = await run(ops, "delete-user", {"accountjids": carol.jid})
        assert deleted["command"]["status"] == "completed", deleted
        await asyncio.wait_for(online_carol.disconnected.wait(), 10)
        assert online_carol.stream_errors == ["not-authorized"], online_carol.stream_errors
        assert not await logs_in(env, carol)
