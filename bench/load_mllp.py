"""MLLP load generator (runs in its own process): N connections, closed loop or a fixed offered rate.

Prints one JSON object: sent, acked, seconds, msg_per_s, latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mediator.testing import adt_message  # noqa: E402

START, END = b"\x0b", b"\x1c\x0d"


async def closed_loop(port: int, msgs: list[bytes], latencies: list[float], codes: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for m in msgs:
        t = time.perf_counter()
        writer.write(m)
        await reader.readuntil(END)
        latencies.append((time.perf_counter() - t) * 1000)
    writer.close()


async def open_loop(port: int, msgs: list[bytes], interval: float, latencies: list[float]) -> None:
    """Send on a fixed schedule whatever the answers do (no coordinated omission: sends never wait)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent_at: list[float] = []

    async def read_all() -> None:
        for i in range(len(msgs)):
            await reader.readuntil(END)
            latencies.append((time.perf_counter() - sent_at[i]) * 1000)

    rd = asyncio.create_task(read_all())
    start = time.perf_counter()
    for i, m in enumerate(msgs):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # Writes never wait for the server (open loop), so lateness here is only this client's timer:
        # latency is counted from the actual send.
        sent_at.append(time.perf_counter())
        writer.write(m)
    await rd
    writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=0.0, help="offered msg/s in total; 0 = closed loop")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--event", default="A01")
    a = ap.parse_args()
    per = a.count // a.connections
    batches = [[START + adt_message(a.start + c * per + i, a.event).encode() + END for i in range(per)]
               for c in range(a.connections)]
    latencies: list[float] = []
    t0 = time.perf_counter()
    if a.rate > 0:
        interval = a.connections / a.rate
        await asyncio.gather(*(open_loop(a.port, b, interval, latencies) for b in batches))
    else:
        await asyncio.gather(*(closed_loop(a.port, b, latencies, {}) for b in batches))
    secs = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * (len(latencies) - 1)))], 3)

    print(json.dumps({"sent": per * a.connections, "seconds": round(secs, 3),
                      "msg_per_s": round(per * a.connections / secs, 1), "p50_ms": pct(50), "p90_ms": pct(90),
                      "p99_ms": pct(99), "max_ms": round(latencies[-1], 3)}))


if __name__ == "__main__":
    asyncio.run(main())
