#!/usr/bin/env python3
"""Writes a --user-list of chat pairs for a cluster started by cluster-local.sh: each pair's two
users owned by the same session node ("same") or by different ones ("cross"), read from the
session nodes' logged partition assignments and Starling's partition function.

    loadtest/scripts/owner-pairs.py same|cross PAIRS [ACCOUNTS=2000] [PARTITIONS=16] > pairs.txt
"""
import glob
import os
import re
import sys

WORK = os.environ.get("WORK", "/tmp/starling-cluster")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def partition_of(bare: str, partitions: int) -> int:
    """FNV-1a 64 of the bare JID's bytes, modulo (crates/cluster/src/bus.rs)."""
    h = 0xcbf29ce484222325
    for byte in bare.encode():
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % partitions


def owners() -> dict[int, str]:
    owner = {}
    for log in sorted(glob.glob(f"{WORK}/session*/server.log")):
        node = os.path.basename(os.path.dirname(log))
        held: set[int] = set()
        for line in ANSI.sub("", open(log, errors="replace").read()).splitlines():
            m = re.search(r"owner partitions (assigned|revoked)\b.*?partitions=\[([0-9, ]*)\]", line)
            if m:
                parts = {int(p) for p in m.group(2).split(",") if p.strip()}
                held = held | parts if m.group(1) == "assigned" else held - parts
        owner.update({p: node for p in held})
    return owner


def main() -> None:
    mode, pairs = sys.argv[1], int(sys.argv[2])
    accounts = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    partitions = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    owner = owners()
    by_node: dict[str, list[str]] = {}
    for n in range(1, accounts + 1):
        node = owner.get(partition_of(f"user{n}@localhost", partitions))
        if node:
            by_node.setdefault(node, []).append(f"user{n}")
    nodes = sorted(by_node)
    if mode == "cross" and len(nodes) < 2:
        sys.exit("cross pairs need two session nodes holding partitions")
    out = []
    for k in range(pairs):
        if mode == "same":
            pool = by_node[nodes[k % len(nodes)]]
            a, b = pool.pop(), pool.pop()
        else:
            a, b = by_node[nodes[k % 2]].pop(), by_node[nodes[(k + 1) % 2]].pop()
        out += [a, b]
    print(f"# {pairs} pairs, {mode} owner")
    print("\n".join(out))


if __name__ == "__main__":
    main()
