"""XEP-0357 push notifications against a real app server process: a small push app server
written with slixmpp's ComponentXMPP, connected as an external component (XEP-0114), records each
notification and answers as told. Notifications go out when a message reaches nobody live — the
user is offline, or its only resource is detached (XEP-0198) — and never for a live resource."""

import asyncio

import pytest
import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness import NS, WAIT, is_message, tag, to_str

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
XDATA = "jabber:x:data"


class AppServer:
    """The app server: records the node and summary of each notification; answers with a result,
    or with `item-not-found` for the nodes in `gone`."""

    def __init__(self, env):
        if env.target.component_port is None:
            pytest.skip("components are configured only on a Starling the suite starts")
        self.domain = "push.localhost"
        self.x = slixmpp.ComponentXMPP(self.domain, env.target.component_secrets[self.domain], env.target.ep.host, env.target.component_port)
        self.notifications: list[tuple[str, dict]] = []
        self.gone: set[str] = set()
        self.x.register_handler(Callback("push", MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), self._publish))

    def _publish(self, iq):
        publish = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        node = publish.get("node")
        form = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{XDATA}}}x")
        fields = {f.get("var"): f.findtext(f"{{{XDATA}}}value") for f in form.findall(f"{{{XDATA}}}field")}
        options = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{{{XDATA}}}x")
        if options is not None:
            fields["options:secret"] = next((f.findtext(f"{{{XDATA}}}value") for f in options if f.get("var") == "secret"), None)
        self.notifications.append((node, fields))
        if node in self.gone:
            iq.reply().error().set_payload(ET.fromstring("<error xmlns='jabber:component:accept' type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")).send()
        else:
            iq.reply().send()

    async def start(self):
        ready = asyncio.Event()
        self.x.add_event_handler("session_start", lambda _e: ready.set())
        self.x.connect()
        await asyncio.wait_for(ready.wait(), WAIT)

    def stop(self):
        self.x.disconnect()

    async def wait(self, count: int):
        for _ in range(int(WAIT * 20)):
            if len(self.notifications) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.notifications)} notifications, expected {count}: {self.notifications}")


def enable(client, node: str, secret: str | None = None):
    options = (f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
               f"<field var='secret'><value>{secret}</value></field></x>") if secret else ""
    return client.iq_ok(f"<enable xmlns='{PUSH}' jid='push.localhost' node='{node}'>{options}</enable>", type_="set")


async def test_xep0357_feature_on_the_account(env):
    client = await env.online()
    info = await client.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=client.bare)
    assert any(f.get("var") == PUSH for f in info.iter("{http://jabber.org/protocol/disco#info}feature")), to_str(info)


async def test_xep0357_offline_user_is_notified_and_gets_the_message_at_login(env):
    app = AppServer(env)
    await app.start()
    try:
        phone_account = env.account()
        phone = await env.online(phone_account)
        await enable(phone, "node-offline", secret="s3cr3t")
        await phone.close()
        friend = await env.online()
        friend.message(phone_account.jid, "wake up")
        await app.wait(1)
        node, fields = app.notifications[0]
        assert node == "node-offline"
        assert fields["FORM_TYPE"] == "urn:xmpp:push:summary"
        assert fields["message-count"] == "1"
        assert fields["last-message-sender"] == friend.jid
        assert "last-message-body" not in fields, "the body stays on the server by default"
        assert fields["options:secret"] == "s3cr3t", "the client's publish-options go with every notification"
        back = await env.online(phone_account)
        await back.inbox.wait(is_message(body="wake up"))
        # A live resource gets its messages without a notification.
        friend.message(phone_account.jid, "you are here")
        await back.inbox.wait(is_message(body="you are here"))
        await friend.barrier(back)
        assert len(app.notifications) == 1, app.notifications
    finally:
        app.stop()


async def test_xep0357_detached_stream_management_session_is_notified(env):
    app = AppServer(env)
    await app.start()
    try:
        account = env.account()
        raw = await env.raw()
        jid, _ = await raw.login(account, "phone")
        raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        await raw.inbox.wait(lambda e: e.tag == tag("sm", "enabled"))
        raw.send("<presence/>")
        await raw.iq(f"<enable xmlns='{PUSH}' jid='push.localhost' node='node-detached'/>", "set")
        raw.writer.transport.abort()
        await raw.wait_closed()
        friend = await env.online()
        # Until the server notices the broken stream the message may still go to the old link;
        # send until one is kept for the detached session and notified.
        for n in range(int(WAIT * 10)):
            friend.message(jid, f"while asleep {n}")
            await asyncio.sleep(0.1)
            if app.notifications:
                break
        await app.wait(1)
        assert app.notifications[0][0] == "node-detached"
        assert app.notifications[0][1]["last-message-sender"] == friend.jid
    finally:
        app.stop()


async def test_xep0357_item_not_found_disables_and_disable_stops(env):
    app = AppServer(env)
    app.gone.add("node-gone")
    await app.start()
    try:
        account = env.account()
        phone = await env.online(account)
        await enable(phone, "node-gone")
        await enable(phone, "node-kept")
        await phone.close()
        friend = await env.online()
        friend.message(account.jid, "first")
        await app.wait(2)
        assert sorted(node for node, _ in app.notifications) == ["node-gone", "node-kept"]
        await friend.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
        friend.message(account.jid, "second")
        await app.wait(3)
        await asyncio.sleep(0.3)
        assert [node for node, _ in app.notifications[2:]] == ["node-kept"], "the gone node was disabled"

        phone = await env.online(account)
        await phone.iq_ok(f"<disable xmlns='{PUSH}' jid='push.localhost'/>", type_="set")
        await phone.close()
        friend.message(account.jid, "third")
        await friend.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
        await asyncio.sleep(0.3)
        assert len(app.notifications) == 3, app.notifications
    finally:
        app.stop()


async def test_xep0357_bad_enable_is_refused(env):
    client = await env.online()
    res = await client.iq(f"<enable xmlns='{PUSH}' jid='push.localhost'/>", type_="set")
    assert res.get("type") == "error" and res.find("c:error/stanzas:bad-request", NS) is not None, to_str(res)
    res = await client.iq(f"<enable xmlns='{PUSH}' jid='a@@b' node='n'/>", type_="set")
    assert res.get("type") == "error" and res.find("c:error/stanzas:jid-malformed", NS) is not None, to_str(res)
