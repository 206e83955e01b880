"""XEP-0215 external service discovery: a server with a STUN and a TURN server configured tells a
(slixmpp) client about both, and gives it TURN credentials in the TURN REST scheme a TURN server
such as coturn checks with only the shared secret: username EXPIRY:user@domain, password base64
HMAC-SHA1(secret, username), valid until `expires`."""

import base64
import hashlib
import hmac
import time
from datetime import datetime

import pytest

from conftest import own_server
from harness import Account, Env, Target, stanza_error

EXTDISCO = "urn:xmpp:extdisco:2"
SECRET = "turn-shared-secret"
LIFETIME = 3600
PASSWORD = "ext-Password-1"


@pytest.fixture(scope="module")
def ext_env(workdir):
    sections = f"""[external_services]
credential_lifetime_seconds = {LIFETIME}
[[external_services.services]]
type = "stun"
host = "stun.example.com"
port = 3478
transport = "udp"
[[external_services.services]]
type = "turn"
host = "turn.example.com"
port = 3478
transport = "udp"
name = "Example TURN"
secret = "{SECRET}"
"""
    with own_server(workdir, "extdisco", sections, ("caller",), PASSWORD) as server:
        yield Env(Target("starling", server.endpoint, []))


def services(result) -> dict:
    return {service.get("type"): service.attrib for service in result.iter(f"{{{EXTDISCO}}}service")}


@pytest.mark.deadline(30)
async def test_services_are_listed_with_turn_credentials_a_turn_server_accepts(ext_env):
    caller = await ext_env.client(Account("caller", PASSWORD, "localhost"))
    info = await caller.iq_ok("<query xmlns='http://jabber.org/protocol/disco#info'/>", to="localhost")
    assert EXTDISCO in {feature.get("var") for feature in info.iter("{http://jabber.org/protocol/disco#info}feature")}

    listed = services(await caller.iq_ok(f"<services xmlns='{EXTDISCO}'/>", to="localhost"))
    assert set(listed) == {"stun", "turn"}
    stun, turn = listed["stun"], listed["turn"]
    assert (stun["host"], stun["port"], stun["transport"]) == ("stun.example.com", "3478", "udp")
    assert "username" not in stun and "restricted" not in stun, "an open STUN server needs no credentials"
    assert (turn["host"], turn["name"], turn["restricted"]) == ("turn.example.com", "Example TURN", "1")
    expiry, user = turn["username"].split(":", 1)
    assert user == "caller@localhost"
    assert abs(int(expiry) - (time.time() + LIFETIME)) < 60
    expected = base64.b64encode(hmac.new(SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["password"] == expected, "what coturn's use-auth-secret computes from the same secret"
    assert datetime.fromisoformat(turn["expires"].replace("Z", "+00:00")).timestamp() == int(expiry)

    only_turn = await caller.iq_ok(f"<services xmlns='{EXTDISCO}' type='turn'/>", to="localhost")
    assert set(services(only_turn)) == {"turn"} and only_turn.find(f"{{{EXTDISCO}}}services").get("type") == "turn"
    await caller.close()


@pytest.mark.deadline(30)
async def test_credentials_for_one_service_and_errors(ext_env):
    caller = await ext_env.client(Account("caller", PASSWORD, "localhost"))
    answer = await caller.iq_ok(f"<credentials xmlns='{EXTDISCO}'><service host='turn.example.com' type='turn'/></credentials>", to="localhost")
    assert answer.find(f"{{{EXTDISCO}}}credentials") is not None
    assert services(answer)["turn"]["username"].endswith(":caller@localhost")
    unknown = await caller.iq(f"<credentials xmlns='{EXTDISCO}'><service host='elsewhere.example'/></credentials>", to="localhost")
    assert stanza_error(unknown) == ("cancel", "item-not-found")
    malformed = await caller.iq(f"<credentials xmlns='{EXTDISCO}'/>", to="localhost")
    assert stanza_error(malformed)[1] == "bad-request"
    written = await caller.iq(f"<services xmlns='{EXTDISCO}'/>", type_="set", to="localhost")
    assert stanza_error(written)[1] == "bad-request"
    await caller.close()
