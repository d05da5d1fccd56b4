"""The I/O ceiling: a raw asyncio MLLP server that parses nothing and answers every frame at once."""

from __future__ import annotations

import asyncio
import sys

ACK = b"\x0bMSH|^~\\&|ECHO|ECHO|||20240101000000||ACK^A01^ACK|1|P|2.5\rMSA|AA|1\r\x1c\x0d"


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\x1c\x0d")
        if n:
            del self.buf[: self.buf.rfind(b"\x1c\x0d") + 2]
            self.transport.write(ACK * n)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
