"""XEP-0198 stream management: enabling, acks both ways, resumption after a broken connection,
failures with the XEP's conditions, and what happens to unacknowledged stanzas when a session
finally ends (offline storage, with delay stamps and stanza-ids, never twice as new).

Raw streams show the wire exactly; slixmpp's own xep_0198 plugin is the real client that resumes.
"""

import asyncio

from harness import NS, WAIT, is_message, is_presence, tag, to_str

SM = NS["sm"]


def sm(name: str) -> str:
    return tag("sm", name)


async def enable(raw, resume: bool = True, max_seconds: int | None = None):
    attrs = (" resume='true'" if resume else "") + (f" max='{max_seconds}'" if max_seconds is not None else "")
    raw.send(f"<enable xmlns='{SM}'{attrs}/>")
    return await raw.inbox.wait(lambda e: e.tag in (sm("enabled"), sm("failed")), what="<enabled/>")


async def resume(env, account, previd: str, h: int):
    """A new stream for `account` that resumes `previd`: (stream, <resumed/> or <failed/>)."""
    raw = await env.raw()
    await raw.login(account, bind=False)
    raw.send(f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/>")
    answer = await raw.inbox.wait(lambda e: e.tag in (sm("resumed"), sm("failed")), what="<resumed/> or <failed/>")
    return raw, answer


async def broken_session(env):
    """A resumable session whose connection just dropped: (account, full JID, <enabled/>)."""
    account = env.account()
    raw = await env.raw()
    jid, _ = await raw.login(account)
    enabled = await enable(raw)
    raw.writer.transport.abort()
    await raw.wait_closed()
    return account, jid, enabled


def bodies(inbox, prefix: str) -> list[str]:
    found = [m.findtext("c:body", namespaces=NS) or "" for m in inbox.find(is_message())]
    return [b for b in found if b.startswith(prefix)]


async def test_xep0198_offered_after_authentication_and_enabled_with_resume(env):
    raw = await env.raw()
    account = env.account()
    _, features = await raw.login(account)
    assert features.find("sm:sm", NS) is not None, f"no <sm/> after authentication: {to_str(features)}"
    enabled = await enable(raw, max_seconds=60)
    assert enabled.tag == sm("enabled"), to_str(enabled)
    assert enabled.get("id") and enabled.get("resume") in ("true", "1"), to_str(enabled)
    assert enabled.get("max") == "60", f"the client's max is honoured: {to_str(enabled)}"


async def test_xep0198_enable_without_resume_has_no_id(env):
    raw, _ = await env.raw_session()
    enabled = await enable(raw, resume=False)
    assert enabled.tag == sm("enabled") and enabled.get("id") is None, to_str(enabled)


async def test_xep0198_r_is_answered_with_the_count_of_handled_stanzas(env):
    raw, jid = await env.raw_session()
    await enable(raw, resume=False)
    raw.send("<presence/>")
    await raw.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    raw.send(f"<message to='{jid}' id='m1'><body>to myself</body></message>")
    await raw.inbox.wait(is_message(body="to myself"))
    raw.send(f"<r xmlns='{SM}'/>")
    ack = await raw.inbox.wait(lambda e: e.tag == sm("a"), what="<a/>")
    assert ack.get("h") == "3", to_str(ack)


async def test_xep0198_server_asks_for_acks_and_frees_what_is_acknowledged(env):
    raw, jid = await env.raw_session()
    await enable(raw, resume=False)
    for i in range(12):  # more than request_ack_every (10)
        raw.send(f"<message to='{jid}' id='m{i}'><body>self {i}</body></message>")
    await raw.inbox.wait(is_message(body="self 11"))
    await raw.inbox.wait(lambda e: e.tag == sm("r"), what="the server's <r/>")
    raw.send(f"<a xmlns='{SM}' h='12'/>")
    # Still alive and counting: a ping is answered.
    await raw.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)


async def test_xep0198_ack_beyond_what_was_sent_is_undefined_condition(env):
    raw, jid = await env.raw_session()
    await enable(raw, resume=False)
    raw.send(f"<message to='{jid}' id='m1'><body>one</body></message>")
    await raw.inbox.wait(is_message(body="one"))
    raw.send(f"<a xmlns='{SM}' h='5'/>")
    assert await raw.stream_error() == "undefined-condition"
    error = raw.inbox.find(lambda e: e.tag == tag("stream", "error"))[0]
    text = error.findtext("streams:text", namespaces=NS)
    assert text == "You acknowledged 5 stanzas, but I only sent you 1 so far.", to_str(error)


async def test_xep0198_enable_twice_or_before_bind_is_unexpected_request(env):
    raw, _ = await env.raw_session()
    assert (await enable(raw)).tag == sm("enabled")
    failed = await enable(raw)
    assert failed.tag == sm("failed") and failed.find("stanzas:unexpected-request", NS) is not None, to_str(failed)

    early = await env.raw()
    await early.login(env.account(), bind=False)
    failed = await enable(early)
    assert failed.tag == sm("failed") and failed.find("stanzas:unexpected-request", NS) is not None, to_str(failed)
    # Negotiation goes on: the client can still bind.
    assert await early.bind("later")


async def test_xep0198_r_before_enable_is_unsupported(env):
    raw, _ = await env.raw_session()
    raw.send(f"<r xmlns='{SM}'/>")
    assert await raw.stream_error() == "unsupported-stanza-type"


async def test_xep0198_resume_retransmits_exactly_what_was_not_acknowledged(env):
    account = env.account()
    raw = await env.raw()
    jid, _ = await raw.login(account, "phone")
    enabled = await enable(raw)
    raw.send("<presence/>")
    await raw.inbox.wait(is_presence(frm=jid))           # 1 stanza received
    sender = await env.client()
    for i in range(3):
        sender.message(jid, f"before {i}")
    await raw.inbox.wait(is_message(body="before 2"))   # 4 received
    raw.send(f"<message to='{sender.jid}' id='x'><body>from the phone</body></message>")
    await sender.inbox.wait(is_message(body="from the phone"))
    raw.writer.transport.abort()                        # the network drops; nothing acknowledged
    await raw.wait_closed()
    for i in range(3):
        sender.message(jid, f"while away {i}")
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)

    # The client handled 2 of the 4 stanzas before the drop.
    again, resumed = await resume(env, account, enabled.get("id"), h=2)
    assert resumed.tag == sm("resumed"), to_str(resumed)
    assert resumed.get("previd") == enabled.get("id")
    assert resumed.get("h") == "2", f"the server handled the presence and the message: {to_str(resumed)}"
    await again.inbox.wait(is_message(body="while away 2"))
    sender.message(jid, "after resume")
    await again.inbox.wait(is_message(body="after resume"))
    got = bodies(again.inbox, "")
    assert got == ["before 1", "before 2", "while away 0", "while away 1", "while away 2", "after resume"], got
    # The resumed stream is the same resource, still available.
    assert not sender.inbox.find(is_presence(frm=jid, type_="unavailable"))


async def test_xep0198_resume_of_an_unknown_or_another_users_id_fails_item_not_found(env):
    owner = env.account()
    raw = await env.raw()
    await raw.login(owner)
    enabled = await enable(raw)
    _, failed = await resume(env, env.account(), enabled.get("id"), h=0)
    assert failed.tag == sm("failed") and failed.find("stanzas:item-not-found", NS) is not None, to_str(failed)
    assert failed.get("h") is None, "nothing about another user's session leaks"
    stranger, failed = await resume(env, owner, "0123456789abcdef", h=0)
    assert failed.tag == sm("failed") and failed.find("stanzas:item-not-found", NS) is not None, to_str(failed)
    assert await stranger.bind("fresh"), "after a failed resumption the client binds"
    # The owner's stream was not disturbed.
    await raw.iq("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)


async def test_xep0198_a_second_resumption_takes_the_session_over(env):
    account, jid, enabled = await broken_session(env)
    first, resumed = await resume(env, account, enabled.get("id"), h=0)
    assert resumed.tag == sm("resumed"), to_str(resumed)
    second, resumed = await resume(env, account, enabled.get("id"), h=0)
    assert resumed.tag == sm("resumed"), to_str(resumed)
    assert await first.stream_error() == "conflict"
    sender = await env.client()
    sender.message(jid, "to the latest")
    await second.inbox.wait(is_message(body="to the latest"))


async def test_xep0198_unacknowledged_stanzas_go_offline_when_the_session_times_out(env):
    account = env.account()
    contact = await env.online()
    # Make the account a contact of `contact`, so that its unavailable presence shows the session end.
    owner_client = await env.online(account)
    await env.subscribe_mutually(owner_client, contact)
    await owner_client.close()
    await contact.inbox.wait(is_presence(from_bare=account.jid, type_="unavailable"))

    raw = await env.raw()
    jid, _ = await raw.login(account, "phone")
    enabled = await enable(raw, max_seconds=1)
    assert enabled.get("max") == "1"
    raw.send("<presence/>")
    await contact.inbox.wait(is_presence(frm=jid))
    contact.message(jid, "never acknowledged")
    await raw.inbox.wait(is_message(body="never acknowledged"))
    raw.writer.transport.abort()
    # Detached: still available until the timeout ends the session.
    await contact.inbox.wait(is_presence(frm=jid, type_="unavailable"), timeout=WAIT + 2)
    contact.message(account.jid, "after the end")
    await contact.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)

    _, failed = await resume(env, account, enabled.get("id"), h=0)
    assert failed.tag == sm("failed") and failed.find("stanzas:item-not-found", NS) is not None, to_str(failed)
    assert failed.get("h") == "1", f"the ended session's count: {to_str(failed)}"

    back = await env.online(account)
    await back.inbox.wait(is_message(body="after the end"))
    kept = back.inbox.find(is_message(body="never acknowledged"))
    assert len(kept) == 1, [to_str(m) for m in kept]
    delay = kept[0].find("delay:delay", NS)
    assert delay is not None and delay.get("stamp"), f"kept with its delay stamp: {to_str(kept[0])}"
    assert kept[0].find("sid:stanza-id", NS) is not None, f"kept with its stanza-id: {to_str(kept[0])}"
    assert bodies(back.inbox, "") == ["never acknowledged", "after the end"]


async def test_xep0198_closing_the_stream_ends_the_session_and_keeps_unacknowledged_messages(env):
    account = env.account()
    raw = await env.raw()
    jid, _ = await raw.login(account)
    enabled = await enable(raw)
    raw.send("<presence/>")
    sender = await env.client()
    sender.message(jid, "read but not acknowledged")
    await raw.inbox.wait(is_message(body="read but not acknowledged"))
    raw.send("</stream:stream>")
    await raw.wait_closed()
    _, failed = await resume(env, account, enabled.get("id"), h=0)
    assert failed.tag == sm("failed"), "a closed stream is not resumable"
    back = await env.online(account)
    got = await back.inbox.wait(is_message(body="read but not acknowledged"))
    assert got.find("delay:delay", NS) is not None, to_str(got)


async def slixmpp_phone(env, account=None):
    """A slixmpp client whose xep_0198 plugin enabled resumption; it does not end its session
    when its connection drops, and `resumed` is set when it resumes."""
    phone = await env.client(account, plugins=("xep_0198",))
    phone.x.end_session_on_disconnect = False
    plugin = phone.x.plugin["xep_0198"]
    for _ in range(int(WAIT * 10)):
        if plugin.sm_id:
            break
        await asyncio.sleep(0.1)
    assert plugin.sm_id, "slixmpp did not get <enabled/> with an id"
    phone.resumed = asyncio.Event()
    phone.x.add_event_handler("session_resumed", lambda _e: phone.resumed.set())
    return phone


async def drop_connection(phone) -> None:
    """The phone's connection drops under it (no stream close)."""
    phone.disconnected.clear()
    phone.kill()
    await asyncio.wait_for(phone.disconnected.wait(), WAIT)


async def test_xep0198_slixmpp_resumes_after_its_connection_drops(env):
    """slixmpp's xep_0198 plugin enables with resume, and resumes on reconnect: nothing is lost
    and nothing is delivered twice."""
    phone = await slixmpp_phone(env)
    sender = await env.client()
    for i in range(3):
        sender.message(phone.jid, f"first {i}")
    await phone.inbox.wait(is_message(body="first 2"))
    await drop_connection(phone)
    for i in range(3):
        sender.message(phone.jid, f"second {i}")
    await sender.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    phone.x.connect(env.target.ep.host, env.target.ep.port)
    await asyncio.wait_for(phone.resumed.wait(), WAIT)
    await phone.inbox.wait(is_message(body="second 2"))
    sender.message(phone.jid, "third")
    await phone.inbox.wait(is_message(body="third"))
    got = bodies(phone.inbox, "")
    assert got == [f"first {i}" for i in range(3)] + [f"second {i}" for i in range(3)] + ["third"], got


async def test_xep0198_two_resumptions_at_once_leave_one_stream(env):
    account, jid, enabled = await broken_session(env)
    first, second = await asyncio.gather(resume(env, account, enabled.get("id"), 0), resume(env, account, enabled.get("id"), 0))
    answers = [answer for _, answer in (first, second)]
    assert all(answer.tag == sm("resumed") for answer in answers), [to_str(a) for a in answers]
    # Whichever came second holds the session; the other stream was closed with conflict.
    streams = [first[0], second[0]]
    closed = []
    for stream in streams:
        try:
            closed.append(await stream.stream_error(timeout=2) == "conflict")
        except AssertionError:
            closed.append(False)
    assert closed.count(True) == 1, closed
    live = streams[closed.index(False)]
    sender = await env.client()
    sender.message(jid, "to the survivor")
    await live.inbox.wait(is_message(body="to the survivor"))


async def test_xep0198_an_ack_flood_is_harmless(env):
    raw, jid = await env.raw_session()
    await enable(raw, resume=False)
    raw.send(f"<message to='{jid}' id='m1'><body>one</body></message>")
    await raw.inbox.wait(is_message(body="one"))
    raw.send(f"<a xmlns='{SM}' h='1'/>" * 5000 + f"<a xmlns='{SM}' h='0'/>")
    # h going back is more than was sent (wrapping): the XEP's error, not a crash or a hang.
    assert await raw.stream_error() == "undefined-condition"
