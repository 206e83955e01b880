"""Issue 18, item 4: OpenTelemetry traces across the cluster, checked in a real trace backend.

The test command builds Jaeger (v2, the OpenTelemetry Collector distribution, from the Go module
proxy) and names it in $STARLING_JAEGER; this starts it on loopback ports of its own with the
in-memory store, starts the 4-process cluster exporting every stanza's trace to it over OTLP/HTTP
(`sample_ratio = 1.0`) with JSON logs, sends one message between users served by different edges
and session nodes, and finds its trace through Jaeger's query API: the edge that received it, the
session node that handled it, the archive write, and the edge that delivered it, each span a child
of the one before, one trace. Runs in the Cassandra pass (the cluster needs Kafka and CQL)."""

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from harness import Account, Env, Target, free_port, is_message, new_id
from test_cluster import Cluster, partition_of, start_cluster, stop_cluster

JAEGER_CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}}
  telemetry:
    metrics: {{level: none}}
extensions:
  jaeger_query:
    storage: {{traces: memory}}
    http: {{endpoint: "127.0.0.1:{query}"}}
    grpc: {{endpoint: "127.0.0.1:{grpc}"}}
  jaeger_storage:
    backends:
      memory: {{memory: {{max_traces: 10000}}}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{otlp}"}}
processors:
  batch: {{timeout: 100ms}}
exporters:
  jaeger_storage_exporter: {{trace_storage: memory}}
"""


@pytest.fixture(scope="module")
def jaeger(workdir):
    from conftest import MODE, STORE_SECTION
    if MODE != "starling" or not STORE_SECTION:
        pytest.skip("the trace test runs the cluster: it needs the CQL store and Kafka (STARLING_TEST_STORE=scylla)")
    binary = os.environ.get("STARLING_JAEGER")
    if not binary:
        if os.environ.get("STARLING_REQUIRE_SERVICES"):
            pytest.fail("STARLING_JAEGER is not set: scripts/test builds Jaeger and names it there")
        pytest.skip("no Jaeger binary (STARLING_JAEGER); scripts/test builds one")
    ports = {"query": free_port(), "grpc": free_port(), "otlp": free_port()}
    config = workdir / "jaeger.yaml"
    config.write_text(JAEGER_CONFIG.format(**ports))
    log = open(workdir / "jaeger.log", "ab")
    proc = subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    query = f"http://127.0.0.1:{ports['query']}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"jaeger exited ({proc.returncode}): see {workdir / 'jaeger.log'}"
        try:
            with urllib.request.urlopen(query + "/api/services", timeout=1):
                break
        except OSError:
            assert time.monotonic() < deadline, "jaeger did not answer within 60 s"
            time.sleep(0.2)
    yield f"http://127.0.0.1:{ports['otlp']}/v1/traces", query
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def traced(workdir, jaeger):
    from conftest import PASSWORD
    otlp, query = jaeger
    telemetry = f'[telemetry]\notlp_endpoint = "{otlp}"\nsample_ratio = 1.0\nlog_format = "json"\n'
    nodes = start_cluster(workdir, "tr", "trc", accounts=40, sections=telemetry,
                          log_filters={"session": "info,starling_session=debug"})
    yield Cluster(nodes, [Account(f"trc{i}", PASSWORD, nodes["edge1"].domain) for i in range(1, 41)]), query
    stop_cluster(nodes)


def find_trace(query: str, stanza_id: str, wanted: set[str], timeout: float = 30) -> dict:
    """The trace whose spans carry `xmpp.id = stanza_id`, once it has every span name in `wanted`
    and every span's parent (spans reach Jaeger in batches, each when it ends)."""
    params = urllib.parse.urlencode({"service": "starling", "tags": json.dumps({"xmpp.id": stanza_id}), "lookback": "1h", "limit": 5})
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{query}/api/traces?{params}", timeout=5) as answer:
            traces = json.load(answer)["data"] or []
        if traces:
            seen = traces[0]
            trace_id = seen["traceID"]
            with urllib.request.urlopen(f"{query}/api/traces/{trace_id}", timeout=5) as answer:
                seen = json.load(answer)["data"][0]
            ids = {span["spanID"] for span in seen["spans"]}
            parents = {parent_of(span) for span in seen["spans"]} - {None}
            if wanted <= {span["operationName"] for span in seen["spans"]} and parents <= ids:
                return seen
        time.sleep(0.5)
    names = sorted(span["operationName"] for span in seen["spans"]) if seen else None
    raise AssertionError(f"no complete trace for stanza {stanza_id} within {timeout}s; spans seen: {names}")


def node_of(trace: dict, span: dict) -> str:
    tags = {tag["key"]: tag["value"] for tag in trace["processes"][span["processID"]]["tags"]}
    return tags["service.instance.id"]


def parent_of(span: dict) -> str | None:
    return next((ref["spanID"] for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"), None)


async def test_a_message_across_two_edges_and_two_session_nodes_is_one_trace(traced):
    cluster, query = traced
    alice_acc, bob_acc = cluster.pair()
    alice = await Env(Target("starling", cluster.nodes["edge1"].endpoint, cluster.pool)).online(alice_acc)
    bob = await Env(Target("starling", cluster.nodes["edge2"].endpoint, cluster.pool)).online(bob_acc)
    stanza_id = new_id()
    alice.send(f"<message to='{bob.jid}' type='chat' id='{stanza_id}'><body>traced</body></message>")
    await bob.inbox.wait(is_message(body="traced"))

    wanted = {"starling.edge.receive", "starling.session.handle", "starling.archive.write", "starling.edge.deliver"}
    trace = find_trace(query, stanza_id, wanted)
    spans = {span["spanID"]: span for span in trace["spans"]}
    by_name: dict[str, list[dict]] = {}
    for span in trace["spans"]:
        by_name.setdefault(span["operationName"], []).append(span)
    summary = sorted((span["operationName"], node_of(trace, span)) for span in trace["spans"])
    start = min(span["startTime"] for span in trace["spans"])
    for span in sorted(trace["spans"], key=lambda span: span["startTime"]):
        print(f"{span['operationName']:<24} {node_of(trace, span):<10} +{(span['startTime'] - start) / 1000:7.2f} ms  {span['duration'] / 1000:7.2f} ms")

    received, = by_name["starling.edge.receive"]
    assert node_of(trace, received) == "edge-1" and parent_of(received) is None, summary
    tags = {tag["key"]: tag["value"] for tag in received["tags"]}
    assert (tags.get("xmpp.stanza"), tags.get("xmpp.type")) == ("message", "chat"), tags
    # The sender's owner handled the edge's record; the recipient's owner, if the message went
    # through it, handled a record the first one caused.
    alice_owner = cluster.owner[partition_of(alice_acc.jid)].replace("session", "session-")
    bob_owner = cluster.owner[partition_of(bob_acc.jid)].replace("session", "session-")
    handled = {node_of(trace, span): span for span in by_name["starling.session.handle"]}
    assert alice_owner in handled and parent_of(handled[alice_owner]) == received["spanID"], summary
    if bob_owner in handled:
        assert parent_of(handled[bob_owner]) == handled[alice_owner]["spanID"], summary
    for write in by_name["starling.archive.write"]:
        assert spans[parent_of(write)]["operationName"] == "starling.session.handle", summary
    delivered, = by_name["starling.edge.deliver"]
    assert node_of(trace, delivered) == "edge-2", summary
    assert spans[parent_of(delivered)]["operationName"] == "starling.session.handle", summary
    # Every hop happened after the stanza arrived.
    assert all(span["startTime"] >= received["startTime"] for span in trace["spans"]), summary

    # JSON logs: the session node's line about the traced record names the trace.
    trace_ids = set()
    for line in cluster.nodes[alice_owner.replace("-", "")].log_since(0).splitlines():
        if line.startswith("{") and "handling a traced record" in line:
            trace_ids.add(json.loads(line).get("span", {}).get("trace_id"))
    assert trace["traceID"] in trace_ids, (trace["traceID"], trace_ids)
