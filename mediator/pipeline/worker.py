"""Worker processes: the pipeline in its own process, fed from the store's queue.

With ``worker.processes: N`` the node only receives, stores and acknowledges; N worker processes
each take the messages of one partition (a hash of the ordering key, so one patient's messages
always go to the same worker, in order) and run the pipeline. The node supervises them: a worker
that dies has its in-flight messages re-queued and is restarted.

SIGHUP asks a worker to reload its channels and mappings. Its default action ends a process, and a
worker needs seconds (imports, mapping compile) before it can handle it, so a worker is started with
SIGHUP blocked (the signal mask survives ``exec``); it unblocks it once its handler is in place, and a
reload asked meanwhile is then served. A worker (re)started while the files are broken falls back to
the last definitions the node accepted (:func:`publish_definitions`), as the node itself keeps serving
them, rather than leave its partition queued until someone fixes the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import structlog

from mediator.accept.channels import ChannelRouter
from mediator.config import AppConfig, ChannelConfig, ConfigError
from mediator.heap import freeze_long_lived
from mediator.mapping import Mapping, MappingContext
from mediator.pipeline.dispatcher import Dispatcher
from mediator.pipeline.steps import Pipeline
from mediator.routes.destination import Destination
from mediator.store.base import Store
from mediator.store.factory import make_store

log = structlog.get_logger(__name__)

CLAIM_BATCH = 64
WORKER_COMMIT_BATCH = 16
WORKER_PAUSE_AFTER_COMMIT_S = 0.001  # see SQLiteStore.pause_after_commit
MAX_BACKLOG = 4096


async def open_destinations(cfg: AppConfig) -> dict[str, Destination]:
    out = {}
    for name, dcfg in cfg.destinations.items():
        dest = Destination(name, dcfg, cfg.destination_url(dcfg.url))
        await dest.open()
        out[name] = dest
    return out


def make_pipeline(cfg: AppConfig, store: Store, router: ChannelRouter, mappings: dict[str, Mapping],
                  destinations: dict[str, Destination]) -> Pipeline:
    return Pipeline(store=store, router=router, mappings=mappings, destinations=destinations,
                    context=MappingContext(identifiers=cfg.identifiers))


DEFINITIONS_DIR = "definitions"  # under the data directory: the node's last accepted definition files
KEEP_GENERATIONS = 3


def publish_definitions(cfg: AppConfig) -> None:
    """Copy the channel and mapping files the node has just accepted where its workers find them should
    the originals be broken when they (re)start or reload: ``<data>/definitions/current`` (a symlink
    switched atomically to a fresh copy; the last few copies stay for workers still reading them)."""
    root = cfg.data_path / DEFINITIONS_DIR
    root.mkdir(parents=True, exist_ok=True)
    gen = Path(tempfile.mkdtemp(dir=root, prefix="gen-"))
    try:
        shutil.copytree(cfg.resolve(cfg.channels_dir), gen / "channels")
        shutil.copytree(cfg.resolve(cfg.mappings_dir), gen / "mappings")
        link = root / f".current-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(gen.name)
        os.replace(link, root / "current")
    except OSError as exc:
        log.warning("definitions.publish_failed", error=str(exc))
        shutil.rmtree(gen, ignore_errors=True)
        return
    old = sorted((d for d in root.glob("gen-*") if d != gen), key=lambda d: d.stat().st_mtime)
    for d in old[:max(0, len(old) - (KEEP_GENERATIONS - 1))]:
        shutil.rmtree(d, ignore_errors=True)


def _published(cfg: AppConfig) -> AppConfig | None:
    current = cfg.data_path / DEFINITIONS_DIR / "current"
    if not current.is_dir():
        return None
    gen = current.resolve()
    return cfg.model_copy(update={"channels_dir": str(gen / "channels"), "mappings_dir": str(gen / "mappings")})


def load_worker_definitions(cfg: AppConfig) -> tuple[list[ChannelConfig], dict[str, Mapping]]:
    """The channel and mapping files as they are; if they are broken, the last ones the node accepted.
    Raises the files' ConfigError when neither loads."""
    from mediator.app import load_definitions

    try:
        return load_definitions(cfg)
    except ConfigError as exc:
        published = _published(cfg)
        if published is None:
            raise
        try:
            out = load_definitions(published)
        except ConfigError:
            raise exc from None
        log.warning("worker.published_definitions", reason=[str(e) for e in exc.errors],
                    channels_dir=published.channels_dir)
        return out


def reload_definitions(cfg: AppConfig, router: ChannelRouter, pipeline: Pipeline, *, worker: bool = False) -> bool:
    """Load channels and mappings again and serve them; a bad file is refused (logged with its file and
    line) and the previous definitions keep serving. Messages in flight finish with what they started.
    A ``worker`` falls back to the definitions its node last accepted (:func:`load_worker_definitions`)."""
    from mediator.app import load_definitions

    try:
        channels, mappings = load_worker_definitions(cfg) if worker else load_definitions(cfg)
    except ConfigError as exc:
        log.error("reload.refused", problems=[str(e) for e in exc.errors])
        return False
    router.replace(channels)
    pipeline.mappings = mappings
    log.info("reload.done", channels=len(router.channels), mappings=len(mappings))
    return True


def _reload_and_freeze(cfg: AppConfig, router: ChannelRouter, pipeline: Pipeline) -> None:
    if reload_definitions(cfg, router, pipeline, worker=True):
        freeze_long_lived()


def write_state(cfg: AppConfig, path: Path) -> None:
    """The node's effective configuration (after command-line overrides), for its workers."""
    path.write_bytes(orjson.dumps({"config": cfg.model_dump(mode="json"), "base_dir": cfg.base_dir}))


def read_state(path: Path) -> AppConfig:
    state = orjson.loads(path.read_bytes())
    cfg = AppConfig.model_validate(state["config"])
    cfg.base_dir = state["base_dir"]
    return cfg


@contextlib.contextmanager
def sighup_blocked() -> Iterator[None]:
    """Block SIGHUP in this thread; a process started meanwhile starts with it blocked (see the module)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def block_sighup() -> None:
    """Hold SIGHUP pending until :func:`run_worker` can reload on it (the supervisor already started this
    process with it blocked; this covers a worker started by other means)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})


async def run_worker(cfg: AppConfig, partition: int, partitions: int, parent: int) -> None:
    """Run one worker until SIGTERM or until its node (``parent``) is gone."""
    block_sighup()
    if os.getppid() != parent:
        log.warning("worker.orphaned", partition=partition)
        return
    if cfg.worker.nice:
        os.nice(cfg.worker.nice)
    # The store's writer thread holds the database's write lock while it waits for the GIL between two
    # statements; with the default 5 ms switch interval that wait, behind a message being mapped,
    # showed as ACK latency in the node (which needs the same lock). 1 ms bounds it.
    sys.setswitchinterval(0.001)
    while True:  # files broken since the node checked them: wait for a fix rather than crash in a loop
        try:
            channels, mappings = load_worker_definitions(cfg)
            break
        except ConfigError as exc:
            log.error("worker.definitions_refused", partition=partition, problems=[str(e) for e in exc.errors])
            await asyncio.sleep(5.0)
            if os.getppid() != parent:
                return
    store = make_store(cfg)
    # Short write transactions: the node waits for this lock to acknowledge what it receives.
    # A worker's writes (claims, statuses, route attempts) need no fsync of their own: a power cut
    # that loses them leaves the message queued or processing, recovered and delivered again with the
    # same resource ids (an update, not a duplicate), and the node's next commit syncs them anyway.
    store.max_batch = min(store.max_batch, WORKER_COMMIT_BATCH)
    store.synchronous = "NORMAL"
    store.pause_after_commit = WORKER_PAUSE_AFTER_COMMIT_S
    await store.open(owner=False)
    destinations = await open_destinations(cfg)
    router = ChannelRouter(channels)
    pipeline = make_pipeline(cfg, store, router, mappings, destinations)
    registries = None
    if cfg.registry.enabled:
        from mediator.registry.config import open_registries

        registries = open_registries(cfg, inline_links=True)  # this loop answers no one: no thread hops
        pipeline.resolver = registries.resolver
    dispatcher = Dispatcher(pipeline.process, cfg.worker.concurrency)
    dispatcher.start()
    freeze_long_lived()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_and_freeze, cfg, router, pipeline)
    # Ready for SIGHUP: one that came while starting (held pending) is delivered now and reloads, since
    # the files may have changed after this worker read them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    idle = cfg.worker.poll_interval_ms / 1000
    log.info("worker.started", partition=partition, partitions=partitions)
    last = 0
    try:
        while not stop.is_set():
            if os.getppid() != parent:
                log.warning("worker.orphaned", partition=partition)
                break
            if dispatcher.backlog > MAX_BACKLOG:
                await asyncio.sleep(idle)
                continue
            batch = await store.claim(partition, partitions, last, CLAIM_BATCH)
            for seq, item in batch:
                dispatcher.submit(item, None)
                last = seq
            if len(batch) < CLAIM_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle)
    finally:
        await dispatcher.drain(10.0)
        await dispatcher.stop()
        for dest in destinations.values():
            await dest.close()
        await store.close()
        if registries is not None:
            registries.close()
        log.info("worker.stopped", partition=partition)


class WorkerSupervisor:
    """Starts the worker processes of a node, restarts any that dies, stops them with the node."""

    def __init__(self, cfg: AppConfig, store: Store, count: int) -> None:
        self.cfg = cfg
        self.store = store
        self.count = count
        self.state = cfg.data_path / "worker-state.json"
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        write_state(self.cfg, self.state)
        for i in range(self.count):
            await self._spawn(i)
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch(i)))

    async def _spawn(self, partition: int) -> None:
        # SIGHUP blocked from exec on: a reload asked while the worker starts must not end it (see the module).
        with sighup_blocked():
            self.procs[partition] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mediator", "worker", "--state", str(self.state), "--partition",
                str(partition), "--partitions", str(self.count), "--parent", str(os.getpid()))

    async def _watch(self, partition: int) -> None:
        while not self._stopping:
            code = await self.procs[partition].wait()
            if self._stopping:
                return
            self.restarts += 1
            log.error("worker.died", partition=partition, exit_code=code)
            await self._restart(partition)

    async def _restart(self, partition: int) -> None:
        """Put the dead worker's messages back in the queue and start another; retried until both are done
        (a failure here must not leave the partition without a worker)."""
        requeued: int | None = None
        while not self._stopping:
            try:
                if requeued is None:
                    requeued = await self.store.requeue(partition, self.count)
                    log.info("worker.requeued", partition=partition, requeued=requeued)
                await asyncio.sleep(1.0)
                if not self._stopping:
                    await self._spawn(partition)
                return
            except Exception as exc:
                log.error("worker.restart_failed", partition=partition, error=repr(exc))
                await asyncio.sleep(1.0)

    def reload(self) -> None:
        """Ask every worker to load channels and mappings again (SIGHUP)."""
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGHUP)

    async def stop(self, timeout: float = 15.0) -> None:
        self._stopping = True
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
