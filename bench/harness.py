"""Benchmark plumbing: servers as subprocesses, an MLLP load generator in its own process.

Every benchmark runs the thing measured and its baseline side by side in one run and prints ratios:
these machines are shared and noisy, absolute figures move, ratios much less.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mediator.testing import REPO, free_port, stop_process

__all__ = ["REPO", "free_port", "stop_process"]


def write_config(tmp: Path, **sections: dict[str, Any]) -> Path:
    """config.yaml with overrides (section -> keys), channels/mappings from the repo."""
    import yaml

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base["channels_dir"] = str(REPO / "channels")
    base["mappings_dir"] = str(REPO / "mappings")
    base["logging"] = {"level": "warning", "format": "json"}
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section].update(values)
        else:
            base[section] = values
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(base, allow_unicode=True))
    return path


@contextmanager
def mediator_server(**sections: dict[str, Any]):
    """A `mediator serve` subprocess; yields (http_port, mllp_port, data_dir)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as d:
        tmp = Path(d)
        http_port, mllp_port = free_port(), free_port()
        cfg = write_config(tmp, **sections)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mediator", "serve", "--config", str(cfg), "--data-dir", str(tmp / "data"),
             "--http-port", str(http_port), "--mllp-port", str(mllp_port)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"))
        try:
            wait_http(f"http://127.0.0.1:{http_port}/readyz", proc)
            yield http_port, mllp_port, tmp / "data"
        finally:
            stop_process(proc)


@contextmanager
def process(args: list[str], ready_port: int):
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", ready_port)) == 0:
                    break
            time.sleep(0.05)
        yield proc
    finally:
        stop_process(proc)


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def run_load(port: int, *, connections: int, count: int, rate: float = 0.0, start_index: int = 0,
             event: str = "A01") -> dict[str, Any]:
    """Run bench/load_mllp.py in its own process; returns its JSON report."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load_mllp.py"), "--port", str(port), "--connections",
         str(connections), "--count", str(count), "--rate", str(rate), "--start", str(start_index),
         "--event", event], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its child processes still running."""
    return sum(cpu_by_process(pid).values())


def cpu_by_process(pid: int) -> dict[int, float]:
    """CPU time (user + system) used so far by ``pid`` and by each of its child processes still running."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / tick
    return out


def server_pid(http_port: int) -> int:
    """The pid of the `mediator serve` listening on ``http_port``."""
    out = subprocess.run(["pgrep", "-f", f"mediator serve .*--http-port {http_port}"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def cpu_note() -> str:
    return f"{os.cpu_count()} cores, python {sys.version.split()[0]}"


