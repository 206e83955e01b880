"""XEP-0363 upload throughput against a running server: CONCURRENCY users (user1.., password
"secret") each ask for slots over XMPP (slixmpp's XEP-0363 plugin) and PUT files over HTTP
(aiohttp), FILES files of SIZE bytes in all; then every file is fetched back (GET). Reports MB/s and
files/s each way, per-upload latency, and the server's CPU and peak RSS (and the S3 server's, given
its pid) as one JSON object.
Run with the interop venv's python (slixmpp, aiohttp): see upload-bench.sh."""

import argparse
import asyncio
import json
import os
import ssl
import threading
import time

import aiohttp
import slixmpp

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Watch:
    """CPU used and peak RSS of some processes over a phase (RSS sampled every 20 ms)."""

    def __init__(self, pids: dict[str, int]):
        self.pids, self.peak, self.stop = pids, {name: 0 for name in pids}, threading.Event()
        self.cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.stop.wait(0.02):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_bytes(pid))

    def done(self, seconds: float) -> dict:
        self.stop.set()
        self.thread.join()
        return {name: {"cores_used": (cpu_seconds(pid) - self.cpu[name]) / seconds, "peak_rss_bytes": self.peak[name]} for name, pid in self.pids.items()}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


async def connect(args, n: int) -> slixmpp.ClientXMPP:
    client = slixmpp.ClientXMPP(f"user{n}@{args.domain}/bench", "secret")
    client.ssl_context = ssl.create_default_context()
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE
    client.register_plugin("xep_0363")
    started = asyncio.Event()
    client.add_event_handler("session_start", lambda _: started.set())
    client.connect(args.host, args.port)
    await asyncio.wait_for(started.wait(), 30)
    return client


async def main():
    parser = argparse.ArgumentParser()
    for name, default in (("host", "127.0.0.1"), ("port", 5222), ("domain", "localhost"), ("concurrency", 8), ("size", 1 << 20), ("files", 64), ("server-pid", 0), ("s3-pid", 0)):
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    clients = [await connect(args, n + 1) for n in range(args.concurrency)]
    service = slixmpp.JID(f"upload.{args.domain}")
    payload = os.urandom(args.size)
    pids = {name: pid for name, pid in (("server", args.server_pid), ("s3", args.s3_pid)) if pid}
    per_client = [args.files // args.concurrency + (1 if n < args.files % args.concurrency else 0) for n in range(args.concurrency)]
    latencies, gets, failures = [], [], []

    async def uploader(http: aiohttp.ClientSession, client, count: int):
        for index in range(count):
            began = time.monotonic()
            slot = await client.plugin["xep_0363"].request_slot(service, f"file{index}.bin", args.size, "application/octet-stream", timeout=30)
            put, get = slot["http_upload_slot"]["put"]["url"], slot["http_upload_slot"]["get"]["url"]
            async with http.put(put, data=payload, headers={"Content-Type": "application/octet-stream"}) as response:
                if response.status != 201:
                    failures.append(f"PUT {response.status}: {await response.text()}")
                    continue
            latencies.append(time.monotonic() - began)
            gets.append(get)

    async def downloader(http: aiohttp.ClientSession, urls: list[str]):
        for url in urls:
            async with http.get(url) as response:
                received = 0
                async for chunk in response.content.iter_chunked(1 << 20):
                    received += len(chunk)
                if response.status != 200 or received != args.size:
                    failures.append(f"GET {response.status}, {received} bytes")

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
        watch, began = Watch(pids), time.monotonic()
        await asyncio.gather(*(uploader(http, client, count) for client, count in zip(clients, per_client)))
        put_seconds = time.monotonic() - began
        put_usage = watch.done(put_seconds)
        watch, began = Watch(pids), time.monotonic()
        await asyncio.gather(*(downloader(http, gets[n::args.concurrency]) for n in range(args.concurrency)))
        get_seconds = time.monotonic() - began
        get_usage = watch.done(get_seconds)
    for client in clients:
        client.disconnect()
    stored = len(latencies) * args.size
    report = {
        "size": args.size, "files": args.files, "concurrency": args.concurrency, "failures": failures[:5], "failed": len(failures),
        "put": {"seconds": put_seconds, "mb_per_second": stored / put_seconds / 1e6, "files_per_second": len(latencies) / put_seconds,
                "latency_p50_ms": percentile(latencies, 0.5) * 1000, "latency_p99_ms": percentile(latencies, 0.99) * 1000, "usage": put_usage},
        "get": {"seconds": get_seconds, "mb_per_second": stored / get_seconds / 1e6, "files_per_second": len(gets) / get_seconds, "usage": get_usage},
    }
    if args.json_out:
        json.dump(report, open(args.json_out, "w"), indent=1)
    print(json.dumps(report))


asyncio.run(main())
