"""Signals to `mediator serve`: a reload (SIGHUP) asked while the node still starts neither ends it nor
is lost; SIGTERM ends it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from test_durability import wait_ready

from mediator.testing import REPO, free_port, stop_process


def _sighup_blocked(pid: int) -> bool:
    """Whether ``pid`` has SIGHUP in its blocked-signal mask (``SigBlk`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


async def test_sighup_while_the_node_starts_is_held_and_then_reloads(tmp_path: Path) -> None:
    http_port, mllp_port = free_port(), free_port()
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mediator", "serve", "--config", str(REPO / "config.yaml"), "--data-dir",
         str(tmp_path / "data"), "--http-port", str(http_port), "--mllp-port", str(mllp_port)],
        cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _sighup_blocked(proc.pid):  # the interpreter's own start-up: a SIGHUP would still end it
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            await asyncio.sleep(0.001)
        os.kill(proc.pid, signal.SIGHUP)  # while it imports, compiles mappings, starts workers
        await asyncio.sleep(0.3)
        os.kill(proc.pid, signal.SIGHUP)
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{http_port}", proc)
            deadline = time.monotonic() + 30
            while '"reload.done"' not in log.read_text():  # the held SIGHUP is served once the node is up
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                await asyncio.sleep(0.1)
            async with session.get(f"http://127.0.0.1:{http_port}/healthz") as resp:
                assert resp.status == 200
        assert not _sighup_blocked(proc.pid)  # unblocked once the handler is in place
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc)


def _mask_when_cli_loads(command: str) -> str:
    """Run ``mediator <command> --help`` in a fresh interpreter and print whether SIGHUP was blocked
    at the moment ``mediator.cli`` (which imports pydantic, aiohttp... for seconds) began to load."""
    probe = (
        "import signal, sys\n"
        "class Probe:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mediator.cli':\n"
        "            blocked = signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, set())\n"
        "            print('blocked' if blocked else 'open', file=sys.stderr)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Probe())\n"
        "from mediator.entry import main\n"
        f"main([{command!r}, '--help'])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    return out.stderr.strip().splitlines()[0]


def test_long_running_commands_hold_sighup_before_their_heavy_imports() -> None:
    assert _mask_when_cli_loads("serve") == "blocked"
    assert _mask_when_cli_loads("worker") == "blocked"
    assert _mask_when_cli_loads("check") == "open"  # a one-shot command keeps the usual hang-up behaviour
