"""A mediator node: wires configuration, store, doors, listeners, worker and destinations together.

This is the only module that knows every part; each part only knows the interfaces it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from mediator.accept.channels import ChannelRouter
from mediator.accept.documents import DocumentDoor
from mediator.accept.hl7v2 import Hl7v2Door
from mediator.api.health import GaugeCollector, add_health_routes
from mediator.api.transactions import add_transaction_routes
from mediator.config import AppConfig, ChannelConfig, ConfigError, load_channels
from mediator.console.routes import add_console_routes
from mediator.heap import freeze_long_lived
from mediator.inbound.auth import auth_middleware
from mediator.inbound.http import add_inbound_routes
from mediator.inbound.mllp import MllpServer
from mediator.mapping import Mapping, load_mappings
from mediator.metrics import Metrics
from mediator.pipeline.dispatcher import Dispatcher
from mediator.pipeline.steps import Pipeline
from mediator.pipeline.worker import (
    WorkerSupervisor,
    make_pipeline,
    open_destinations,
    publish_definitions,
    reload_definitions,
)
from mediator.registry.config import Registries, open_registries
from mediator.registry.http import add_registry_routes
from mediator.routes.destination import Destination
from mediator.sandbox.shr_process import ShrProcess, create_shr_proxy_app
from mediator.store.base import QueuedMessage
from mediator.store.factory import make_store
from mediator.store.sqlite import SQLiteStore
from mediator.yamlfile import YamlFileError

log = structlog.get_logger(__name__)


_compiled: dict[tuple[str, tuple[tuple[str, float, int], ...]], dict[str, Mapping]] = {}


def _files_stamp(directory: Path) -> tuple[tuple[str, float, int], ...]:
    out = []
    for f in sorted(directory.rglob("*.y*ml")):
        with contextlib.suppress(OSError):
            st = f.stat()
            out.append((str(f), st.st_mtime, st.st_size))
    return tuple(out)


def compiled_mappings(directory: Path) -> dict[str, Mapping]:
    """The mappings of ``directory``, compiled once per content of its files (nodes of one process, as in
    tests, share them; a changed file compiles again)."""
    key = (str(directory.resolve()), _files_stamp(directory))
    if key not in _compiled:
        if len(_compiled) >= 4:
            del _compiled[next(iter(_compiled))]
        _compiled[key] = load_mappings(directory)
    return _compiled[key]


def load_definitions(cfg: AppConfig) -> tuple[list[ChannelConfig], dict[str, Mapping]]:
    """Channels and mappings, cross-checked; raises ConfigError listing every located problem."""
    errors: list[YamlFileError] = []
    channels: list[ChannelConfig] = []
    mappings: dict[str, Mapping] = {}
    try:
        channels = load_channels(cfg)
    except ConfigError as exc:
        errors.extend(exc.errors)
    try:
        mappings = compiled_mappings(cfg.resolve(cfg.mappings_dir))
    except ConfigError as exc:
        errors.extend(exc.errors)
    for ch in channels:
        if ch.mapping and ch.mapping not in mappings and not errors:
            errors.append(YamlFileError(ch.file, None, f"mapping {ch.mapping!r} not found in {cfg.mappings_dir}/"))
        if ch.source.protocol == "hl7v2" and not ch.mapping:
            errors.append(YamlFileError(ch.file, None, "an hl7v2 channel needs a mapping"))
    if errors:
        raise ConfigError(errors)
    return channels, mappings


class Node:
    """One running mediator: HTTP + MLLP listeners, a store, a worker pool."""

    def __init__(self, cfg: AppConfig, *, freeze_heap: bool = False) -> None:
        """``freeze_heap``: exempt what start-up (and each reload) built from the garbage collector's
        full passes (see :mod:`mediator.heap`); for a process that serves one node, not for tests."""
        self.cfg = cfg
        self.freeze_heap = freeze_heap
        self.ready = False
        self.http_port = cfg.http.port
        self.mllp_port = cfg.mllp.port
        self.registry = CollectorRegistry()
        self._runner: web.AppRunner | None = None
        self.mllp: MllpServer | None = None
        self.store: SQLiteStore | None = None
        self.dispatcher: Dispatcher | None = None
        self.destinations: dict[str, Destination] = {}
        self.workers: WorkerSupervisor | None = None
        self.shr_process: ShrProcess | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.router: ChannelRouter | None = None
        self.pipeline: Pipeline | None = None
        self.registries: Registries | None = None

    async def start(self) -> None:
        cfg = self.cfg
        channels, mappings = load_definitions(cfg)
        cfg.data_path.mkdir(parents=True, exist_ok=True)
        router = ChannelRouter(channels)
        self.store = store = make_store(cfg)
        await store.open()

        self.router = router
        self.pipeline = pipeline = make_pipeline(cfg, store, router, mappings, self.destinations)
        if cfg.registry.enabled:
            self.registries = open_registries(cfg)
            pipeline.resolver = self.registries.resolver
        in_process = cfg.worker.enabled and cfg.worker.processes == 0
        self.dispatcher = dispatcher = Dispatcher(pipeline.process, cfg.worker.concurrency, enabled=in_process)

        def is_ready() -> bool:
            return self.ready

        hl7_door = Hl7v2Door(store, router, dispatcher.submit, ready=is_ready)
        doc_door = DocumentDoor(store, router, dispatcher.submit, max_bytes=cfg.http.max_body_bytes)

        app = web.Application(middlewares=[auth_middleware(cfg.auth)], client_max_size=cfg.http.max_body_bytes)
        add_health_routes(app, is_ready, self.registry)
        self.metrics = Metrics(self.registry)
        add_inbound_routes(app, hl7_door, doc_door, cfg.http.max_body_bytes, self.metrics)
        add_transaction_routes(app, store, lambda q: dispatcher.submit(q, None))
        add_console_routes(app)
        if self.registries is not None:
            regs = self.registries
            add_registry_routes(app, regs.client, regs.providers, systems=regs.systems,
                                enterprise_system=regs.config.enterprise_system)
        if cfg.sandbox.shr and cfg.sandbox.shr_process:
            self.shr_process = ShrProcess(cfg.data_path / "shr.db", port=cfg.sandbox.shr_port,
                                          log_level=cfg.logging.level, nice=cfg.worker.nice)
            await self.shr_process.start()
            cfg.sandbox.shr_port = self.shr_process.port  # routes (and workers) reach it there
            app.add_subapp("/shr/fhir", create_shr_proxy_app(self.shr_process))
        elif cfg.sandbox.shr:
            from mediator.sandbox.shr import create_shr_app
            app.add_subapp("/shr/fhir", create_shr_app(cfg.data_path / "shr.db"))
        if cfg.sandbox.cnss:
            from mediator.sandbox.cnss import create_cnss_sandbox_app
            app.add_subapp("/sandbox/cnss", create_cnss_sandbox_app(cfg.data_path / "cnss.db"))

        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.http.host, cfg.http.port, backlog=1024, reuse_address=True)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.http_port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        cfg.http.port = self.http_port

        self.destinations.update(await open_destinations(cfg))

        if cfg.mllp.enabled:
            self.mllp = MllpServer(hl7_door, cfg.mllp, self.metrics)
            self.mllp_port = await self.mllp.start(cfg.mllp.host, cfg.mllp.port)

        self.registry.register(GaugeCollector({
            "mediator_worker_backlog": ("messages queued or in processing", lambda: dispatcher.backlog),
            "mediator_worker_processed": ("messages processed since start", lambda: dispatcher.processed),
            "mediator_mllp_connections": ("open MLLP connections",
                                          lambda: len(self.mllp.connections) if self.mllp else 0),
            "mediator_mllp_frames": ("MLLP frames received since start", lambda: self.mllp.frames if self.mllp else 0),
            "mediator_store_commits": ("group commits since start", lambda: store.commits),
            "mediator_store_committed_ops": ("operations committed since start", lambda: store.committed_ops),
        }))

        pending = await store.pending() if in_process else []
        for item in pending:
            dispatcher.submit(item, None)
        if in_process:
            dispatcher.start()
        elif cfg.worker.enabled:
            publish_definitions(cfg)  # what a worker falls back to should the files break later
            self.workers = WorkerSupervisor(cfg, store, cfg.worker.processes)
            await self.workers.start()
        self._watcher = asyncio.get_running_loop().create_task(self._watch_definitions())
        if cfg.store.retention_days or cfg.store.dedupe_days:
            self._pruner = asyncio.get_running_loop().create_task(self._prune_forever())
        self.ready = True
        demo = [c.username for c in cfg.auth.clients if c.demo]
        if demo:
            log.warning("auth.demo_credentials", clients=len(demo),
                        hint="replace the demo clients in config.yaml before production use")
        log.info("node.started", http_port=self.http_port, mllp_port=self.mllp_port, channels=len(channels),
                 mappings=len(mappings), recovered=len(pending))
        if self.freeze_heap:
            freeze_long_lived()

    def reload(self) -> bool:
        """Load channels and mappings again (SIGHUP, or a file changed); a bad file is refused and the
        previous definitions keep serving. Worker processes are told to do the same."""
        assert self.router is not None and self.pipeline is not None
        ok = reload_definitions(self.cfg, self.router, self.pipeline)
        if ok and self.workers:
            publish_definitions(self.cfg)
            self.workers.reload()
        if ok and self.freeze_heap:
            freeze_long_lived()
        return ok

    def _definitions_stamp(self) -> tuple[tuple[str, float, int], ...]:
        cfg = self.cfg
        return _files_stamp(cfg.resolve(cfg.channels_dir)) + _files_stamp(cfg.resolve(cfg.mappings_dir))

    async def _watch_definitions(self, every_s: float = 1.0) -> None:
        """Reload when a channel or mapping file is added, changed or removed."""
        stamp = await asyncio.to_thread(self._definitions_stamp)
        while True:
            await asyncio.sleep(every_s)
            now = await asyncio.to_thread(self._definitions_stamp)
            if now != stamp:
                stamp = now
                self.reload()

    async def _prune_forever(self, every_s: float = 60.0) -> None:
        """Retention: finished transactions and duplicate keys past their age go, a little at a time."""
        assert self.store is not None
        day = 86400.0
        while True:
            now = time.time()
            st = self.cfg.store
            try:
                removed = await self.store.prune(now - st.retention_days * day if st.retention_days else None,
                                                 dedupe_older_than=now - st.dedupe_days * day if st.dedupe_days
                                                 else None)
                if removed:
                    log.info("store.pruned", transactions=removed)
            except Exception as exc:
                log.error("store.prune_failed", error=type(exc).__name__)
            await asyncio.sleep(every_s)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        self.ready = False
        for task in (self._pruner, self._watcher):
            if task:
                task.cancel()
        if self.mllp:
            await self.mllp.close()
        if self.workers:
            await self.workers.stop()
        if self.dispatcher:
            await self.dispatcher.drain(drain_timeout)
            await self.dispatcher.stop()
        if self._runner:
            await self._runner.cleanup()
        for dest in self.destinations.values():
            await dest.close()
        if self.shr_process is not None:
            await self.shr_process.stop()
        if self.store:
            await self.store.close()
        if self.registries is not None:
            self.registries.close()
        log.info("node.stopped")

    def resubmit(self, item: QueuedMessage) -> None:
        assert self.dispatcher is not None
        self.dispatcher.submit(item, None)


async def run_forever(cfg: AppConfig) -> None:
    """Start a node and run until SIGTERM/SIGINT, then stop gracefully."""
    import signal
    import sys

    # The store's writer thread and the event loop hand the GIL to each other for every accept; the
    # default 5 ms switch interval shows up as ACK latency (measured: +20 % accepts/s at 1 ms).
    sys.setswitchinterval(0.001)
    # SIGHUP's default action ends the process: one sent while the node starts (seconds: mapping
    # compile) waits, blocked, and reloads once the handler is in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    node = Node(cfg, freeze_heap=True)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.reload)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    await stop.wait()
    await node.stop()
