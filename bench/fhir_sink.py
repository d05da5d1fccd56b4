"""A stand-in for the remote shared record: a raw asyncio HTTP/1.1 server that accepts every POST.

It reads each request (headers, then ``Content-Length`` bytes), counts the Bundle's entries without
parsing the JSON and answers 200 with a transaction-response holding one ``201 Created`` per entry.
In production the shared record (the DMP's FHIR server) runs on other machines; on a 2-core bench
machine the sandbox shared record takes a third of the CPU, so this sink measures what the mediator
itself delivers when its destination costs (almost) nothing here. Keep-alive connections.

    python bench/fhir_sink.py PORT
"""

from __future__ import annotations

import asyncio
import sys

ENTRY = b'{"response":{"status":"201 Created"}}'


class Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buf[:head_end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            entries = max(1, self.buf.count(b'"request":', head_end, end))
            del self.buf[:end]
            body = b'{"resourceType":"Bundle","type":"transaction-response","entry":[' + b",".join(
                [ENTRY] * entries) + b"]}"
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: "  # type: ignore[attr-defined]
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
