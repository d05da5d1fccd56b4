"""Durable accept + ACK over 8 MLLP connections vs a raw echo server (the I/O ceiling), side by side.

The mediator runs with its shipped settings (SQLite WAL, synchronous=FULL, group commit) and its
worker switched off, so that only receive → parse → check → durable commit → ACK is measured.
Target (issue #2): >= 25 % of the ceiling.

    python bench/accept.py [--count 8000]
"""

from __future__ import annotations

import argparse
import sys

from harness import cpu_note, cpu_seconds, free_port, mediator_server, process, run_load, server_pid, table

STORE: dict = {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=8000)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()
    port = free_port()
    with process([sys.executable, "bench/echo_mllp.py", str(port)], port):
        run_load(port, connections=a.connections, count=1000)  # warm up
        echo = run_load(port, connections=a.connections, count=a.count)
    with mediator_server(worker={"enabled": False}, **STORE) as (http_port, mllp_port, _data):
        run_load(mllp_port, connections=a.connections, count=1000, start_index=10_000_000)  # warm up
        pid = server_pid(http_port)
        cpu0 = cpu_seconds(pid)
        ours = run_load(mllp_port, connections=a.connections, count=a.count)
        cpu_us = (cpu_seconds(pid) - cpu0) * 1e6 / a.count
    ratio = ours["msg_per_s"] / echo["msg_per_s"]
    print(f"durable accept + ACK, {a.connections} MLLP connections, {a.count} ADT^A01 ({cpu_note()})")
    print(table([
        ("server", "msg/s", "p50 ms", "p99 ms"),
        ("raw echo (ceiling)", f"{echo['msg_per_s']:.0f}", f"{echo['p50_ms']}", f"{echo['p99_ms']}"),
        ("mediator accept", f"{ours['msg_per_s']:.0f}", f"{ours['p50_ms']}", f"{ours['p99_ms']}"),
    ]))
    print(f"mediator / ceiling = {ratio:.1%}  (target >= 25 %); the node's CPU per accepted message: "
          f"{cpu_us:.0f} µs, all threads (they share one interpreter lock: about {1e6 / cpu_us:.0f}/s at most)")


if __name__ == "__main__":
    main()
