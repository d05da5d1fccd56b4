"""Destinations: one HTTP request per delivery attempt, nothing else (retries live in delivery.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from mediator.config import DestinationConfig

BODY_KEPT = 256 * 1024  # request/response bodies kept in the transaction log, per attempt


@dataclass(slots=True)
class Response:
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    body: str
    error: str
    duration_ms: float
    url: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth trying again: no answer, timeout, throttled or a server-side error."""
        return self.status is None or self.status in (408, 425, 429) or self.status >= 500


@dataclass(slots=True)
class Request:
    method: str
    url: str
    body: bytes
    content_type: str = "application/fhir+json"


class Destination:
    """An HTTP destination: a FHIR server (transaction Bundles) or the CNSS claims endpoint."""

    def __init__(self, name: str, cfg: DestinationConfig, base_url: str) -> None:
        """``base_url``: ``cfg.url`` resolved (see :meth:`mediator.config.AppConfig.destination_url`)."""
        self.name = name
        self.cfg = cfg
        self.base_url = base_url  # used exactly as configured
        self.timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode())

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def requests_for(self, bundle: dict[str, Any]) -> list[Request]:
        """What to send for one mapped Bundle; [] when nothing applies to this destination."""
        if self.cfg.type == "cnss":
            claims = [e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType")
                      == "Claim"]
            return [Request("POST", self.base_url, orjson.dumps(c)) for c in claims]
        return [Request("POST", self.base_url, orjson.dumps(bundle))]

    async def send(self, req: Request) -> Response:
        assert self.session is not None, "destination not opened"
        headers = {"Content-Type": req.content_type, "Accept": "application/fhir+json", **self.cfg.headers}
        started = time.perf_counter()
        try:
            async with self.session.request(req.method, req.url, data=req.body, headers=headers,
                                            timeout=self.timeout) as resp:
                raw = await resp.read()
                text = raw[:BODY_KEPT].decode("utf-8", "replace")
                return Response(resp.status, text, "", (time.perf_counter() - started) * 1000, req.url)
        except TimeoutError:
            return Response(None, "", f"timeout after {self.cfg.timeout_s}s", (time.perf_counter() - started) * 1000,
                            req.url)
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            return Response(None, "", f"{type(exc).__name__}: {exc}"[:500], (time.perf_counter() - started) * 1000,
                            req.url)
