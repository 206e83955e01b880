"""XEP-0313 Message Archive Management on user archives, with XEP-0059 paging, XEP-0359 stanza ids
and XEP-0441 preferences. Queries are sent both raw (what the XEP's examples show, to check every
element of the answer) and through slixmpp's own XEP-0313/XEP-0059 implementation."""

from xml.sax.saxutils import escape

import pytest

from harness import NS, bare, is_message, new_id, stanza_error, tag, to_str

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
M = {**NS, "mam": MAM, "rsm": RSM, "sid": SID}


def form(**fields) -> str:
    """A submitted urn:xmpp:mam:2 form; a list value gives several <value/>s."""
    out = [f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out.append(f"<field var='{var.replace('_', '-')}'>" + "".join(f"<value>{escape(str(v))}</value>" for v in values) + "</field>")
    return "<x xmlns='jabber:x:data' type='submit'>" + "".join(out) + "</x>"


def rsm(max_=None, after=None, before=None) -> str:
    kids = (f"<max>{max_}</max>" if max_ is not None else "") + (f"<after>{after}</after>" if after is not None else "")
    if before is not None:
        kids += "<before/>" if before == "" else f"<before>{before}</before>"
    return f"<set xmlns='{RSM}'>{kids}</set>"


class Page:
    def __init__(self, iq, results):
        self.iq = iq
        self.results = results
        fin = iq.find("mam:fin", M)
        self.fin = fin
        self.complete = fin is not None and fin.get("complete") in ("true", "1")
        self.first = fin.findtext("rsm:set/rsm:first", namespaces=M) if fin is not None else None
        self.last = fin.findtext("rsm:set/rsm:last", namespaces=M) if fin is not None else None

    @property
    def ids(self):
        return [r.find("mam:result", M).get("id") for r in self.results]

    @property
    def bodies(self):
        return [r.findtext("mam:result/forward:forwarded/c:message/c:body", namespaces=M) for r in self.results]

    def stamps(self):
        return [r.find("mam:result/forward:forwarded/delay:delay", M).get("stamp") for r in self.results]


async def query(client, fields="", paging="", extra="", to=None, expect="result") -> Page:
    qid = new_id()
    res = await client.iq(f"<query xmlns='{MAM}' queryid='{qid}'>{fields}{paging}{extra}</query>", "set", to=to)
    assert res.get("type") == expect, f"expected {expect}: {to_str(res)}"
    results = client.inbox.find(lambda e: e.tag == tag("c", "message") and e.find(f"mam:result[@queryid='{qid}']", M) is not None)
    return Page(res, results)


async def conversation(env, count, prefix="m"):
    """Alice sends `count` chat messages to Bob (online) and Bob has them all; returns both."""
    alice = await env.client()
    bob = await env.online()
    for i in range(count):
        alice.message(bob.jid, f"{prefix}{i}")
    await bob.inbox.wait(is_message(body=f"{prefix}{count - 1}"))
    return alice, bob


async def test_xep0313_s6_account_advertises_mam_and_stanza_ids(env):
    c = await env.client()
    info = await c.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to=c.bare)
    features = {f.get("var") for f in info.findall("disco_info:query/disco_info:feature", NS)}
    assert {MAM, MAM + "#extended", SID} <= features, features


async def test_xep0313_s4_1_5_form_lists_the_fields(env):
    c = await env.client()
    res = await c.iq_ok(f"<query xmlns='{MAM}'/>")
    fields = {f.get("var") for f in res.findall("mam:query/xdata:x/xdata:field", M)}
    assert {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"} <= fields, fields


async def test_xep0359_live_copy_carries_the_archive_id(env):
    alice, bob = await conversation(env, 1, "live")
    got = bob.inbox.find(is_message(body="live0"))[0]
    sids = got.findall("sid:stanza-id", M)
    assert len(sids) == 1 and sids[0].get("by") == bob.bare, to_str(got)
    page = await query(bob, form(**{"with": alice.bare}))
    assert page.ids == [sids[0].get("id")] and page.bodies == ["live0"], to_str(page.iq)
    # The sender's own archive has the outgoing message too, under its own id.
    mine = await query(alice, form(**{"with": bob.bare}))
    assert mine.bodies == ["live0"]
    forwarded = mine.results[0].find("mam:result/forward:forwarded/c:message", M)
    assert bare(forwarded.get("from")) == alice.bare and forwarded.get("to") == bob.jid, to_str(forwarded)


async def test_xep0313_s4_2_result_format(env):
    alice, bob = await conversation(env, 1, "fmt")
    page = await query(bob)
    result = page.results[0]
    assert result.get("to") == bob.jid and result.get("from") == bob.bare, to_str(result)
    delay = result.find("mam:result/forward:forwarded/delay:delay", M)
    assert delay is not None and delay.get("stamp", "").endswith("Z"), to_str(result)
    original = result.find("mam:result/forward:forwarded/c:message", M)
    assert original.get("from") == alice.jid and original.get("type") == "chat", to_str(result)
    assert page.complete and page.first == page.last == page.ids[0], to_str(page.iq)


async def test_xep0313_slixmpp_iterates_forward_and_backward(env):
    """slixmpp's XEP-0313 plugin over XEP-0059 paging: every message once, in order, both ways."""
    alice, bob = await conversation(env, 23, "it")
    mam = bob.x.plugin["xep_0313"]
    forward = [m["mam_result"]["forwarded"]["stanza"]["body"] async for m in mam.iterate(with_jid=alice.bare, rsm={"max": 5})]
    assert forward == [f"it{i}" for i in range(23)], forward
    backward = [m["mam_result"]["forwarded"]["stanza"]["body"] async for m in mam.iterate(with_jid=alice.bare, reverse=True, rsm={"max": 5})]
    assert backward == [f"it{i}" for i in reversed(range(23))], backward
    meta = await mam.get_archive_metadata()
    assert meta["mam_metadata"]["start"]["id"] and meta["mam_metadata"]["end"]["id"], str(meta)


async def test_xep0313_s4_3_rsm_pages_and_complete(env):
    alice, bob = await conversation(env, 25, "p")
    fields = form(**{"with": alice.bare})
    first = await query(bob, fields, rsm(10))
    assert first.bodies == [f"p{i}" for i in range(10)] and not first.complete
    assert first.first == first.ids[0] and first.last == first.ids[-1]
    second = await query(bob, fields, rsm(10, after=first.last))
    assert second.bodies == [f"p{i}" for i in range(10, 20)] and not second.complete
    third = await query(bob, fields, rsm(10, after=second.last))
    assert third.bodies == [f"p{i}" for i in range(20, 25)] and third.complete, to_str(third.iq)
    last = await query(bob, fields, rsm(10, before=""))
    assert last.bodies == [f"p{i}" for i in range(15, 25)] and not last.complete, "the last page, oldest first"
    earlier = await query(bob, fields, rsm(10, before=last.first))
    assert earlier.bodies == [f"p{i}" for i in range(5, 15)] and not earlier.complete
    earliest = await query(bob, fields, rsm(10, before=earlier.first))
    assert earliest.bodies == [f"p{i}" for i in range(5)] and earliest.complete


async def test_xep0313_s4_1_filters_start_end_and_ids(env):
    alice, bob = await conversation(env, 6, "f")
    every = await query(bob, form(**{"with": alice.bare}))
    stamps, ids = every.stamps(), every.ids
    window = await query(bob, form(**{"with": alice.bare, "start": stamps[1], "end": stamps[3]}))
    assert window.bodies == ["f1", "f2", "f3"], "start and end are inclusive"
    between = await query(bob, form(after_id=ids[0], before_id=ids[4]))
    assert between.bodies == ["f1", "f2", "f3"], "after-id and before-id are exclusive"
    picked = await query(bob, form(ids=[ids[5], ids[2]]))
    assert picked.bodies == ["f2", "f5"], "ids, in archive order"
    flipped = await query(bob, form(**{"with": alice.bare}), rsm(3, before=""), "<flip-page/>")
    assert flipped.bodies == ["f5", "f4", "f3"], "flip-page sends the same page newest first"


async def test_xep0313_s4_1_1_with_bare_and_full_jid(env):
    bob = await env.online()
    alice1 = await env.client(resource="one")
    alice2 = await env.client(alice1.account, "two")
    carol = await env.client()
    # One at a time: messages from different connections have no order between them.
    for sender, body in ((alice1, "from one"), (alice2, "from two"), (carol, "from carol")):
        sender.message(bob.jid, body)
        await bob.inbox.wait(is_message(body=body))
    assert (await query(bob, form(**{"with": alice1.bare}))).bodies == ["from one", "from two"]
    assert (await query(bob, form(**{"with": alice2.jid}))).bodies == ["from two"], "a full JID matches that resource only"
    assert (await query(bob, form(**{"with": carol.bare}))).bodies == ["from carol"]


async def test_xep0313_s7_1_1_offline_message_stored_once_with_the_same_id(env):
    alice = await env.client()
    acc = env.account()
    for i in range(3):
        alice.message(acc.jid, f"off{i}")
    await alice.iq_ok("<ping xmlns='urn:xmpp:ping'/>", to=env.domain)
    bob = await env.online(acc)
    await bob.inbox.wait(is_message(body="off2"))
    delivered = [m for m in bob.inbox.find(is_message()) if (m.findtext("c:body", namespaces=NS) or "").startswith("off")]
    live_ids = [m.find("sid:stanza-id", M).get("id") for m in delivered]
    assert [m.findtext("c:body", namespaces=NS) for m in delivered] == ["off0", "off1", "off2"]
    page = await query(bob)
    assert page.bodies == ["off0", "off1", "off2"], "each message archived exactly once"
    assert page.ids == live_ids, "the offline copy carries the archive id"
    again = await env.online(acc)
    await alice.barrier(again)
    assert not again.inbox.find(is_message(body="off0")), "offline message delivered twice"


async def test_xep0313_s7_1_1_only_conversation_content_is_archived(env):
    alice = await env.client()
    bob = await env.online()
    alice.message(bob.jid, None, extra="<composing xmlns='http://jabber.org/protocol/chatstates'/>")
    alice.message(bob.jid, "secret", extra="<no-store xmlns='urn:xmpp:hints'/>")
    alice.message(bob.jid, "news", type_="headline")
    alice.message(bob.jid, "kept")
    await bob.inbox.wait(is_message(body="kept"))
    assert (await query(bob)).bodies == ["kept"]
    unarchived = bob.inbox.find(is_message(body="secret"))[0]
    assert unarchived.find("sid:stanza-id", M) is None, "an unarchived message must not claim an archive id"


async def test_xep0359_s5_forged_stanza_ids_are_removed(env):
    alice = await env.client()
    bob = await env.online()
    alice.message(bob.jid, "forged", extra=f"<stanza-id xmlns='{SID}' by='{bob.bare}' id='fake'/>")
    got = await bob.inbox.wait(is_message(body="forged"))
    ids = [s.get("id") for s in got.findall("sid:stanza-id", M) if s.get("by") == bob.bare]
    assert len(ids) == 1 and ids[0] != "fake", to_str(got)


async def test_xep0441_preferences_never_and_always(env):
    alice = await env.client()
    carol = await env.client()
    bob = await env.online()
    prefs = await bob.iq_ok(f"<prefs xmlns='{MAM}'/>")
    assert prefs.find("mam:prefs", M).get("default") == "always", to_str(prefs)
    await bob.iq_ok(f"<prefs xmlns='{MAM}' default='always'><always/><never><jid>{alice.bare}</jid></never></prefs>", "set")
    alice.message(bob.jid, "not archived")
    carol.message(bob.jid, "archived")
    await bob.inbox.wait(is_message(body="not archived"))
    await bob.inbox.wait(is_message(body="archived"))
    assert (await query(bob)).bodies == ["archived"]
    await bob.iq_ok(f"<prefs xmlns='{MAM}' default='never'><always><jid>{alice.bare}</jid></always><never/></prefs>", "set")
    alice.message(bob.jid, "now archived")
    carol.message(bob.jid, "now not")
    await bob.inbox.wait(is_message(body="now archived"))
    await bob.inbox.wait(is_message(body="now not"))
    assert (await query(bob)).bodies == ["archived", "now archived"]
    stored = await bob.iq_ok(f"<prefs xmlns='{MAM}'/>")
    assert stored.findtext("mam:prefs/mam:always/mam:jid", namespaces=M) == alice.bare, to_str(stored)


async def test_xep0313_results_go_to_the_querying_resource_only(env):
    alice, bob = await conversation(env, 2, "r")
    other = await env.client(bob.account, "other")
    page = await query(other)
    assert page.bodies == ["r0", "r1"]
    await alice.barrier(bob)
    assert not bob.inbox.find(lambda e: e.find("mam:result", M) is not None), "results leaked to another resource"


async def test_xep0313_large_max_is_capped(env):
    alice, bob = await conversation(env, 260, "cap")
    page = await query(bob, form(**{"with": alice.bare}), rsm(100000))
    assert len(page.results) == 250 and not page.complete, (len(page.results), to_str(page.iq))
    rest = await query(bob, form(**{"with": alice.bare}), rsm(100000, after=page.last))
    assert len(rest.results) == 10 and rest.complete


async def test_xep0313_max_zero_returns_no_messages(env):
    alice, bob = await conversation(env, 2, "z")
    page = await query(bob, form(**{"with": alice.bare}), rsm(0))
    assert page.results == [] and not page.complete, to_str(page.iq)
    empty = await query(bob, form(**{"with": "nobody@" + env.domain}), rsm(0))
    assert empty.results == [] and empty.complete


@pytest.mark.parametrize("fields,paging,condition", [
    (form(x_unknown_field="1"), "", "feature-not-implemented"),
    (form(start="last tuesday"), "", "bad-request"),
    (form(end="2026-13-45T99:00:00Z"), "", "bad-request"),
    (form(**{"with": "@@bad"}), "", "jid-malformed"),
    (form(after_id="4242"), "", "item-not-found"),
    (form(before_id="not-an-id"), "", "item-not-found"),
    (form(ids=["4242"]), "", "item-not-found"),
    ("", rsm(10, after="4242"), "item-not-found"),
    ("", rsm(10, before="4242"), "item-not-found"),
    ("", rsm("ten"), "bad-request"),
    ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x>", "", "bad-request"),
    ("<x xmlns='jabber:x:data' type='form'/>", "", "bad-request"),
])
async def test_xep0313_bad_queries_get_the_specified_errors(env, fields, paging, condition):
    c = await env.client()
    page = await query(c, fields, paging, expect="error")
    assert stanza_error(page.iq)[1] == condition, to_str(page.iq)
    assert page.results == []


async def test_xep0313_s8_1_another_users_archive_is_forbidden(env):
    alice, bob = await conversation(env, 1, "priv")
    mallory = await env.client()
    page = await query(mallory, to=bob.bare, expect="error")
    assert stanza_error(page.iq)[1] == "forbidden", to_str(page.iq)
    prefs = await mallory.iq(f"<prefs xmlns='{MAM}'/>", to=bob.bare)
    assert stanza_error(prefs)[1] == "forbidden", to_str(prefs)
