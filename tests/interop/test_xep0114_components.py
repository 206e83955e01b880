"""XEP-0114 external components: slixmpp's ComponentXMPP (a real third-party implementation)
connects with the handshake, gets the stanzas addressed to its domain and routes its own; a wrong
secret, an unknown domain and a forged `from` end the stream with the right error."""

import asyncio
import hashlib

import pytest
import slixmpp

from harness import NS, WAIT, RawStream, Endpoint, is_message, tag, to_str

ACCEPT = "jabber:component:accept"


def component_endpoint(env):
    if env.target.component_port is None:
        pytest.skip("components are configured only on a Starling the suite starts")
    return env.target.ep.host, env.target.component_port


async def connect_component(env, domain: str, secret: str | None = None):
    """A slixmpp component connected as `domain`; its received stanzas go to a list."""
    host, port = component_endpoint(env)
    component = slixmpp.ComponentXMPP(domain, secret or env.target.component_secrets[domain], host, port)
    component.register_plugin("xep_0030")
    received = []
    ready = asyncio.Event()
    component.add_event_handler("session_start", lambda _e: ready.set())
    component.add_event_handler("message", lambda msg: received.append(msg))
    component.connect()
    await asyncio.wait_for(ready.wait(), WAIT)
    return component, received


async def wait_for(predicate, what: str):
    for _ in range(int(WAIT * 20)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what} within {WAIT}s")


async def test_xep0114_component_and_client_exchange_messages_and_disco(env):
    component, received = await connect_component(env, "push.localhost")
    try:
        user = await env.online()
        user.message("notify@push.localhost", "to the component")
        await wait_for(lambda: any(m["body"] == "to the component" for m in received), "message at the component")
        got = next(m for m in received if m["body"] == "to the component")
        assert str(got["from"]) == user.jid, got

        component.send_message(mto=user.jid, mbody="from the component", mfrom="app@push.localhost")
        reply = await user.inbox.wait(is_message(body="from the component"))
        assert reply.get("from") == "app@push.localhost", to_str(reply)

        # An IQ to the component is answered by it (slixmpp's XEP-0030 plugin).
        info = await user.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="push.localhost")
        assert info.get("type") == "result" and info.get("from") == "push.localhost", to_str(info)
    finally:
        component.disconnect()


async def test_xep0114_a_departed_component_domain_is_unreachable(env):
    component, _ = await connect_component(env, "bot.localhost")
    component.disconnect()
    await asyncio.wait_for(component.disconnected, WAIT)
    user = await env.online()
    for _ in range(int(WAIT * 10)):
        answer = await user.iq("<ping xmlns='urn:xmpp:ping'/>", to="bot.localhost")
        if answer.get("type") == "error":
            break
        await asyncio.sleep(0.1)
    assert answer.get("type") == "error", to_str(answer)


async def raw_component(env, domain: str) -> tuple[RawStream, str]:
    host, port = component_endpoint(env)
    raw = await RawStream.open(Endpoint(host, port, port, domain))
    raw.send(raw.stream_header(to=domain, ns=ACCEPT))
    header = await raw.inbox.wait(lambda e: e.tag == "stream-header")
    return raw, header.get("id")


async def test_xep0114_wrong_secret_is_not_authorized(env):
    raw, stream_id = await raw_component(env, "push.localhost")
    raw.send(f"<handshake>{hashlib.sha1((stream_id + 'wrong').encode()).hexdigest()}</handshake>")
    assert await raw.stream_error() == "not-authorized"
    await raw.close()


async def test_xep0114_unknown_domain_is_host_unknown(env):
    raw, _ = await raw_component(env, "nobody.localhost")
    assert await raw.stream_error() == "host-unknown"
    await raw.close()


async def test_xep0114_forged_from_is_invalid_from(env):
    raw, stream_id = await raw_component(env, "push.localhost")
    secret = env.target.component_secrets["push.localhost"]
    raw.send(f"<handshake>{hashlib.sha1((stream_id + secret).encode()).hexdigest()}</handshake>")
    await raw.inbox.wait(lambda e: e.tag == "{%s}handshake" % ACCEPT)
    user = await env.online()
    raw.send(f"<message from='{user.jid}' to='{user.jid}'><body>forged</body></message>")
    assert await raw.stream_error() == "invalid-from"
    await user.barrier(user)
    assert not user.inbox.find(is_message(body="forged"))
    await raw.close()
