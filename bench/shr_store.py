"""Throughput of the sandbox shared record over real HTTP (plain script, prints figures).

Starts ``python -m mediator.sandbox.shr`` in its own process on a free port with a fresh database,
then posts N transaction Bundles (Patient + Encounter + Practitioner, PUT with ids) from C
concurrent aiohttp clients and prints bundles/s and latency percentiles.

    python bench/shr_store.py [--n 2000] [--concurrency 8] [--update]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundle(i: int) -> bytes:
    pid, eid, prid = f"p{i}", f"e{i}", f"pr{i % 200}"
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"Patient/{pid}",
                    "resource": {
                        "resourceType": "Patient",
                        "id": pid,
                        "identifier": [{"system": "urn:oid:2.16.504.1.1", "value": f"BK{100000 + i}"}],
                        "name": [
                            {"family": "El Amrani", "given": ["Fatima", "Zahra"]},
                            {"family": "العمراني"},
                        ],
                        "gender": "female",
                        "birthDate": "1985-03-12",
                    },
                    "request": {"method": "PUT", "url": f"Patient/{pid}"},
                },
                {
                    "fullUrl": f"Practitioner/{prid}",
                    "resource": {
                        "resourceType": "Practitioner",
                        "id": prid,
                        "identifier": [{"system": "urn:oid:2.16.504.1.2", "value": f"{900000 + i % 200}"}],
                        "name": [{"family": "Benjelloun", "given": ["Karim"]}],
                    },
                    "request": {"method": "PUT", "url": f"Practitioner/{prid}"},
                },
                {
                    "fullUrl": f"Encounter/{eid}",
                    "resource": {
                        "resourceType": "Encounter",
                        "id": eid,
                        "status": "finished",
                        "class": {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "AMB",
                        },
                        "subject": {"reference": f"Patient/{pid}"},
                        "participant": [{"individual": {"reference": f"Practitioner/{prid}"}}],
                        "period": {"start": "2025-01-02T10:00:00+01:00"},
                    },
                    "request": {"method": "PUT", "url": f"Encounter/{eid}"},
                },
            ],
        }
    )


async def run(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with aiohttp.ClientSession(headers={"Content-Type": "application/fhir+json"}) as session:
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, errors


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--update", action="store_true", help="also re-post with changed content")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "mediator.sandbox.shr", "--port", str(port), "--db", f"{tmp}/shr.db"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                for _ in range(100):
                    try:
                        async with s.get(f"{base}/metadata") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
            bodies = [bundle(i) for i in range(args.n)]
            await run(f"{base}/", [bundle(args.n + i) for i in range(100)], args.concurrency)  # warm-up
            rounds = [("create", bodies), ("identical re-PUT", bodies)]
            for name, data in rounds:
                elapsed, lat, errors = await run(f"{base}/", data, args.concurrency)
                lat.sort()
                print(
                    f"{name:>18}: {len(data)} bundles x3 resources, {args.concurrency} clients: "
                    f"{len(data) / elapsed:,.0f} bundles/s  p50 {statistics.median(lat) * 1000:.1f} ms  "
                    f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms  errors {errors}"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
