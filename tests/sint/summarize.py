#!/usr/bin/env python3
"""Summarizes a Smack Integration Test Framework (4.5.0-beta5) log.

usage: summarize.py LOG JAVA_EXIT_CODE OUT_FILE [GATE_SPECS [GATE_FAILURES_FILE]]

Writes OUT_FILE (the summary line, failed tests with their first error line, the specifications of the
failures, the tests that could not run) and exits 1 when a test of a gating specification failed
(default RFC6120,RFC6121) or when the framework did not finish, else 0. GATE_FAILURES_FILE receives
those failed tests as Class.method, one per line (for an isolated rerun).
"""

import re
import sys


def main() -> int:
    log_path, java_rc, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    gates = [g.strip().upper().replace("-", "") for g in (sys.argv[4] if len(sys.argv) > 4 else "RFC6120,RFC6121").split(",") if g.strip()]
    text = open(log_path, errors="replace").read()
    lines = text.splitlines()

    finished = None
    for ln in lines:
        m = re.search(r"SmackIntegrationTestFramework\[\w+\] finished: (\d+)/(\d+) \[(\d+) failed\]", ln)
        if m:
            finished = tuple(int(x) for x in m.groups())
    if finished is None and re.search(r"All possible Smack Integration Tests completed successfully", text):
        finished = (-1, -1, 0)

    failures = []
    for ln in lines:
        m = re.match(r"SEVERE: (\S+\.\S+) \((\w+)\) failed: (.*)", ln)
        if m:
            failures.append((m.group(1), m.group(3)[:300]))
    specs = []
    in_specs = False
    for ln in lines:
        if "The failed tests correspond to the following specifications" in ln:
            in_specs = True
            continue
        if in_specs:
            m = re.match(r"- (.+?) \(as tested by '(.+)'\)", ln)
            if m:
                specs.append((m.group(1), m.group(2)))
            elif ln.strip() and not ln.startswith("-"):
                in_specs = False
    impossible = [m.group(1) + ": " + m.group(2) for m in re.finditer(r"Could not run (\S+) because: (.*)", text)]
    passed = [m.group(1) for m in re.finditer(r"INFO: (\S+\.\S+) \(\w+\) ✔", text)]

    def gated(spec: str) -> bool:
        s = spec.upper().replace("-", "").replace(" ", "")
        return any(s.startswith(g) for g in gates)

    gate_failures = sorted({t for s, t in specs if gated(s)})
    # A failed test without a specification annotation whose class is clearly about the core protocols.
    unannotated = {t for t, _ in failures} - {t.split(" (")[0] for _, t in specs}
    core_words = ("Roster", "Login", "Presence", "XmppConnection", "StreamManagement", "WaitForClosingStream")
    gate_failures += sorted(t for t in unannotated if any(w in t for w in core_words))
    if len(sys.argv) > 5:
        with open(sys.argv[5], "w") as f:
            f.write("".join(t.split(" (")[0] + "\n" for t in gate_failures))

    out = []
    if finished:
        ok, avail, nfail = finished
        out.append(f"SINT summary: {ok}/{avail} passed, {nfail} failed, {len(impossible)} test classes could not run "
                   f"(feature not advertised), java exit {java_rc}")
    else:
        out.append(f"SINT did not finish (java exit {java_rc}); see the log")
    out.append(f"Gating specifications: {', '.join(gates)} -> "
               + ("FAILED: " + ", ".join(gate_failures) if gate_failures else "no failures"))
    out.append("")
    out.append(f"Failed tests ({len(failures)}):")
    out += [f"  {t}: {why}" for t, why in failures] or ["  (none)"]
    out.append("")
    out.append("Specifications of the failed tests:")
    out += [f"  {s}  <- {t}" for s, t in specs] or ["  (none annotated)"]
    out.append("")
    out.append(f"Could not run ({len(impossible)}):")
    out += [f"  {x}" for x in impossible] or ["  (none)"]
    out.append("")
    out.append(f"Passed ({len(passed)}):")
    out += [f"  {t}" for t in passed]
    with open(out_path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out[:2]))
    if failures:
        print("failed: " + ", ".join(t for t, _ in failures))
    if finished is None or java_rc not in (0, 2):
        return 1
    return 1 if gate_failures else 0


if __name__ == "__main__":
    sys.exit(main())
