"""Where a worker's CPU goes, step by step, for one ADT^A01 (plain script, prints a table).

The worker pipeline of the shipped configuration (channels, mappings, client and provider registry,
SQLite store) runs in this process on N synthetic ADT^A01, one message at a time, delivering to
``bench/fhir_sink.py`` (a stand-in shared record that costs almost nothing). For each step it prints
the CPU time of this process's event-loop thread (``time.thread_time``), then what the other threads
(the store's writer) used on top. CPU time, unlike throughput, barely moves when the machine is
shared, so this is the figure to compare before and after a change of one step.

    python bench/pipeline_steps.py [--count 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness import free_port, process, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediator.accept.channels import ChannelRouter  # noqa: E402
from mediator.app import load_definitions  # noqa: E402
from mediator.config import load_config  # noqa: E402
from mediator.heap import freeze_long_lived, tune_collector  # noqa: E402
from mediator.hl7v2 import Message, parse  # noqa: E402
from mediator.pipeline.steps import Work  # noqa: E402
from mediator.pipeline.worker import WORKER_COMMIT_BATCH, make_pipeline, open_destinations  # noqa: E402
from mediator.registry.config import open_registries  # noqa: E402
from mediator.store.base import InboundRecord, QueuedMessage, new_id  # noqa: E402
from mediator.store.factory import make_store  # noqa: E402
from mediator.testing import adt_message  # noqa: E402


async def measure(count: int, sink_port: int, data_dir: Path) -> tuple[dict[str, float], float, float]:
    cfg = load_config(ROOT / "config.yaml")
    cfg.data_dir = str(data_dir)
    cfg.sandbox.shr = cfg.sandbox.cnss = False
    for dest in cfg.destinations.values():
        dest.url = f"http://127.0.0.1:{sink_port}/"
    channels, mappings = load_definitions(cfg)
    store = make_store(cfg)
    store.max_batch = min(store.max_batch, WORKER_COMMIT_BATCH)  # as a worker process opens it
    store.synchronous = "NORMAL"
    await store.open(owner=False)  # as a worker opens it: no checkpointer thread (the node's)
    destinations = await open_destinations(cfg)
    router = ChannelRouter(channels)
    pipeline = make_pipeline(cfg, store, router, mappings, destinations)
    if cfg.registry.enabled:
        pipeline.resolver = open_registries(cfg, inline_links=True).resolver
    channel = router.for_hl7v2(_parsed(0), "mllp").channel
    assert channel is not None, "no channel for ADT^A01"

    cpu: dict[str, float] = defaultdict(float)
    for name, step in [*pipeline.steps(), ("record", pipeline.record)]:  # time each step on this instance
        setattr(pipeline, step.__name__, _timed(step, cpu, name))

    async def accepted(first: int, n: int) -> list[QueuedMessage]:
        """Accept messages as the node would (before the timed part: not a worker's work)."""
        out = []
        for i in range(first, first + n):
            body, tx = adt_message(i).encode(), new_id()
            await store.accept(InboundRecord(id=tx, channel=channel.name, protocol="hl7v2", transport="mllp",
                                             client="bench", content_type="application/hl7-v2", body=body,
                                             received_at=time.time(), control_id=str(i), sender="bench"))
            out.append(QueuedMessage(tx, channel.name, "hl7v2", "application/hl7-v2", body, "", time.time(), 0,
                                     claimed=True))
        return out

    for item in await accepted(10_000_000, 200):  # warm up: imports, caches, connections
        await pipeline.process(item)
    items = await accepted(0, count)
    tune_collector()
    freeze_long_lived()
    cpu.clear()
    loop0, proc0 = time.thread_time(), time.process_time()
    for item in items:
        await pipeline.process(item)
    loop_s, proc_s = time.thread_time() - loop0, time.process_time() - proc0
    for d in destinations.values():
        await d.close()
    await store.close()
    return cpu, loop_s, proc_s


def _parsed(i: int) -> Message:
    return parse(adt_message(i).encode())


def _timed(step: Callable[[Work], Awaitable[None]], cpu: dict[str, float], name: str
           ) -> Callable[[Work], Awaitable[None]]:
    """``step`` adding the CPU time of this thread while it runs (awaits included: a step that waits
    for another task, such as the registry's link batcher, is charged what that task does meanwhile)."""
    async def run(work: Work) -> None:
        t = time.thread_time()
        try:
            await step(work)
        finally:
            cpu[name] += time.thread_time() - t
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    a = ap.parse_args()
    port = free_port()
    with process([sys.executable, str(ROOT / "bench" / "fhir_sink.py"), str(port)], port), \
            tempfile.TemporaryDirectory() as tmp:
        cpu, loop_s, proc_s = asyncio.run(measure(a.count, port, Path(tmp)))
    n = a.count
    rows = [("step", "µs CPU / message", "share of the loop thread")]
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        rows.append((name, f"{seconds * 1e6 / n:.0f}", f"{seconds / loop_s:.0%}"))
    steps = sum(cpu.values())
    rows.append(("(loop, outside the steps)", f"{(loop_s - steps) * 1e6 / n:.0f}", f"{(loop_s - steps) / loop_s:.0%}"))
    rows.append(("loop thread, total", f"{loop_s * 1e6 / n:.0f}", "100%"))
    rows.append(("other threads (the store's writer)", f"{(proc_s - loop_s) * 1e6 / n:.0f}", ""))
    print(f"worker pipeline, {n} ADT^A01 one at a time, shipped channels/mappings/registry, sink destination")
    print(table(rows))


if __name__ == "__main__":
    main()
