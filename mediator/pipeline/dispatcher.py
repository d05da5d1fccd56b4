"""Per-patient ordered, cross-patient parallel dispatch of accepted messages.

Messages with the same ordering key (sending facility + patient identifier) run one after the
other in arrival order (an A01 before the A08 that follows it); different keys run in parallel, up
to ``concurrency`` at once. Messages with an empty key have no ordering constraint.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from mediator.store.base import QueuedMessage

log = structlog.get_logger(__name__)

Process = Callable[[QueuedMessage, Any], Awaitable[None]]


class Dispatcher:
    def __init__(self, process: Process, concurrency: int, *, enabled: bool = True) -> None:
        self.process = process
        self.enabled = enabled  # off: an accept-only node; messages wait in the store
        self.concurrency = concurrency
        self._ready: asyncio.Queue[tuple[QueuedMessage, Any]] = asyncio.Queue()
        self._waiting: dict[str, deque[tuple[QueuedMessage, Any]]] = {}  # key -> messages behind the running one
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._ids: set[str] = set()
        self.processed = 0

    @property
    def backlog(self) -> int:
        return self._ready.qsize() + sum(len(d) for d in self._waiting.values()) + self._in_flight

    def submit(self, item: QueuedMessage, parsed: Any = None) -> None:
        """Queue ``item`` (already durable); ``parsed`` is the parsed message when the door has it."""
        if not self.enabled or item.id in self._ids:
            return
        self._ids.add(item.id)
        key = item.ordering_key
        if key:
            if key in self._waiting:
                self._waiting[key].append((item, parsed))
                return
            self._waiting[key] = deque()
        self._ready.put_nowait((item, parsed))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"worker-{i}") for i in range(self.concurrency)]

    async def _work(self) -> None:
        while True:
            item, parsed = await self._ready.get()
            self._in_flight += 1
            try:
                await self.process(item, parsed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # process() records its own failures; this is a last resort
                log.error("dispatcher.unhandled", tx_id=item.id, error=type(exc).__name__)
            finally:
                self._in_flight -= 1
                self._ids.discard(item.id)
                self.processed += 1
                self._release(item.ordering_key)

    def _release(self, key: str) -> None:
        if not key:
            return
        waiting = self._waiting.get(key)
        if waiting:
            self._ready.put_nowait(waiting.popleft())
        else:
            self._waiting.pop(key, None)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (or ``timeout``); True when drained."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.backlog and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return not self.backlog

    async def stop(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
