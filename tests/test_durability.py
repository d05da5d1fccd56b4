"""Durability proof at small scale: kill -9 mid-stream, restart; every ACKed message lands exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from mediator.clients.mllp import MllpClient, ack_code
from mediator.hl7v2 import parse
from mediator.testing import REPO, adt_message, free_port, stop_process

CIN = "https://dmp.sante.gov.ma/fhir/sid/cin"


def start(data_dir: Path, http_port: int, mllp_port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mediator", "serve", "--config", str(REPO / "config.yaml"), "--data-dir",
         str(data_dir), "--http-port", str(http_port), "--mllp-port", str(mllp_port)],
        cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "mediator exited during start-up"
        try:
            async with session.get(base + "/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("mediator did not become ready")


async def sender(port: int, start_at: int, count: int, acked: list[str], stop: asyncio.Event) -> None:
    try:
        c = await MllpClient.connect("127.0.0.1", port)
        for i in range(start_at, start_at + count):
            if stop.is_set():
                break
            msg = adt_message(i)
            ack = await c.send(msg, timeout=10)
            if ack_code(ack) in ("AA", "CA"):
                acked.append(parse(msg).get("PID-3.1") or "")
    except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
        return  # the server was killed under us: whatever was not ACKed may be lost


@pytest.mark.slow
async def test_kill_9_loses_no_acked_message_and_duplicates_none(tmp_path: Path) -> None:
    data = tmp_path / "data"
    http_port, mllp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "server.log"
    proc = start(data, http_port, mllp_port, log)
    acked: list[str] = []
    async with aiohttp.ClientSession() as session:
        try:
            await wait_ready(session, base, proc)
            stop = asyncio.Event()
            senders = [asyncio.create_task(sender(mllp_port, k * 10_000, 2_000, acked, stop)) for k in range(4)]
            while len(acked) < 300:
                await asyncio.sleep(0.005)
                assert proc.poll() is None, log.read_text()[-2000:]
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: senders are still sending
            proc.wait()
            stop.set()
            await asyncio.gather(*senders)
            assert len(acked) >= 300
            print(f"acked before kill: {len(acked)}")

            proc = start(data, http_port, mllp_port, log)
            await wait_ready(session, base, proc)
            deadline = time.monotonic() + 120
            while True:
                async with session.get(base + "/api/transactions?status=Queued&limit=1") as r:
                    queued = (await r.json())["transactions"]
                async with session.get(base + "/api/transactions?status=Processing&limit=1") as r:
                    processing = (await r.json())["transactions"]
                if not queued and not processing:
                    break
                assert time.monotonic() < deadline, "recovered messages were not processed"
                await asyncio.sleep(0.2)

            print([ln for ln in log.read_text().splitlines() if "node.started" in ln][-1])
            missing, doubled = [], []
            for cin in acked:
                q = urllib.parse.urlencode({"identifier": f"{CIN}|{cin}"})
                async with session.get(f"{base}/shr/fhir/Patient?{q}") as r:
                    total = (await r.json())["total"]
                if total == 0:
                    missing.append(cin)
                elif total > 1:
                    doubled.append(cin)
            assert not missing, f"{len(missing)} ACKed messages lost"
            assert not doubled, f"{len(doubled)} patients stored twice"
            async with session.get(base + "/api/transactions?status=Failed") as r:
                assert (await r.json())["transactions"] == []
        finally:
            stop_process(proc)
