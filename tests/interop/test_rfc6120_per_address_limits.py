"""Per-address connection limits ([c2s] max_connections_per_address, connection_rate_per_address,
connection_burst_per_address; off by default): a connection over a limit gets a stream and then a
`policy-violation` stream error saying which limit (RFC 6120 §4.9.3.14), never a bare reset; other
addresses are not affected. Clients connect from distinct loopback addresses."""

import asyncio

import pytest

from conftest import MODE, _binary, _servers
from harness import NS, Env, RawStream, StarlingServer, Target, tag

LIMITS = "max_connections_per_address = 3\nconnection_rate_per_address = 1\nconnection_burst_per_address = 5\n"


@pytest.fixture(scope="module")
def limited_env(workdir):
    if MODE != "starling":
        pytest.skip("Starling's own limits")
    server = StarlingServer(_binary(), workdir / "per-address", extra={"c2s": LIMITS}, name="starling-per-address")
    _servers.append(server)
    server.start()
    yield Env(Target("starling", server.endpoint, [], admin_url=server.admin_url, server=server))
    server.stop()
    _servers.remove(server)


async def opened(env: Env, source_ip: str) -> RawStream:
    raw = await RawStream.open(env.target.ep, source_ip=source_ip)
    raw.send(raw.stream_header())
    return raw


async def served(raw: RawStream) -> bool:
    """Whether the stream went on to its features (else it must have ended with a stream error)."""
    first = await raw.inbox.wait(lambda e: e.tag in (tag("stream", "features"), tag("stream", "error")))
    return first.tag == tag("stream", "features")


async def refusal(raw: RawStream) -> tuple[str, str]:
    condition = await raw.stream_error()
    text = raw.inbox.find(lambda e: e.tag == tag("stream", "error"))[0].findtext("streams:text", namespaces=NS) or ""
    return condition, text


@pytest.mark.deadline(60)
async def test_an_address_holds_at_most_its_connections(limited_env):
    held = [await opened(limited_env, "127.0.0.61") for _ in range(3)]
    assert all([await served(raw) for raw in held])
    over = await opened(limited_env, "127.0.0.61")
    assert await refusal(over) == ("policy-violation", "too many connections from your address")
    other = await opened(limited_env, "127.0.0.62")
    assert await served(other), "another address is not affected"
    # One ends: its place is free again.
    await held[0].close()
    for _ in range(50):
        again = await opened(limited_env, "127.0.0.61")
        if await served(again):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the address stayed at its limit after a connection ended")
    for raw in held[1:] + [other, again]:
        await raw.close()


@pytest.mark.deadline(60)
async def test_an_address_opens_at_most_its_rate(limited_env):
    # The burst (5), each connection closed before the next; then the rate (1 a second) refuses.
    for _ in range(5):
        raw = await opened(limited_env, "127.0.0.63")
        assert await served(raw)
        await raw.close()
    over = await opened(limited_env, "127.0.0.63")
    condition, text = await refusal(over)
    assert condition == "policy-violation" and "new connections" in text, (condition, text)
    await asyncio.sleep(1.2)
    later = await opened(limited_env, "127.0.0.63")
    assert await served(later), "a second later, one more"
    await later.close()
