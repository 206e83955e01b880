"""Issue 20's hostile shape, as a benchmark: one authenticated user floods another who is offline
and whose offline queue is full. Fills the queue, then writes messages as fast as the server reads
them for `--seconds`, counting the errors that come back by condition. Prints one JSON line.
Uses the raw stream of tests/interop/harness.py (STARTTLS, PLAIN, bind)."""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "interop"))
from harness import Account, Endpoint, RawStream  # noqa: E402


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sender", default="user1")
    p.add_argument("--recipient", default="user2")
    p.add_argument("--password", default="secret")
    p.add_argument("--fill", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--rate", type=float, default=0, help="messages a second; 0: as fast as the server reads")
    a = p.parse_args()
    ep = Endpoint("127.0.0.1", a.port, a.port + 1, "localhost")
    raw = await RawStream.open(ep)
    await raw.login(Account(a.sender, a.password, "localhost"))
    raw._task.cancel()  # read the errors as bytes from here on: counting, not parsing
    to = f"{a.recipient}@localhost"
    counts = {"service-unavailable": 0, "resource-constraint": 0}
    received = bytearray()

    async def read() -> None:
        while data := await raw.reader.read(1 << 16):
            received.extend(data)
            # Up to the last complete tag; the rest waits for the next read.
            done = received.rfind(b">") + 1
            for condition in counts:
                counts[condition] += received.count(f"<{condition} ".encode(), 0, done)
            del received[:done]

    reader = asyncio.ensure_future(read())
    fill = "".join(f"<message to='{to}' type='chat' id='fill-{i}'><body>fill {i}</body></message>" for i in range(a.fill))
    raw.writer.write(fill.encode())
    await raw.writer.drain()
    await asyncio.sleep(2)
    before = dict(counts)
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < a.seconds:
        chunk = "".join(f"<message to='{to}' type='chat' id='f{sent + i}'><body>flood message {sent + i}</body></message>" for i in range(500))
        raw.writer.write(chunk.encode())
        await raw.writer.drain()
        sent += 500
        if a.rate:
            await asyncio.sleep(max(0.0, start + sent / a.rate - time.monotonic()))
    elapsed = time.monotonic() - start
    # The errors still on their way.
    last = -1
    while sum(counts.values()) != last:
        last = sum(counts.values())
        await asyncio.sleep(2)
    reader.cancel()
    refused = {k: counts[k] - before[k] for k in counts}
    print(json.dumps({"fill": a.fill, "fill_refused": sum(before.values()), "sent": sent, "seconds": round(elapsed, 1),
                      "sent_per_s": round(sent / elapsed), "refused": refused, "unanswered": sent - sum(refused.values())}))


asyncio.run(main())
