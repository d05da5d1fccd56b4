"""Per-patient ordering, parallelism across patients."""

from __future__ import annotations

import asyncio
import time

from mediator.pipeline.dispatcher import Dispatcher
from mediator.store.base import QueuedMessage


def item(i: int, key: str) -> QueuedMessage:
    return QueuedMessage(f"id{i}", "c", "hl7v2", "x", b"", key, time.time(), 0)


async def test_same_key_in_order_different_keys_in_parallel() -> None:
    log: list[tuple[str, str, str]] = []
    running: set[str] = set()
    overlap = []

    async def process(msg: QueuedMessage, parsed: object) -> None:
        assert msg.ordering_key not in running, "two messages of one patient ran at once"
        running.add(msg.ordering_key)
        overlap.append(len(running))
        log.append(("start", msg.ordering_key, msg.id))
        await asyncio.sleep(0.01 if msg.id.endswith("0") else 0.001)
        running.discard(msg.ordering_key)

    d = Dispatcher(process, concurrency=8)
    d.start()
    for i in range(40):
        d.submit(item(i, f"patient{i % 4}"))
    assert await d.drain(10)
    await d.stop()
    for k in range(4):
        order = [int(mid[2:]) for ev, key, mid in log if key == f"patient{k}"]
        assert order == sorted(order), f"patient{k} out of order"
    assert max(overlap) > 1  # patients did run side by side


async def test_empty_key_has_no_ordering_and_failures_do_not_stop_workers() -> None:
    seen = []

    async def process(msg: QueuedMessage, parsed: object) -> None:
        seen.append(msg.id)
        if msg.id == "id3":
            raise RuntimeError("boom")

    d = Dispatcher(process, concurrency=2)
    d.start()
    for i in range(10):
        d.submit(item(i, ""))
    d.submit(item(1, ""))  # already queued: ignored
    assert await d.drain(5)
    await d.stop()
    assert sorted(seen) == sorted(f"id{i}" for i in range(10))
