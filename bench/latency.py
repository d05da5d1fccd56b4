"""ACK latency at a fixed offered rate (open loop: no coordinated omission), full pipeline running.

Target (issue #2): p99 <= 20 ms at 300 msg/s offered.

    python bench/latency.py [--rate 300] [--seconds 20]
"""

from __future__ import annotations

import argparse

from harness import cpu_note, mediator_server, run_load, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=4)
    a = ap.parse_args()
    count = int(a.rate * a.seconds)
    with mediator_server() as (_http, mllp_port, _data):
        run_load(mllp_port, connections=a.connections, count=400, start_index=60_000_000)
        r = run_load(mllp_port, connections=a.connections, count=count, rate=a.rate)
    print(f"ACK latency, {a.rate:.0f} msg/s offered for {a.seconds:.0f} s over {a.connections} MLLP connections, "
          f"worker and shared record running ({cpu_note()})")
    print(table([("achieved msg/s", "p50 ms", "p90 ms", "p99 ms", "max ms"),
                 (f"{r['msg_per_s']:.0f}", f"{r['p50_ms']}", f"{r['p90_ms']}", f"{r['p99_ms']}", f"{r['max_ms']}")]))
    print(f"p99 = {r['p99_ms']} ms  (target <= 20 ms)")


if __name__ == "__main__":
    main()
