"""MLLP framing over real sockets, with a recording door in place of the engine."""

from __future__ import annotations

import asyncio

import pytest

from mediator.accept.hl7v2 import Answer
from mediator.clients.mllp import END, START, MllpClient, frame
from mediator.config import MllpConfig
from mediator.hl7v2 import HL7Error
from mediator.inbound.mllp import MllpServer


class RecordingDoor:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.oversize: list[tuple[bytes, int]] = []
        self.refused: list[tuple[bytes, HL7Error]] = []

    async def receive(self, data: bytes, *, transport: str, client: str, **_: object) -> Answer:
        self.received.append(data)
        if data.startswith(b"ACK"):
            return Answer(None, "", None)  # never answer an ACK
        return Answer(f"OK {len(data)}", "AA", "t")

    async def receive_oversize(self, head: bytes, size: int, limit: int, *, transport: str, client: str) -> Answer:
        self.oversize.append((head, size))
        return Answer(f"TOO BIG {size}", "AR", "t")

    async def refuse_bytes(self, data: bytes, error: HL7Error, *, transport: str, client: str) -> Answer:
        self.refused.append((data, error))
        return Answer(f"TRUNCATED {len(data)}", "AE", "t")


@pytest.fixture
async def server():
    door = RecordingDoor()
    cfg = MllpConfig(max_frame_bytes=1000, idle_timeout_s=0.5, frame_timeout_s=0.3, max_connections=3)
    srv = MllpServer(door, cfg)  # type: ignore[arg-type]
    port = await srv.start("127.0.0.1", 0)
    yield door, srv, port
    await srv.close()


async def test_several_frames_in_one_write_and_one_frame_in_many(server) -> None:
    door, _, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(frame(b"A" * 10) + frame(b"B" * 20) + frame(b"C" * 30))
    answers = [await c.read_answer() for _ in range(3)]
    assert answers == [b"OK 10", b"OK 20", b"OK 30"]  # in order, same connection
    data = frame(b"D" * 100)
    for i in range(len(data)):
        await c.send_raw(data[i:i + 1])
    assert await c.read_answer() == b"OK 100"
    await c.close()
    assert door.received[-1] == b"D" * 100


async def test_end_marker_split_across_reads(server) -> None:
    door, _, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(START + b"MSG\x1c")
    await asyncio.sleep(0.05)
    await c.send_raw(b"\x0d")
    assert await c.read_answer() == b"OK 3"
    await c.close()


async def test_garbage_between_frames_is_skipped_and_counted(server) -> None:
    door, srv, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(b"junk\xff\xfe" + frame(b"ONE") + b"\r\n more junk" + frame(b"TWO"))
    assert [await c.read_answer() for _ in range(2)] == [b"OK 3", b"OK 3"]
    assert srv.garbage_bytes >= 6 + 9
    await c.close()


async def test_oversize_frame_is_refused_and_connection_keeps_working(server) -> None:
    door, _, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    big = b"MSH|" + b"x" * 5000
    for i in range(0, len(big), 700):
        await c.send_raw((START if i == 0 else b"") + big[i:i + 700])
    await c.send_raw(END + frame(b"small"))
    assert (await c.read_answer()).startswith(b"TOO BIG")
    assert await c.read_answer() == b"OK 5"
    head, size = door.oversize[0]
    assert head.startswith(b"MSH|") and size >= 5000
    await c.close()


async def test_new_start_inside_frame_means_truncated(server) -> None:
    door, _, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(START + b"MSH|partial" + frame(b"WHOLE"))
    assert await c.read_answer() == b"TRUNCATED 11"
    assert await c.read_answer() == b"OK 5"
    await c.close()


async def test_never_ack_an_ack(server) -> None:
    door, _, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(frame(b"ACK-LIKE") + frame(b"NEXT"))
    assert await c.read_answer() == b"OK 4"  # the first produced no answer
    await c.close()


async def test_slow_client_frame_timeout_gets_nak_then_close(server) -> None:
    door, srv, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(START + b"MSH|never finished")
    assert (await c.read_answer(timeout=5)).startswith(b"TRUNCATED")
    assert await asyncio.wait_for(c.reader.read(), 5) == b""  # server closed
    await c.close()
    assert door.refused[0][1].code == 100


async def test_idle_connection_closed_and_connection_cap(server) -> None:
    door, srv, port = server
    clients = [await MllpClient.connect("127.0.0.1", port) for _ in range(3)]
    await asyncio.sleep(0.05)
    extra = await MllpClient.connect("127.0.0.1", port)
    assert await asyncio.wait_for(extra.reader.read(), 5) == b""  # over the cap: closed at once
    assert srv.refused == 1
    for c in clients:  # idle ones are closed by the server
        assert await asyncio.wait_for(c.reader.read(), 5) == b""
    await asyncio.sleep(0.05)
    assert not srv.connections
    c = await MllpClient.connect("127.0.0.1", port)  # slots are free again
    assert (await c.send("MSH|ok")) == "OK 6"
    await c.close()


async def test_client_vanishing_mid_frame_keeps_the_part(server) -> None:
    door, _, port = server
    c = await MllpClient.connect("127.0.0.1", port)
    await c.send_raw(START + b"MSH|half a message")
    await c.close()
    for _ in range(100):
        if door.refused:
            break
        await asyncio.sleep(0.01)
    assert door.refused and door.refused[0][0] == b"MSH|half a message"
