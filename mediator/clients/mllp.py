"""A small asyncio MLLP client: send framed HL7 v2 messages, read the framed answers."""

from __future__ import annotations

import asyncio
import contextlib

START, END = b"\x0b", b"\x1c\x0d"


def frame(message: bytes | str) -> bytes:
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START + data + END


class MllpClient:
    """One persistent MLLP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> MllpClient:
        reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024 * 1024)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_answer(self, timeout: float = 30.0) -> bytes:
        """The next framed answer's content (without framing)."""
        await asyncio.wait_for(self.reader.readuntil(START), timeout)
        data = await asyncio.wait_for(self.reader.readuntil(END), timeout)
        return data[:-2]

    async def send(self, message: bytes | str, timeout: float = 30.0) -> str:
        """Send one message and return the answer as text."""
        await self.send_raw(frame(message))
        return (await self.read_answer(timeout)).decode("utf-8")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def ack_code(ack: str) -> str:
    """MSA-1 of an ACK text ('' when absent)."""
    for seg in ack.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA"):
            parts = seg.split(seg[3] if len(seg) > 3 else "|")
            return parts[1] if len(parts) > 1 else ""
    return ""
