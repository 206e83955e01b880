#!/usr/bin/env python3
"""Memory per idle incoming s2s stream: a release server (b.test, pinned to CPU 0, [s2s] trusting
a test CA) and COUNT streams from `evil.test` (a certificate from that CA), each through STARTTLS
and SASL EXTERNAL to an authenticated, idle stream. The server's RSS before and after, per stream.

    loadtest/scripts/s2s-idle-streams.py [COUNT]     (BIN=dir with a release `starling`)
"""

import asyncio
import base64
import os
import resource
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "interop"))
from federation_peers import make_ca  # noqa: E402

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
WORK = Path(os.environ.get("WORK", "/tmp/starling-s2s-idle"))
BIN = Path(os.environ.get("BIN", "/var/cache/starling/target/release"))
S2S, ADMIN = 38434, 38480
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' from='evil.test' to='b.test' version='1.0'>")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def read_until(reader: asyncio.StreamReader, *markers: bytes) -> None:
    seen = b""
    while not any(marker in seen for marker in markers):
        chunk = await asyncio.wait_for(reader.read(4096), 10)
        if not chunk:
            raise ConnectionError(f"closed before {markers!r}: {seen[-300:]!r}")
        seen += chunk


async def open_stream(context: ssl.SSLContext):
    reader, writer = await asyncio.open_connection("127.0.0.1", S2S)
    writer.write(HEADER.encode())
    await read_until(reader, b"</stream:features>")
    writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await read_until(reader, b"<proceed")
    await writer.start_tls(context, server_hostname="b.test")
    writer.write(HEADER.encode())
    await read_until(reader, b"</stream:features>")
    writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{base64.b64encode(b'evil.test').decode()}</auth>".encode())
    await read_until(reader, b"<success")
    writer.write(HEADER.encode())
    await read_until(reader, b"<stream:features/>")  # nothing more to negotiate
    return reader, writer


async def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    WORK.mkdir(parents=True, exist_ok=True)
    certs = WORK / "certs"
    ca = make_ca(certs, ("b.test", "evil.test"))
    (WORK / "conf.toml").write_text(f"""[server]
domain = "b.test"
data_dir = "{WORK / 'data'}"
[c2s]
starttls_listen = ["127.0.0.1:38432"]
direct_tls_listen = []
[tls]
cert_file = "{certs / 'b.test.crt'}"
key_file = "{certs / 'b.test.key'}"
[admin]
listen = "127.0.0.1:{ADMIN}"
[s2s]
enabled = true
listen = ["127.0.0.1:{S2S}"]
dialback = false
ca_file = "{ca}"
""")
    server = subprocess.Popen(["taskset", "-c", "0", str(BIN / "starling"), "-c", str(WORK / "conf.toml"), "serve"],
                              stdout=open(WORK / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(certs / "evil.test.crt", certs / "evil.test.key")
        await asyncio.sleep(1)
        before = rss_kib(server.pid)
        streams = []
        for start in range(0, COUNT, 100):
            streams += await asyncio.gather(*(open_stream(context) for _ in range(start, min(COUNT, start + 100))))
        await asyncio.sleep(3)
        after = rss_kib(server.pid)
        print(f"{len(streams)} idle authenticated s2s streams in: RSS {before} → {after} KiB, "
              f"{(after - before) / len(streams):.1f} KiB per stream")
    finally:
        server.terminate()
        server.wait()


asyncio.run(main())
