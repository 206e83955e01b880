"""Issue 18: the Grafana dashboard (deploy/grafana/starling.json) and the Prometheus alerting rules
(deploy/prometheus/alerts.yaml) name only metrics the server exports: every `starling_*` and
`process_*` name in their expressions (a histogram's `_bucket`, `_sum` and `_count` included) is on
a running server's /metrics after a login and a message. A renamed metric fails here, not in
production. Also: each expression's parentheses and braces balance, and every alert has a summary."""

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import is_message

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\b((?:starling|process)_[a-z0-9_]+)\b")

pytestmark = pytest.mark.starling_only


def exported(admin_url: str) -> set[str]:
    with urllib.request.urlopen(admin_url + "/metrics", timeout=5) as page:
        text = page.read().decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


def expressions() -> dict[str, str]:
    """Where each expression is (file: panel or alert) → the expression."""
    found = {}
    dashboard = json.loads((ROOT / "deploy/grafana/starling.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"starling.json: {panel['title']} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found[f"starling.json: variable {variable['name']}"] = variable["query"]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alerts.yaml: {rule['alert']}"] = rule["expr"]
            assert rule.get("annotations", {}).get("summary"), f"{rule['alert']} has no summary"
    return found


async def test_dashboards_and_alerts_name_only_exported_metrics(env, target):
    sender, receiver = await env.client(), await env.online()
    sender.message(receiver.jid, "for the counters")
    await receiver.inbox.wait(is_message(body="for the counters"))
    names = exported(target.admin_url)
    found = expressions()
    assert len(found) > 30, "the dashboard and the rules were read"
    unknown = {where: sorted(set(NAME.findall(expr)) - names) for where, expr in found.items()}
    unknown = {where: missing for where, missing in unknown.items() if missing}
    assert not unknown, f"metrics the server does not export: {unknown}"
    for where, expr in found.items():
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), f"{where}: unbalanced {opening}{closing} in {expr}"
    used = {name for expr in found.values() for name in NAME.findall(expr)}
    for needed in ("starling_kafka_consumer_lag_records", "starling_redis_command_seconds_bucket", "starling_owned_partitions",
                   "process_resident_memory_bytes", "starling_archive_queued"):
        assert needed in used and needed in names, needed
