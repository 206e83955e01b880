#!/usr/bin/env python3
"""Markdown table from compare.sh's JSON: summary.py OUTDIR SERVER..."""
import json, os, sys

out, servers = sys.argv[1], sys.argv[2:]

def load(s, name):
    try:
        with open(os.path.join(out, f"{s}-{name}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d

def f(v, fmt="{:,.0f}", scale=1.0):
    return "–" if v is None else fmt.format(v * scale)

rows = [
    ("sessions held at end of hold / attempted", lambda c, s, h, _server: f"{f(get(c,'hold','sessions_at_end'))} / {f(get(c,'logins','attempted'))}"),
    ("logins/s", lambda c, s, h, _server: f(get(c, 'logins', 'logins_per_second'))),
    ("login latency p50 / p99 (ms)", lambda c, s, h, _server: f"{f(get(c,'logins','latency','p50_us'),'{:.1f}',1e-3)} / {f(get(c,'logins','latency','p99_us'),'{:.1f}',1e-3)}"),
    ("server CPU per login (ms)", lambda c, s, h, _server: f(get(c, 'hold', 'server_cpu_per_login_ms'), "{:.2f}")),
    ("server cores during logins", lambda c, s, h, _server: f(get(c, 'login_usage', 'server', 'cores_used'), "{:.2f}")),
    ("server RSS per idle session (KiB)", lambda c, s, h, _server: f(get(c, 'hold', 'server_rss_per_session_bytes'), "{:.1f}", 1 / 1024)),
    ("chat saturation (msg/s, closed loop)", lambda c, s, h, _server: f(get(s, 'chat', 'throughput_per_second'))),
    ("  sent / lost", lambda c, s, h, _server: f"{f(get(s,'chat','sent'))} / {f(get(s,'chat','lost'))}"),
    ("  latency p50 / p99 (ms)", lambda c, s, h, _server: f"{f(get(s,'chat','latency','p50_us'),'{:.1f}',1e-3)} / {f(get(s,'chat','latency','p99_us'),'{:.1f}',1e-3)}"),
    ("  server cores", lambda c, s, h, _server: f(get(s, 'usage', 'server', 'cores_used'), "{:.2f}")),
    ("chat at 50 % of saturation: rate (msg/s)", lambda c, s, h, _server: f(get(h, 'chat', 'target_rate'))),
    ("  received msg/s / lost", lambda c, s, h, _server: f"{f(get(h,'chat','throughput_per_second'))} / {f(get(h,'chat','lost'))}"),
    ("  latency p50 / p99 / p99.9 (ms)", lambda c, s, h, _server: " / ".join(f(get(h,'chat','latency',k),'{:.2f}',1e-3) for k in ('p50_us','p99_us','p999_us'))),
    ("  latency from schedule p99 (ms)", lambda c, s, h, _server: f(get(h, 'chat', 'latency_from_schedule', 'p99_us'), "{:.2f}", 1e-3)),
    ("  server cores", lambda c, s, h, _server: f(get(h, 'usage', 'server', 'cores_used'), "{:.2f}")),
]
for rate in os.environ.get("MAM_RATES", "").split():
    mam = lambda s, rate=rate: load(s, f"mam-{rate}")
    rows += [
        (f"archive queries at {rate}/s (newest page of 50): answered / sent", lambda c, s, h, server, mam=mam: f"{f(get(mam(server),'mam','answered'))} / {f(get(mam(server),'mam','queries_sent'))}"),
        ("  results per answer", lambda c, s, h, server, mam=mam: f(get(mam(server), 'mam', 'results_per_answer'), "{:.1f}")),
        ("  query latency p50 / p99 (ms)", lambda c, s, h, server, mam=mam: " / ".join(f(get(mam(server),'mam','latency',k),'{:.2f}',1e-3) for k in ('p50_us','p99_us'))),
        ("  server cores", lambda c, s, h, server, mam=mam: f(get(mam(server), 'usage', 'server', 'cores_used'), "{:.2f}")),
    ]
data = {s: (load(s, "connect"), load(s, "chat-saturation"), load(s, "chat-half")) for s in servers}
print("| measure | " + " | ".join(servers) + " |")
print("|---|" + "---|" * len(servers))
for name, fn in rows:
    cells = []
    for s in servers:
        try:
            cells.append(fn(*data[s], s))
        except Exception:
            cells.append("–")
    print(f"| {name} | " + " | ".join(cells) + " |")
