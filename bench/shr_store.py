"""Throughput of the sandbox shared record over real HTTP (plain script, prints figures).

Starts ``python -m mediator.sandbox.shr`` in its own process on a free port with a fresh database,
then posts N transaction Bundles (Patient + Encounter + Practitioner, PUT with ids) from C
concurrent aiohttp clients and prints bundles/s and latency percentiles, and the server process's
CPU per bundle (user+sys from ``/proc/<pid>/stat``, split into the event-loop thread and the others):
throughput on a shared machine is noisy, CPU per bundle is the steadier figure.

``--adt`` posts instead the Bundles the shipped ADT mapping makes of synthetic ADT^A01 messages (10
entries: Patient, Encounter, Practitioner, Provenance, Device, Organization, 4 Locations; urn:uuid
fullUrls), as the mediator delivers them end to end.

    python bench/shr_store.py [--n 2000] [--concurrency 8] [--update] [--adt]
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


def cpu_ticks(pid: int) -> tuple[int, int]:
    """User+sys clock ticks of process ``pid``: (its main thread, all its other threads)."""
    main = other = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        if task.name == str(pid):
            main += ticks
        else:
            other += ticks
    return main, other


def bundle(i: int, version: int = 0) -> bytes:
    """A transaction Bundle; a ``version`` > 0 changes the Patient and Encounter (a real update)."""
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
                        **({"telecom": [{"system": "phone", "value": f"+2126{version:08d}"}]} if version else {}),
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
                        "status": "finished" if version == 0 else "in-progress",
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


def adt_bundles(start: int, n: int) -> list[bytes]:
    """Bundles of the shipped ADT mapping for synthetic ADT^A01 messages ``start`` .. ``start + n - 1``."""
    sys.path.insert(0, str(ROOT))
    from mediator.hl7v2 import parse
    from mediator.mapping import MappingContext, load_mapping
    from mediator.testing import adt_message

    mapping = load_mapping(ROOT / "mappings" / "adt_to_fhir.yaml")
    return [
        orjson.dumps(mapping.apply(parse(adt_message(i).encode()), MappingContext()).bundle)
        for i in range(start, start + n)
    ]


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
    parser.add_argument("--adt", action="store_true", help="post the ADT mapping's Bundles (10 entries)")
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
            if args.adt:
                bodies, warm = adt_bundles(0, args.n), adt_bundles(args.n, 100)
            else:
                bodies, warm = [bundle(i) for i in range(args.n)], [bundle(args.n + i) for i in range(100)]
            await run(f"{base}/", warm, args.concurrency)  # warm-up
            rounds = [("create", bodies), ("identical re-PUT", bodies)]
            if args.update and not args.adt:
                rounds.append(("changed update", [bundle(i, 1) for i in range(args.n)]))
            tick = os.sysconf("SC_CLK_TCK")
            for name, data in rounds:
                cpu0 = cpu_ticks(proc.pid)
                elapsed, lat, errors = await run(f"{base}/", data, args.concurrency)
                cpu1 = cpu_ticks(proc.pid)
                loop_ms, other_ms = ((b - a) * 1000 / tick / len(data) for a, b in zip(cpu0, cpu1, strict=True))
                lat.sort()
                print(
                    f"{name:>18}: {len(data)} bundles, {args.concurrency} clients: "
                    f"{len(data) / elapsed:,.0f} bundles/s  p50 {statistics.median(lat) * 1000:.1f} ms  "
                    f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms  errors {errors}\n"
                    f"{'':>18}  server CPU {loop_ms + other_ms:.3f} ms/bundle "
                    f"(event loop {loop_ms:.3f}, other threads {other_ms:.3f})"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
