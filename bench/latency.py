"""ACK latency at a fixed offered rate (open loop: no coordinated omission), full pipeline running.

Target (issue #2): p99 <= 20 ms at 300 msg/s offered. Three set-ups, side by side:

- the shared record in its own process with its database in memory (/dev/shm), standing for the
  remote shared record of production: its writes do not share our disk;
- the shipped default: the sandbox shared record in a process of its own, started by the node, its
  SQLite file on the same disk as the store;
- the sandbox shared record inside the node (``sandbox.shr_process: false``): its HTTP handling and
  SQLite work share the node's event loop and interpreter lock with the listeners.

    python bench/latency.py [--rate 300] [--seconds 20] [--only remote|shipped|inside]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.request
from contextlib import ExitStack

from harness import cpu_note, free_port, mediator_server, process, run_load, table

SETUPS = {"remote": "shared record in its own process, database in memory (like a remote server)",
          "shipped": "sandbox shared record in its own process, same disk (the shipped default)",
          "inside": "sandbox shared record inside the node's process, same disk"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--only", choices=sorted(SETUPS))
    a = ap.parse_args()
    count = int(a.rate * a.seconds)
    rows = [("set-up", "achieved msg/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "server: ACKs within 20 ms")]
    for name in ([a.only] if a.only else list(SETUPS)):
        with ExitStack() as stack:
            sections: dict = {}
            if name == "remote":
                shr_port, d = free_port(), stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm"))
                stack.enter_context(process([sys.executable, "-m", "mediator.sandbox.shr", "--port", str(shr_port),
                                             "--db", f"{d}/shr.db"], shr_port))
                sections = {"sandbox": {"shr": False, "cnss": True},
                            "destinations": {"shr": {"url": f"http://127.0.0.1:{shr_port}/"}}}
            elif name == "inside":
                sections = {"sandbox": {"shr": True, "cnss": True, "shr_process": False}}
            r = measure(a, count, sections)
        within = dict(r["server"]).get(0.02, 0.0)
        rows.append((SETUPS[name], f"{r['msg_per_s']:.0f}", f"{r['p50_ms']}", f"{r['p90_ms']}", f"{r['p99_ms']}",
                     f"{r['max_ms']}", f"{within:.2%}"))
    print(f"ACK latency, {a.rate:.0f} msg/s offered for {a.seconds:.0f} s over {a.connections} MLLP connections, "
          f"worker running ({cpu_note()})")
    print(table(rows))
    print("target: p99 <= 20 ms; server = mediator_ack_latency_seconds (last byte in -> ACK written)")


def measure(a: argparse.Namespace, count: int, sections: dict) -> dict:
    with mediator_server(**sections) as (http_port, mllp_port, _data):
        run_load(mllp_port, connections=a.connections, count=400, start_index=60_000_000)
        before = ack_buckets(http_port)
        r = run_load(mllp_port, connections=a.connections, count=count, rate=a.rate)
        after = ack_buckets(http_port)
    total = after[float("inf")] - before[float("inf")]
    r["server"] = [(b, (after[b] - before[b]) / total) for b in (0.005, 0.01, 0.02, 0.05) if total]
    return r


def ack_buckets(http_port: int) -> dict[float, float]:
    """Cumulative counts of the node's MLLP ACK latency histogram, by upper bound (seconds)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith('mediator_ack_latency_seconds_bucket{') and 'transport="mllp"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


if __name__ == "__main__":
    main()
