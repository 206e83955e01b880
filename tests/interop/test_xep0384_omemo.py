"""XEP-0384 OMEMO end to end through Starling, with a third-party implementation: slixmpp-omemo
(python-omemo, twomemo/oldmemo, X3DH, Double Ratchet) from PyPI on every client. What the server
must do for it: PEP device lists and bundles (open access, persistent, `max_items=max`, the
publish-options the library sends), `+notify` for the device-list nodes, carbons of encrypted
messages, offline storage and MAM keeping the encrypted payload intact.

Alice has two devices (phone and laptop), Bob one. Alice's phone writes to Bob: Bob decrypts it,
and so does Alice's laptop from the sent carbon. Bob answers; Alice's devices decrypt. Then Bob is
offline while Alice writes again; Bob's device comes back (same identity) and reads the message
from his archive (XEP-0313) and decrypts it there. The plaintext is never on the wire.

slixmpp-omemo 2.2.0 publishes device lists and bundles for both OMEMO versions (urn:xmpp:omemo:2
and eu.siacs.conversations.axolotl) but, lacking SCE (XEP-0420), seals message bodies with oldmemo
only, so the encrypted messages here carry `<encrypted xmlns='eu.siacs.conversations.axolotl'>`."""

import asyncio
import copy
import xml.etree.ElementTree as ET

import omemo.storage
import pytest
from slixmpp import JID
from slixmpp.plugins.base import register_plugin
from slixmpp.stanza import Message
from slixmpp_omemo import XEP_0384

from harness import to_str

pytestmark = pytest.mark.starling_only

PLUGINS = ["xep_0004", "xep_0030", "xep_0060", "xep_0115", "xep_0163", "xep_0280", "xep_0334", "xep_0384"]
OMEMO_NAMESPACES = ("urn:xmpp:omemo:2", "eu.siacs.conversations.axolotl")
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
MAM = "urn:xmpp:mam:2"


class MemoryStorage(omemo.storage.Storage):
    """python-omemo's storage in a dict: a device's keys and sessions for the test's life."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict = {}

    async def _load(self, key: str) -> omemo.storage.Maybe:
        return omemo.storage.Just(self.data[key]) if key in self.data else omemo.storage.Nothing()

    async def _store(self, key: str, value) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class BlindTrustOmemo(XEP_0384):
    """slixmpp-omemo as a client application configures it: one storage per device (the full JID,
    so the same device logging in again has the same identity), blind trust before verification."""

    stores: dict[str, MemoryStorage] = {}

    @property
    def storage(self) -> omemo.storage.Storage:
        return BlindTrustOmemo.stores.setdefault(str(self.xmpp.boundjid.full), MemoryStorage())

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted, identifier) -> None:
        pass

    async def _prompt_manual_trust(self, manually_trusted, identifier) -> None:
        raise AssertionError("blind trust before verification decides every device")


register_plugin(BlindTrustOmemo)


async def device(env, account, resource: str, presence: bool = True):
    client = await (env.online(account, resource, plugins=PLUGINS) if presence else env.client(account, resource, plugins=PLUGINS))
    client.x.use_message_ids = True
    await asyncio.wait_for(client.x.plugin["xep_0384"].get_session_manager(), 30)  # keys generated, bundle and device list published
    if presence:
        # The harness sent a bare initial presence; the client's caps (with the device lists'
        # +notify) go out in its next one, as a client announces them.
        await client.x.plugin["xep_0115"].update_caps()
    return client


def encrypted(element: ET.Element) -> bool:
    return any(element.find(f"{{{ns}}}encrypted") is not None for ns in OMEMO_NAMESPACES)


async def decrypt(client, element: ET.Element) -> str:
    decrypted, _ = await client.x.plugin["xep_0384"].decrypt_message(Message(client.x, xml=copy.deepcopy(element)))
    return decrypted["body"]


async def send_encrypted(client, to: str, body: str) -> str:
    # What a client does before it writes to someone: the device lists, the recipient's and its
    # own other devices' (also kept current by PEP notifications, +notify in the caps).
    await client.x.plugin["xep_0384"].refresh_device_lists({JID(to), JID(client.bare)})
    message = client.x.make_message(mto=JID(to), mtype="chat", mbody=body)
    sealed, errors = await client.x.plugin["xep_0384"].encrypt_message(message, JID(to))
    assert sealed is not None, errors
    sealed.send()
    return sealed["id"]


async def received(client, match, what: str) -> ET.Element:
    return await client.inbox.wait(match, 20, what=what)


async def test_omemo_conversation_with_carbons_offline_and_mam(env):
    alice_account, bob_account = env.account(), env.account()
    phone = await device(env, alice_account, "phone")
    laptop = await device(env, alice_account, "laptop")
    bob = await device(env, bob_account, "desk")
    await env.subscribe_mutually(phone, bob)
    # Contacts now: each learns the other's device list from PEP (+notify in its caps, the last item).
    for client, contact in ((phone, bob), (bob, phone)):
        await received(client, lambda e, contact=contact: e.get("from") == contact.bare and e.find(
            "{http://jabber.org/protocol/pubsub#event}event/{http://jabber.org/protocol/pubsub#event}items[@node='urn:xmpp:omemo:2:devices']") is not None,
            f"{client.jid}: the contact's device list")
    for client in (phone, laptop, bob):
        await client.iq_ok(f"<enable xmlns='{CARBONS}'/>", "set")

    # Phone -> Bob, with the sent carbon at the laptop.
    first = "the heron flies at midnight"
    first_id = await send_encrypted(phone, bob.bare, first)
    at_bob = await received(bob, lambda e: e.tag == "{jabber:client}message" and e.get("id") == first_id and encrypted(e), "Bob: the encrypted message")
    assert first not in to_str(at_bob), "the plaintext travelled"
    assert await decrypt(bob, at_bob) == first
    carbon = await received(laptop, lambda e: e.find(f"{{{CARBONS}}}sent") is not None, "laptop: the sent carbon")
    inner = carbon.find(f"{{{CARBONS}}}sent/{{{FORWARD}}}forwarded/{{jabber:client}}message")
    assert inner is not None and inner.get("id") == first_id and encrypted(inner), to_str(carbon)
    assert await decrypt(laptop, inner) == first

    # Bob -> Alice: each of her devices decrypts it (delivered, or as a received carbon).
    reply = "understood, the lantern is lit"
    reply_id = await send_encrypted(bob, alice_account.jid, reply)
    for client in (phone, laptop):
        def reply_or_carbon(e, client=client):
            if e.tag != "{jabber:client}message":
                return False
            forwarded = e.find(f"{{{CARBONS}}}received/{{{FORWARD}}}forwarded/{{jabber:client}}message")
            return (e.get("id") == reply_id and encrypted(e)) or (forwarded is not None and forwarded.get("id") == reply_id)
        got = await received(client, reply_or_carbon, f"{client.jid}: Bob's reply")
        forwarded = got.find(f"{{{CARBONS}}}received/{{{FORWARD}}}forwarded/{{jabber:client}}message")
        assert await decrypt(client, forwarded if forwarded is not None else got) == reply

    # Bob is offline; Alice writes; Bob's device comes back and reads it from his archive.
    await bob.close()
    await asyncio.sleep(0.5)
    later = "meet at the old mill"
    later_id = await send_encrypted(phone, bob.bare, later)
    await asyncio.sleep(1.0)  # stored offline and archived
    bob_again = await device(env, bob_account, "desk", presence=False)  # no presence: offline storage keeps it
    query_id = "mam-omemo"
    bob_again.send(f"<iq type='set' id='q-{query_id}'><query xmlns='{MAM}' queryid='{query_id}'><x xmlns='jabber:x:data' type='submit'>"
                   f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
                   f"<field var='with'><value>{alice_account.jid}</value></field></x></query></iq>")
    await received(bob_again, lambda e: e.get("id") == f"q-{query_id}" and e.get("type") == "result", "the end of the MAM query")
    results = [e.find(f"{{{MAM}}}result/{{{FORWARD}}}forwarded/{{jabber:client}}message")
               for e in bob_again.inbox.find(lambda e: e.find(f"{{{MAM}}}result[@queryid='{query_id}']") is not None)]
    archived = [m for m in results if m is not None and m.get("id") == later_id]
    assert len(archived) == 1 and encrypted(archived[0]), [to_str(m) for m in results]
    assert later not in to_str(archived[0]), "the archive holds the plaintext"
    assert await decrypt(bob_again, archived[0]) == later
