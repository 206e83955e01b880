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

# (row title, report it reads, cell from that report); every report is read once per server.
rows = [
    ("sessions held at end of hold / attempted", "connect", lambda c: f"{f(get(c,'hold','sessions_at_end'))} / {f(get(c,'logins','attempted'))}"),
    ("logins/s", "connect", lambda c: f(get(c, 'logins', 'logins_per_second'))),
    ("login latency p50 / p99 (ms)", "connect", lambda c: f"{f(get(c,'logins','latency','p50_us'),'{:.1f}',1e-3)} / {f(get(c,'logins','latency','p99_us'),'{:.1f}',1e-3)}"),
    ("server CPU per login (ms)", "connect", lambda c: f(get(c, 'hold', 'server_cpu_per_login_ms'), "{:.2f}")),
    ("server cores during logins", "connect", lambda c: f(get(c, 'login_usage', 'server', 'cores_used'), "{:.2f}")),
    ("server RSS per idle session (KiB)", "connect", lambda c: f(get(c, 'hold', 'server_rss_per_session_bytes'), "{:.1f}", 1 / 1024)),
    ("chat saturation (msg/s, closed loop)", "chat-saturation", lambda s: f(get(s, 'chat', 'throughput_per_second'))),
    ("  sent / lost", "chat-saturation", lambda s: f"{f(get(s,'chat','sent'))} / {f(get(s,'chat','lost'))}"),
    ("  latency p50 / p99 (ms)", "chat-saturation", lambda s: f"{f(get(s,'chat','latency','p50_us'),'{:.1f}',1e-3)} / {f(get(s,'chat','latency','p99_us'),'{:.1f}',1e-3)}"),
    ("  server cores", "chat-saturation", lambda s: f(get(s, 'usage', 'server', 'cores_used'), "{:.2f}")),
    ("chat at 50 % of saturation: rate (msg/s)", "chat-half", lambda h: f(get(h, 'chat', 'target_rate'))),
    ("  received msg/s / lost", "chat-half", lambda h: f"{f(get(h,'chat','throughput_per_second'))} / {f(get(h,'chat','lost'))}"),
    ("  latency p50 / p99 / p99.9 (ms)", "chat-half", lambda h: " / ".join(f(get(h,'chat','latency',k),'{:.2f}',1e-3) for k in ('p50_us','p99_us','p999_us'))),
    ("  latency from schedule p99 (ms)", "chat-half", lambda h: f(get(h, 'chat', 'latency_from_schedule', 'p99_us'), "{:.2f}", 1e-3)),
    ("  server cores", "chat-half", lambda h: f(get(h, 'usage', 'server', 'cores_used'), "{:.2f}")),
]
for rate in os.environ.get("MAM_RATES", "").split():
    report = f"mam-{rate}"
    rows += [
        (f"archive queries at {rate}/s (newest page of 50): answered / sent", report, lambda m: f"{f(get(m,'mam','answered'))} / {f(get(m,'mam','queries_sent'))}"),
        ("  results per answer", report, lambda m: f(get(m, 'mam', 'results_per_answer'), "{:.1f}")),
        ("  query latency p50 / p99 (ms)", report, lambda m: " / ".join(f(get(m,'mam','latency',k),'{:.2f}',1e-3) for k in ('p50_us','p99_us'))),
        ("  server cores", report, lambda m: f(get(m, 'usage', 'server', 'cores_used'), "{:.2f}")),
    ]
data = {(s, report): load(s, report) for s in servers for _, report, _ in rows}
print("| measure | " + " | ".join(servers) + " |")
print("|---|" + "---|" * len(servers))
for name, report, fn in rows:
    cells = []
    for s in servers:
        try:
            cells.append(fn(data[(s, report)]))
        except Exception:
            cells.append("–")
    print(f"| {name} | " + " | ".join(cells) + " |")
