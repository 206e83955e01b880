"""XEP-0045 multi-user chat at conference.localhost: creating a room (locked until its owner
accepts or submits the configuration), joining with history, presence with status codes,
groupchat with the room's stanza-ids, private messages, nick changes, leaving, self-ping
(XEP-0410), destruction, and the errors of §7.2 and §7.9 — on the wire with raw XML, and with
slixmpp's own xep_0045 plugin."""

import asyncio
import uuid

import pytest

from harness import NS, WAIT, is_message, is_presence, tag, to_str

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
M = {**NS, "muc": MUC, "user": MUC_USER, "owner": MUC_OWNER, "sid": "urn:xmpp:sid:0", "delay": "urn:xmpp:delay",
     "info": "http://jabber.org/protocol/disco#info", "items": "http://jabber.org/protocol/disco#items"}
SERVICE = "conference.localhost"

pytestmark = pytest.mark.starling_only


def new_room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}@{SERVICE}"


def statuses(presence) -> set[int]:
    return {int(s.get("code")) for s in presence.findall("user:x/user:status", M)}


async def join(client, room: str, nick: str, extra: str = ""):
    """Sends the join and returns the joiner's own presence (status 110)."""
    client.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>")
    return await client.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.get("from") == f"{room}/{nick}"
                                   and (110 in statuses(e) or e.get("type") == "error"), what=f"join of {room}/{nick}")


async def create_instant_room(owner, nick: str = "owner") -> str:
    room = new_room()
    own = await join(owner, room, nick)
    assert {110, 201} <= statuses(own), to_str(own)
    item = own.find("user:x/user:item", M)
    assert (item.get("affiliation"), item.get("role")) == ("owner", "moderator"), to_str(own)
    answer = await owner.iq(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>", "set", to=room)
    assert answer.get("type") == "result", to_str(answer)
    return room


async def test_the_service_is_discovered_and_says_it_is_a_muc_service(env):
    client = await env.online()
    items = await client.iq(f"<query xmlns='{M['items']}'/>", "get", to="localhost")
    assert SERVICE in [item.get("jid") for item in items.findall("items:query/items:item", M)], to_str(items)
    info = await client.iq(f"<query xmlns='{M['info']}'/>", "get", to=SERVICE)
    identity = info.find("info:query/info:identity", M)
    assert (identity.get("category"), identity.get("type")) == ("conference", "text"), to_str(info)
    assert MUC in [f.get("var") for f in info.findall("info:query/info:feature", M)]


async def test_a_new_room_is_locked_until_its_owner_accepts_the_configuration(env):
    owner, guest = await env.online(), await env.online()
    room = new_room()
    own = await join(owner, room, "owner")
    assert {110, 201} <= statuses(own), to_str(own)
    refused = await join(guest, room, "guest")
    assert refused.get("type") == "error" and refused.find("c:error/s:item-not-found", {**NS, "s": "urn:ietf:params:xml:ns:xmpp-stanzas"}) is not None, to_str(refused)
    form = await owner.iq(f"<query xmlns='{MUC_OWNER}'/>", "get", to=room)
    fields = [f.get("var") for f in form.findall("owner:query/{jabber:x:data}x/{jabber:x:data}field", M)]
    assert "muc#roomconfig_roomname" in fields and "muc#roomconfig_whois" in fields, to_str(form)
    not_owner = await guest.iq(f"<query xmlns='{MUC_OWNER}'/>", "get", to=room)
    assert not_owner.get("type") == "error", to_str(not_owner)
    answer = await owner.iq(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
                            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
                            "<field var='muc#roomconfig_roomname'><value>Coven</value></field></x></query>", "set", to=room)
    assert answer.get("type") == "result", to_str(answer)
    own = await join(guest, room, "guest")
    assert own.get("type") != "error" and 201 not in statuses(own), to_str(own)
    info = await guest.iq(f"<query xmlns='{M['info']}'/>", "get", to=room)
    assert info.find("info:query/info:identity", M).get("name") == "Coven", to_str(info)
    features = {f.get("var") for f in info.findall("info:query/info:feature", M)}
    assert {MUC, "muc_temporary", "muc_open", "muc_semianonymous", "muc_unsecured"} <= features, features


async def test_joining_talking_and_leaving(env):
    owner, guest = await env.online(), await env.online()
    room = await create_instant_room(owner)
    own = await join(guest, room, "guest")
    item = own.find("user:x/user:item", M)
    assert (item.get("affiliation"), item.get("role")) == ("none", "participant"), to_str(own)
    assert item.get("jid") is None, "semi-anonymous: a participant does not see real JIDs"
    # The joiner saw the owner first, and then the (empty) subject.
    await guest.inbox.wait(is_presence(frm=f"{room}/owner"))
    subject = await guest.inbox.wait(lambda e: e.tag == tag("c", "message") and e.find("c:subject", NS) is not None)
    assert subject.get("type") == "groupchat", to_str(subject)
    # The owner (a moderator) sees the guest's real JID.
    seen = await owner.inbox.wait(is_presence(frm=f"{room}/guest"))
    assert seen.find("user:x/user:item", M).get("jid") == guest.jid, to_str(seen)

    guest.send(f"<message to='{room}' type='groupchat' id='m1'><body>hello coven</body></message>")
    for client in (owner, guest):
        got = await client.inbox.wait(is_message(frm=f"{room}/guest", body="hello coven", type_="groupchat"))
        sid = got.find("sid:stanza-id", M)
        assert sid is not None and sid.get("by") == room, to_str(got)

    # Private message through the room.
    guest.send(f"<message to='{room}/owner' type='chat'><body>psst</body></message>")
    pm = await owner.inbox.wait(is_message(frm=f"{room}/guest", body="psst"))
    assert pm.find("user:x", M) is not None, to_str(pm)

    # A third joins and asks for one message of history.
    third = await env.online()
    await join(third, room, "third", "<history maxstanzas='1'/>")
    old = await third.inbox.wait(is_message(frm=f"{room}/guest", body="hello coven"))
    assert old.find("delay:delay", M).get("from") == room, to_str(old)

    # Nick change (§7.6): 303 with the new nick, then presence under it.
    guest.send(f"<presence to='{room}/witch'/>")
    changed = await owner.inbox.wait(is_presence(frm=f"{room}/guest", type_="unavailable"))
    assert 303 in statuses(changed) and changed.find("user:x/user:item", M).get("nick") == "witch", to_str(changed)
    await owner.inbox.wait(is_presence(frm=f"{room}/witch"))
    mine = await guest.inbox.wait(is_presence(frm=f"{room}/witch"))
    assert 110 in statuses(mine), to_str(mine)
    told = guest.inbox.find(is_presence(frm=f"{room}/guest", type_="unavailable"))
    assert len(told) == 1 and {303, 110} <= statuses(told[0]), [to_str(t) for t in told]

    # Leaving: the leaver gets its own unavailable (110), the others see it go.
    guest.send(f"<presence to='{room}/witch' type='unavailable'/>")
    gone = await guest.inbox.wait(is_presence(frm=f"{room}/witch", type_="unavailable"))
    assert 110 in statuses(gone), to_str(gone)
    await owner.inbox.wait(is_presence(frm=f"{room}/witch", type_="unavailable"))
    guest.send(f"<message to='{room}' type='groupchat'><body>still here?</body></message>")
    refused = await guest.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("type") == "error")
    assert refused.find("c:error/{urn:ietf:params:xml:ns:xmpp-stanzas}not-acceptable", NS) is not None, to_str(refused)


async def test_nick_conflicts_and_bad_joins_get_the_xeps_errors(env):
    owner, other = await env.online(), await env.online()
    room = await create_instant_room(owner, "same")
    taken = await join(other, room, "same")
    assert taken.find("c:error/{urn:ietf:params:xml:ns:xmpp-stanzas}conflict", NS) is not None, to_str(taken)
    other.send(f"<presence to='{room}'><x xmlns='{MUC}'/></presence>")
    no_nick = await other.inbox.wait(lambda e: e.tag == tag("c", "presence") and e.get("type") == "error" and e.get("from") == room)
    assert no_nick.find("c:error/{urn:ietf:params:xml:ns:xmpp-stanzas}jid-malformed", NS) is not None, to_str(no_nick)
    chat = await other.iq(f"<query xmlns='{M['info']}'/>", "get", to=f"nowhere-{uuid.uuid4().hex[:6]}@{SERVICE}")
    assert chat.find("c:error/{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found", NS) is not None, to_str(chat)


async def test_self_ping_and_a_disconnect_leave_the_room(env):
    owner, guest = await env.online(), await env.online()
    room = await create_instant_room(owner)
    await join(guest, room, "guest")
    pong = await guest.iq("<ping xmlns='urn:xmpp:ping'/>", "get", to=f"{room}/guest")
    assert pong.get("type") == "result", to_str(pong)
    outsider = await env.online()
    refused = await outsider.iq("<ping xmlns='urn:xmpp:ping'/>", "get", to=f"{room}/guest")
    assert refused.find("c:error/{urn:ietf:params:xml:ns:xmpp-stanzas}not-acceptable", NS) is not None, to_str(refused)
    await guest.close()
    await owner.inbox.wait(is_presence(frm=f"{room}/guest", type_="unavailable"), what="the disconnected occupant leaves")


async def test_the_owner_destroys_the_room_with_an_alternate_venue(env):
    owner, guest = await env.online(), await env.online()
    room = await create_instant_room(owner)
    await join(guest, room, "guest")
    answer = await owner.iq(f"<query xmlns='{MUC_OWNER}'><destroy jid='elsewhere@{SERVICE}'><reason>moving</reason></destroy></query>", "set", to=room)
    assert answer.get("type") == "result", to_str(answer)
    gone = await guest.inbox.wait(is_presence(frm=f"{room}/guest", type_="unavailable"))
    destroy = gone.find("user:x/user:destroy", M)
    assert destroy is not None and destroy.get("jid") == f"elsewhere@{SERVICE}" and destroy.findtext("user:reason", namespaces=M) == "moving", to_str(gone)


async def test_slixmpp_xep_0045_joins_and_talks(env):
    """slixmpp's own MUC plugin: join (waiting for its own presence), groupchat both ways."""
    owner = await env.online()
    room = await create_instant_room(owner)
    client = await env.client(plugins=("xep_0045",))
    muc = client.x.plugin["xep_0045"]
    presence, subject, occupants, history = await asyncio.wait_for(muc.join_muc_wait(room, "slix", maxstanzas=0), WAIT)
    assert str(presence["from"]) == f"{room}/slix"
    assert "owner" in [str(p["from"].resource) for p in occupants] or muc.get_roster(room)
    got = asyncio.get_running_loop().create_future()
    client.x.add_event_handler("groupchat_message", lambda msg: got.done() or got.set_result(msg))
    owner.send(f"<message to='{room}' type='groupchat'><body>welcome slix</body></message>")
    message = await asyncio.wait_for(got, WAIT)
    assert message["body"] == "welcome slix" and message["mucnick"] == "owner"
    client.x.send_message(mto=room, mbody="thanks", mtype="groupchat")
    await owner.inbox.wait(is_message(frm=f"{room}/slix", body="thanks", type_="groupchat"))


def admin(items: str) -> str:
    return f"<query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query>"


def condition(stanza) -> str:
    error = stanza.find("c:error", NS)
    assert error is not None, to_str(stanza)
    return next(child.tag.split("}")[1] for child in error if "xmpp-stanzas" in child.tag)


async def test_kick_ban_voice_and_affiliation_lists(env):
    owner, guest, other = await env.online(), await env.online(), await env.online()
    room = await create_instant_room(owner)
    await join(guest, room, "guest")
    await join(other, room, "other")
    # A participant may not kick; a moderator may not kick the owner.
    refused = await guest.iq(admin("<item nick='other' role='none'/>"), "set", to=room)
    assert condition(refused) == "forbidden", to_str(refused)
    await owner.iq_ok(admin("<item nick='guest' role='moderator'/>"), "set", room)
    promoted = await other.inbox.wait(lambda e: is_presence(frm=f"{room}/guest")(e) and e.find("user:x/user:item[@role='moderator']", M) is not None)
    assert promoted is not None
    refused = await guest.iq(admin("<item nick='owner' role='none'/>"), "set", to=room)
    assert condition(refused) == "not-allowed", to_str(refused)
    # Kick (§8.2): 307 with the reason, to the kicked and to the others.
    await guest.iq_ok(admin("<item nick='other' role='none'><reason>spam</reason></item>"), "set", room)
    kicked = await other.inbox.wait(is_presence(frm=f"{room}/other", type_="unavailable"))
    assert {307, 110} <= statuses(kicked) and kicked.findtext("user:x/user:item/user:reason", namespaces=M) == "spam", to_str(kicked)
    seen = await owner.inbox.wait(is_presence(frm=f"{room}/other", type_="unavailable"))
    assert 307 in statuses(seen), to_str(seen)
    # Ban (§9.1): 301, and the banned user cannot come back.
    other_bare = other.jid.split("/")[0]
    await owner.iq_ok(admin(f"<item jid='{other_bare}' affiliation='outcast'/>"), "set", room)
    banned = await join(other, room, "again")
    assert banned.get("type") == "error" and condition(banned) == "forbidden", to_str(banned)
    outcasts = await owner.iq_ok(admin("<item affiliation='outcast'/>"), "get", room)
    assert [i.get("jid") for i in outcasts.findall("{http://jabber.org/protocol/muc#admin}query/{http://jabber.org/protocol/muc#admin}item", M)] == [other_bare]
    # Membership shows in presence; the last owner cannot step down.
    guest_bare = guest.jid.split("/")[0]
    await owner.iq_ok(admin(f"<item jid='{guest_bare}' affiliation='member'/>"), "set", room)
    member = await owner.inbox.wait(lambda e: is_presence(frm=f"{room}/guest")(e) and e.find("user:x/user:item[@affiliation='member']", M) is not None)
    assert member.find("user:x/user:item", M).get("role") == "participant", to_str(member)
    owner_bare = owner.jid.split("/")[0]
    last = await owner.iq(admin(f"<item jid='{owner_bare}' affiliation='admin'/>"), "set", to=room)
    assert condition(last) == "conflict", to_str(last)
    not_admin = await guest.iq(admin("<item affiliation='member'/>"), "get", to=room)
    assert condition(not_admin) == "forbidden", to_str(not_admin)


async def test_public_rooms_are_listed_by_the_service(env):
    owner = await env.online()
    room = await create_instant_room(owner)
    items = await owner.iq(f"<query xmlns='{M['items']}'/>", "get", to=SERVICE)
    assert room in [i.get("jid") for i in items.findall("items:query/items:item", M)], to_str(items)
    await owner.iq_ok(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_publicroom'><value>0</value></field></x></query>", "set", room)
    items = await owner.iq(f"<query xmlns='{M['items']}'/>", "get", to=SERVICE)
    assert room not in [i.get("jid") for i in items.findall("items:query/items:item", M)], to_str(items)


async def test_mediated_invitation_and_decline(env):
    owner, invitee = await env.online(), await env.online()
    room = await create_instant_room(owner)
    invitee_bare = invitee.jid.split("/")[0]
    owner.send(f"<message to='{room}'><x xmlns='{MUC_USER}'><invite to='{invitee_bare}'><reason>join us</reason></invite></x></message>")
    invitation = await invitee.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("from") == room and e.find("user:x/user:invite", M) is not None)
    invite = invitation.find("user:x/user:invite", M)
    assert invite.get("from") == owner.jid and invite.findtext("user:reason", namespaces=M) == "join us", to_str(invitation)
    invitee.send(f"<message to='{room}'><x xmlns='{MUC_USER}'><decline to='{owner.jid}'><reason>busy</reason></decline></x></message>")
    declined = await owner.inbox.wait(lambda e: e.tag == tag("c", "message") and e.find("user:x/user:decline", M) is not None)
    assert declined.find("user:x/user:decline", M).get("from") == invitee_bare, to_str(declined)


async def test_the_room_archive_answers_its_occupants(env):
    """XEP-0313 on the room's JID: what was said, under the stanza-ids occupants saw live."""
    owner, guest = await env.online(), await env.online()
    room = await create_instant_room(owner)
    await join(guest, room, "guest")
    live_ids = []
    for n in range(3):
        guest.send(f"<message to='{room}' type='groupchat'><body>archived {n}</body></message>")
        got = await owner.inbox.wait(is_message(frm=f"{room}/guest", body=f"archived {n}", type_="groupchat"))
        live_ids.append(got.find("sid:stanza-id", M).get("id"))
    answer = await guest.iq("<query xmlns='urn:xmpp:mam:2' queryid='q1'/>", "set", to=room)
    assert answer.get("type") == "result" and answer.find("{urn:xmpp:mam:2}fin", NS).get("complete") == "true", to_str(answer)
    results = guest.inbox.find(lambda e: e.tag == tag("c", "message") and e.get("from") == room and e.find("{urn:xmpp:mam:2}result[@queryid='q1']", NS) is not None)
    bodies = [r.findtext("{urn:xmpp:mam:2}result/{urn:xmpp:forward:0}forwarded/c:message/c:body", namespaces=NS) for r in results]
    assert bodies == [f"archived {n}" for n in range(3)], bodies
    assert [r.find("{urn:xmpp:mam:2}result", NS).get("id") for r in results] == live_ids
    outsider = await env.online()
    refused = await outsider.iq("<query xmlns='urn:xmpp:mam:2'/>", "set", to=room)
    assert condition(refused) == "forbidden", to_str(refused)


async def test_a_persistent_room_outlives_its_occupants(env):
    owner, guest = await env.online(), await env.online()
    room = new_room()
    await join(owner, room, "owner")
    await owner.iq_ok(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
                      "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
                      "<field var='muc#roomconfig_roomname'><value>Kept</value></field></x></query>", "set", room)
    guest_bare = guest.jid.split("/")[0]
    await owner.iq_ok(f"<query xmlns='http://jabber.org/protocol/muc#admin'><item jid='{guest_bare}' affiliation='member'/></query>", "set", room)
    owner.send(f"<presence to='{room}/owner' type='unavailable'/>")
    await owner.inbox.wait(is_presence(frm=f"{room}/owner", type_="unavailable"))
    # Empty, but persistent: it is still there, with its name and its member.
    info = await guest.iq(f"<query xmlns='{M['info']}'/>", "get", to=room)
    assert info.find("info:query/info:identity", M).get("name") == "Kept", to_str(info)
    assert "muc_persistent" in {f.get("var") for f in info.findall("info:query/info:feature", M)}
    own = await join(guest, room, "guest")
    assert 201 not in statuses(own) and own.find("user:x/user:item", M).get("affiliation") == "member", to_str(own)


async def test_limits_an_occupant_flood_a_long_subject_and_presence_broadcast(env):
    owner, guest = await env.online(), await env.online()
    room = await create_instant_room(owner)
    await join(guest, room, "guest")
    # A burst of 40 at once: the first [muc] occupant_burst (20) go out, the rest get resource-constraint.
    for n in range(40):
        guest.send(f"<message to='{room}' type='groupchat' id='f{n}'><body>flood {n}</body></message>")
    await guest.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("id") == "f39")
    refused = [e for e in guest.inbox.find(lambda e: e.tag == tag("c", "message") and e.get("type") == "error")]
    assert refused and all(condition(e) == "resource-constraint" for e in refused), [to_str(e) for e in refused[:3]]
    reflected = guest.inbox.find(lambda e: is_message(frm=f"{room}/guest", type_="groupchat")(e) and (e.findtext("c:body", namespaces=NS) or "").startswith("flood"))
    assert 20 <= len(reflected) < 40 and len(reflected) + len(refused) == 40, (len(reflected), len(refused))
    subject = "x" * 1001
    owner.send(f"<message to='{room}' type='groupchat' id='s1'><subject>{subject}</subject></message>")
    too_long = await owner.inbox.wait(lambda e: e.tag == tag("c", "message") and e.get("id") == "s1" and e.get("type") == "error")
    assert condition(too_long) == "not-acceptable", to_str(too_long)
    # Only moderators' presence is broadcast: a new participant is not shown to the others.
    await owner.iq_ok(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
                      "<field var='muc#roomconfig_presencebroadcast'><value>moderator</value></field></x></query>", "set", room)
    quiet = await env.online()
    own = await join(quiet, room, "quiet")
    assert own.get("type") != "error", to_str(own)
    await quiet.inbox.wait(is_presence(frm=f"{room}/owner"))
    # The room handles stanzas in order: once the owner has quiet's message, it would have had its presence.
    quiet.send(f"<message to='{room}' type='groupchat'><body>after joining</body></message>")
    await owner.inbox.wait(is_message(frm=f"{room}/quiet", body="after joining"))
    assert not owner.inbox.find(is_presence(frm=f"{room}/quiet")), "a participant's presence is not broadcast"


async def test_a_user_in_too_many_rooms_or_joining_too_fast_gets_resource_constraint(env):
    """The interop server allows 6 rooms per user ([muc] max_rooms_per_user), 6 joins at once and
    one every 2 s after that; the limits count the user's rooms over all its resources and stop
    counting a room it left or was kicked from."""
    owner, helper, user = await env.online(), await env.online(), await env.online()
    second = await env.online(user.account, "second")
    rooms = [await create_instant_room(owner) for _ in range(4)] + [await create_instant_room(helper) for _ in range(3)]
    for room in rooms[:6]:
        own = await join(user, room, "u")
        assert own.get("type") != "error", to_str(own)
    seventh = await join(second, rooms[6], "u")
    assert seventh.get("type") == "error" and condition(seventh) == "resource-constraint", to_str(seventh)
    assert seventh.get("from") == f"{rooms[6]}/u", to_str(seventh)
    # Changing presence in a room it is in is no join.
    user.send(f"<presence to='{rooms[0]}/u'><show>away</show></presence>")
    await owner.inbox.wait(lambda e: is_presence(frm=f"{rooms[0]}/u")(e) and e.findtext("c:show", namespaces=NS) == "away")
    # Kicked from one: a room free, but the join allowance is spent (one per 2 s).
    await owner.iq_ok("<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='u' role='none'/></query>", "set", rooms[1])
    await user.inbox.wait(is_presence(frm=f"{rooms[1]}/u", type_="unavailable"))
    too_fast = await join(user, rooms[6], "u")
    assert condition(too_fast) == "resource-constraint", to_str(too_fast)
    await asyncio.sleep(2.2)
    again = await join(user, rooms[6], "u")
    assert again.get("type") != "error", to_str(again)
    # Leaving frees a room; the user's owner and the rooms agree.
    user.send(f"<presence to='{rooms[2]}/u' type='unavailable'/>")
    await user.inbox.wait(is_presence(frm=f"{rooms[2]}/u", type_="unavailable"))
    await asyncio.sleep(2.2)
    back = await join(user, rooms[1], "u")
    assert back.get("type") != "error", to_str(back)
    # In six rooms again; a destroyed one frees its place (its presence has <destroy/>, no 110).
    await owner.iq_ok(f"<query xmlns='{MUC_OWNER}'><destroy/></query>", "set", rooms[0])
    await user.inbox.wait(lambda e: is_presence(frm=f"{rooms[0]}/u", type_="unavailable")(e) and e.find("user:x/user:destroy", M) is not None)
    fresh = await create_instant_room(helper)
    await asyncio.sleep(2.2)
    after_destroy = await join(user, fresh, "u")
    assert after_destroy.get("type") != "error", to_str(after_destroy)


async def test_a_persistent_room_keeps_its_history_across_a_restart(env):
    """A persistent room read back after a restart serves joiners its history from its archive,
    under the same stanza-ids, and its new stanza-ids come after them."""
    from harness import Env
    owner = await env.online()
    room = new_room()
    await join(owner, room, "owner")
    await owner.iq_ok(f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
                      "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>", "set", room)
    said = []
    for n in range(3):
        owner.send(f"<message to='{room}' type='groupchat'><body>before {n}</body></message>")
        got = await owner.inbox.wait(is_message(frm=f"{room}/owner", body=f"before {n}", type_="groupchat"))
        said.append(got.find("sid:stanza-id", M).get("id"))
    # A query flushes the archive writer (read-your-writes); a graceful stop that flushes it is issue 18.
    await owner.iq_ok("<query xmlns='urn:xmpp:mam:2'/>", "set", room)
    server = env.target.server
    server.stop()
    server.start()
    later = Env(env.target)
    try:
        guest = await later.online()
        await join(guest, room, "guest", "<history maxstanzas='3'/>")
        history = [await guest.inbox.wait(is_message(frm=f"{room}/owner", body=f"before {n}")) for n in range(3)]
        assert [h.find("sid:stanza-id", M).get("id") for h in history] == said
        assert all(h.find("delay:delay", M) is not None for h in history)
        guest.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
        after = await guest.inbox.wait(is_message(frm=f"{room}/guest", body="after"))
        assert int(after.find("sid:stanza-id", M).get("id")) > int(said[-1]), to_str(after)
    finally:
        await later.aclose()
