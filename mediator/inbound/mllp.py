"""MLLP listener (asyncio): framed HL7 v2 in, ACK out, persistent connections.

Frame = 0x0B, message, 0x1C 0x0D. Several frames may arrive in one read and one frame across many
reads. The listener bounds the frame size, the idle time of a connection, the time a started frame
may take to complete (slow clients) and the number of connections. Bytes between frames are skipped
and reported. Answers go back on the same connection in the order the messages arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import structlog

from mediator.accept.hl7v2 import Answer, Hl7v2Door
from mediator.config import MllpConfig
from mediator.hl7v2 import HL7Error
from mediator.metrics import Metrics

log = structlog.get_logger(__name__)

START = 0x0B
END = b"\x1c\x0d"
HEAD_KEPT = 64 * 1024  # of an oversize frame, this much is kept for the log and the NAK
MAX_PIPELINED = 256  # frames waiting on one connection before reading pauses


@dataclass(slots=True)
class _Frame:
    data: bytes
    oversize: int = 0  # total size when over the limit (data is then the head)
    truncated: bool = False
    at: float = field(default_factory=time.perf_counter)  # when its last byte arrived (for ACK latency)


class MllpProtocol(asyncio.Protocol):
    """One MLLP connection."""

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.cfg = server.cfg
        self.buf = bytearray()
        self.in_frame = False
        self.frame_started = 0.0
        self.discarding = 0  # bytes of an oversize frame seen so far (0 = not discarding)
        self.scanned = 0  # bytes of the current frame already searched for its end
        self.head = b""
        self.last_activity = time.monotonic()
        self.frames: deque[_Frame] = deque()
        self.wakeup = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.worker: asyncio.Task[None] | None = None
        self.paused = False
        self.closed = False
        self.garbage = 0

    # -- asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(self.server.connections) >= self.cfg.max_connections:
            log.warning("mllp.too_many_connections", limit=self.cfg.max_connections)
            self.server.refused += 1
            transport.abort()
            self.closed = True
            return
        self.server.connections.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._answer_loop())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.in_frame and (self.buf or self.discarding):
            # The client went away in the middle of a frame: keep what came for the operator.
            self.frames.append(_Frame(bytes(self.buf[:HEAD_KEPT]) or self.head, truncated=True))
            self.buf.clear()
        self.wakeup.set()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.buf += data
        self._split()
        if len(self.frames) >= MAX_PIPELINED and not self.paused and self.transport:
            self.paused = True
            self.transport.pause_reading()

    # -- framing ----------------------------------------------------------------------------------
    def _split(self) -> None:
        buf = self.buf
        limit = self.cfg.max_frame_bytes
        while buf:
            if self.discarding:
                end = buf.find(END)
                if end < 0:
                    self.discarding += len(buf) - 1
                    del buf[:-1]  # keep a possible 0x1C for the next read
                    return
                self.discarding += end
                self.frames.append(_Frame(self.head, oversize=self.discarding))
                self.discarding, self.head, self.in_frame = 0, b"", False
                del buf[: end + 2]
                self.wakeup.set()
                continue
            if not self.in_frame:
                start = buf.find(START)
                if start < 0:
                    self._skip_garbage(len(buf))
                    buf.clear()
                    return
                if start:
                    self._skip_garbage(start)
                del buf[: start + 1]
                self.in_frame = True
                self.scanned = 0
                self.frame_started = time.monotonic()
                continue
            scanned = self.scanned
            end = buf.find(END, max(0, scanned - 1))
            restart = buf.find(START, scanned, end if end >= 0 else len(buf))
            if restart >= 0:
                # A new frame began before this one ended: the first one is truncated.
                self.frames.append(_Frame(bytes(buf[:restart]), truncated=True))
                del buf[:restart]
                self.in_frame = False
                self.wakeup.set()
                continue
            if end < 0:
                self.scanned = len(buf)
                if len(buf) > limit:
                    self.head = bytes(buf[:HEAD_KEPT])
                    self.discarding = len(buf) - 1
                    del buf[:-1]
                return
            if end > limit:
                self.frames.append(_Frame(bytes(buf[:HEAD_KEPT]), oversize=end))
            else:
                self.frames.append(_Frame(bytes(buf[:end])))
            del buf[: end + 2]
            self.in_frame = False
            self.wakeup.set()

    def _skip_garbage(self, n: int) -> None:
        chunk = self.buf[:n]
        if chunk.strip():
            self.garbage += len(chunk)
            self.server.garbage_bytes += len(chunk)
            log.warning("mllp.garbage_skipped", bytes=len(chunk), peer=self.peer)

    # -- answering --------------------------------------------------------------------------------
    async def _answer_loop(self) -> None:
        door = self.server.door
        try:
            while True:
                if not self.frames:
                    if self.closed:
                        return
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                batch = list(self.frames)
                self.frames.clear()
                if self.paused and self.transport and not self.closed:
                    self.paused = False
                    self.transport.resume_reading()
                if len(batch) == 1:  # the common case (a sender waiting for each ACK): no task needed
                    answers = [await self._handle(door, batch[0])]
                else:  # pipelined frames: accept them together so they share one commit
                    answers = await asyncio.gather(*(self._handle(door, f) for f in batch))
                if self.closed or self.transport is None:
                    continue
                out = bytearray()
                for a in answers:
                    if a.ack is not None:
                        out += b"\x0b" + a.ack.encode("utf-8") + END
                if out:
                    self.transport.write(bytes(out))
                    if self.server.metrics is not None:
                        now = time.perf_counter()
                        for f, a in zip(batch, answers, strict=True):
                            if a.ack is not None:
                                self.server.metrics.ack_latency.labels("mllp").observe(now - f.at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one connection take the listener down
            log.error("mllp.connection_error", error=type(exc).__name__, peer=self.peer)
            if self.transport:
                self.transport.abort()

    async def _handle(self, door: Hl7v2Door, frame: _Frame) -> Answer:
        self.server.frames += 1
        if frame.oversize:
            answer = await door.receive_oversize(frame.data, frame.oversize, self.cfg.max_frame_bytes,
                                                 transport="mllp", client=self.peer)
        elif frame.truncated:
            answer = await door.refuse_bytes(frame.data, HL7Error(100, "", "truncated MLLP frame: no 0x1C 0x0D end"),
                                             transport="mllp", client=self.peer)
        else:
            answer = await door.receive(frame.data, transport="mllp", client=self.peer)
        if self.server.metrics is not None:
            self.server.metrics.answered("hl7v2", "mllp", answer.code if answer.ack is not None else "",
                                         answer.duplicate)
        return answer

    def check_timeouts(self, now: float) -> None:
        if self.closed or self.transport is None:
            return
        if self.in_frame and now - self.frame_started > self.cfg.frame_timeout_s:
            log.warning("mllp.frame_timeout", peer=self.peer)
            self.frames.append(_Frame(bytes(self.buf[:HEAD_KEPT]) or self.head, truncated=True))
            self.buf.clear()
            self.in_frame, self.discarding = False, 0
            self.wakeup.set()
            # Answer the truncated frame, then close: the slow client loses its slot.
            asyncio.get_running_loop().call_later(1.0, self._close)
        elif not self.frames and now - self.last_activity > self.cfg.idle_timeout_s:
            log.info("mllp.idle_close", peer=self.peer)
            self._close()

    def _close(self) -> None:
        if self.transport and not self.closed:
            self.transport.close()


class MllpServer:
    """The MLLP listener; ``start`` binds, ``close`` stops accepting and closes connections."""

    def __init__(self, door: Hl7v2Door, cfg: MllpConfig, metrics: Metrics | None = None) -> None:
        self.door = door
        self.cfg = cfg
        self.metrics = metrics
        self.connections: set[MllpProtocol] = set()
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.frames = 0
        self.garbage_bytes = 0
        self.refused = 0

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: MllpProtocol(self), host, port, reuse_address=True,
                                               backlog=1024)
        self._sweeper = loop.create_task(self._sweep())
        bound = self.server.sockets[0].getsockname()[1]
        log.info("mllp.listening", host=host, port=bound)
        return int(bound)

    async def _sweep(self) -> None:
        interval = max(0.05, min(1.0, self.cfg.frame_timeout_s / 4, self.cfg.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timeouts(now)

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        if self.server:
            self.server.close()
        for conn in list(self.connections):
            conn._close()
            if conn.worker:
                conn.worker.cancel()
        if self.server:
            await self.server.wait_closed()
