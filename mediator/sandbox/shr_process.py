"""The sandbox shared record in a process of its own, started, watched and stopped by the node.

In production the shared record (the DMP's FHIR server) runs on other machines; the sandbox stands
for it. Run inside the node, its work (HTTP handling, JSON, SQLite writes) would share the node's
event loop and interpreter lock with the listeners that acknowledge messages, and show in their
latency. So by default (``sandbox.shr_process``) the node runs it as a child process on a loopback
port:

* routes whose URL starts with ``{self}/shr/fhir`` reach that process directly (like any external
  server, over real HTTP; see :meth:`mediator.config.AppConfig.destination_url`);
* ``/shr/fhir`` on the node's HTTP port stays the public address: a small proxy forwards to the
  child and tells it the public base (``X-Forwarded-Base``) for ``Location`` and ``fullUrl``;
* a child that dies is restarted on the same port (the routes' retries cover the gap); it ends with
  the node, also when the node is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from mediator.fhir.outcome import outcome_response
from mediator.sandbox.shr import FORWARDED_BASE

__all__ = ["SandboxStartError", "ShrProcess", "create_shr_proxy_app"]

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0
# request and response headers the proxy passes on (hop-by-hop and length headers are aiohttp's own)
_REQUEST_HEADERS = ("Content-Type", "Accept", "If-Match", "If-None-Exist", "If-None-Match", "Prefer")
_RESPONSE_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Location", "Content-Location")


class SandboxStartError(RuntimeError):
    """The sandbox shared record's process could not start (the node does not start either)."""


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ShrProcess:
    """Runs ``python -m mediator.sandbox.shr`` for one node (database ``db``, loopback ``port``)."""

    def __init__(self, db: Path, *, port: int = 0, log_level: str = "info", nice: int = 0) -> None:
        self.db = db
        self.port = port or _free_loopback_port()
        self.log_level = log_level
        self.nice = nice  # like the workers: the node, which acknowledges, gets the CPU first
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        """The child's FHIR base URL (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the child and wait until it listens (:class:`SandboxStartError` if it cannot start)."""
        await self._spawn()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mediator.sandbox.shr", "--host", "127.0.0.1", "--port", str(self.port),
            "--db", str(self.db), "--trust-forwarded", "--parent", str(os.getpid()), "--log-level", self.log_level,
            "--nice", str(self.nice))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await self._listening():
            if self.proc.returncode is not None:
                raise SandboxStartError(f"the sandbox shared record ended at start (exit code "
                                        f"{self.proc.returncode}, port {self.port}); see the log above")
            if time.monotonic() > deadline:
                self.proc.kill()
                await self.proc.wait()
                raise SandboxStartError(f"the sandbox shared record did not listen on port {self.port} in time")
            await asyncio.sleep(0.05)
        log.info("shr.process_started", port=self.port, pid=self.proc.pid)

    async def _listening(self) -> bool:
        """Whether *our* child answers (its CapabilityStatement), not merely something on the port."""
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
                    session.get(f"{self.url}/metadata") as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return isinstance(body, dict) and body.get("resourceType") == "CapabilityStatement" \
            and self.proc is not None and self.proc.returncode is None

    async def _watch(self) -> None:
        while not self._stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            log.error("shr.process_died", exit_code=code)
            while not self._stopping:
                await asyncio.sleep(RESTART_DELAY_S)
                try:
                    await self._spawn()
                    break
                except Exception as exc:  # e.g. the port is taken meanwhile: keep trying
                    log.error("shr.process_restart_failed", error=repr(exc))

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


_TARGET_KEY = web.AppKey("shr_proxy_target", ShrProcess)
_SESSION_KEY = web.AppKey("shr_proxy_session", aiohttp.ClientSession)


async def _forward(request: web.Request) -> web.StreamResponse:
    target = request.app[_TARGET_KEY]
    public_base = str(request.url.origin()) + str(request.app.router["shr-proxy"].url_for(tail="")).rstrip("/")
    headers = {k: request.headers[k] for k in _REQUEST_HEADERS if k in request.headers}
    headers[FORWARDED_BASE] = public_base
    url = f"{target.url}/{request.match_info['tail']}"
    try:
        async with request.app[_SESSION_KEY].request(
                request.method, url, params=request.rel_url.query, data=await request.read() if request.can_read_body
                else None, headers=headers) as resp:
            body = await resp.read()
            out = {k: resp.headers[k] for k in _RESPONSE_HEADERS if k in resp.headers}
            return web.Response(status=resp.status, body=body, headers=out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("shr.proxy_failed", error=type(exc).__name__)
        return outcome_response(502, code="transient", diagnostics="the sandbox shared record is not answering")


def create_shr_proxy_app(target: ShrProcess) -> web.Application:
    """``/shr/fhir`` on the node: forwards every request to the sandbox process ``target``."""
    app = web.Application(client_max_size=16 * 1024 * 1024 + 1)
    app[_TARGET_KEY] = target

    async def _open(app: web.Application) -> None:
        app[_SESSION_KEY] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def _close(app: web.Application) -> None:
        await app[_SESSION_KEY].close()

    app.on_startup.append(_open)
    app.on_cleanup.append(_close)
    app.router.add_route("*", "/{tail:.*}", _forward, name="shr-proxy")
    return app
