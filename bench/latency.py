"""ACK latency at a fixed offered rate (open loop: no coordinated omission), full pipeline running.

Target (issue #2): p99 <= 20 ms at 300 msg/s offered.

    python bench/latency.py [--rate 300] [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack

from harness import cpu_note, free_port, mediator_server, process, run_load, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--external-shr", action="store_true", help="run the sandbox shared record in its own process")
    a = ap.parse_args()
    count = int(a.rate * a.seconds)
    sections: dict = {}
    with ExitStack() as stack:
        if a.external_shr:
            shr_port, d = free_port(), stack.enter_context(tempfile.TemporaryDirectory())
            stack.enter_context(process([sys.executable, "-m", "mediator.sandbox.shr", "--port", str(shr_port),
                                         "--db", f"{d}/shr.db"], shr_port))
            sections = {"sandbox": {"shr": False, "cnss": True},
                        "destinations": {"shr": {"url": f"http://127.0.0.1:{shr_port}/"}}}
        r = measure(a, count, sections)
    where = "in its own process" if a.external_shr else "in the node's process"
    print(f"ACK latency, {a.rate:.0f} msg/s offered for {a.seconds:.0f} s over {a.connections} MLLP connections, "
          f"worker running, shared record {where} ({cpu_note()})")
    print(table([("achieved msg/s", "p50 ms", "p90 ms", "p99 ms", "max ms"),
                 (f"{r['msg_per_s']:.0f}", f"{r['p50_ms']}", f"{r['p90_ms']}", f"{r['p99_ms']}", f"{r['max_ms']}")]))
    print(f"p99 = {r['p99_ms']} ms  (target <= 20 ms)")


def measure(a: argparse.Namespace, count: int, sections: dict) -> dict:
    with mediator_server(**sections) as (_http, mllp_port, _data):
        run_load(mllp_port, connections=a.connections, count=400, start_index=60_000_000)
        return run_load(mllp_port, connections=a.connections, count=count, rate=a.rate)


if __name__ == "__main__":
    main()
