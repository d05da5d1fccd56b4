"""Client registry speed: resolutions per second against a large registry (SQLite, one file).

    python bench/registry_speed.py --records 100000 [--db /tmp/reg100k.db] [--probe 3000]

Builds (or reuses, with an existing ``--db``) a registry of about ``--records`` synthetic Moroccan
source records (bench/registry_synth.py's generator, ~2 records per person), then measures on
``--probe`` fresh records (half of them new sources for people already in the registry):

* ``link``   — what the pipeline does per message: block, score, store, one commit per record;
* ``link (batched)`` — the same inside one transaction (bulk load, ``registry link``);
* ``match``  — score only, nothing stored ($match);
* ``link (pipeline)`` — ``--concurrency`` messages in flight through the resolver's group commit
  (:class:`~mediator.registry.resolver.LinkBatcher`), as the worker runs them.

Prints rates, the mean candidate-set size, database size and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_synth import make_people, make_records  # noqa: E402

from mediator.registry.model import PersonRecord, features_of  # noqa: E402
from mediator.registry.registry import ClientRegistry, blocking_keys  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--db", default="")
    ap.add_argument("--probe", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--concurrency", type=int, default=64, help="messages in flight (the worker's concurrency)")
    args = ap.parse_args()
    db = Path(args.db or f"/tmp/registry_speed_{args.records}.db")
    rng = random.Random(args.seed)
    persons = int(args.records / 2.05) + 1
    people = make_people(persons, rng)
    reg = ClientRegistry(db)
    have = reg.stats()["records"]
    if have < args.records * 0.9:
        rows = make_records(people, rng)
        started = time.perf_counter()
        chunk = 5000
        for i in range(0, len(rows), chunk):
            with reg.batch():
                for _, row in rows[i:i + chunk]:
                    reg.link(PersonRecord.from_row(row))
            if (i // chunk) % 20 == 0:
                done = i + chunk
                print(f"  built {done} records, {done / (time.perf_counter() - started):.0f}/s", flush=True)
        el = time.perf_counter() - started
        print(f"build: {len(rows)} records in {el:.0f} s ({len(rows) / el:.0f} links/s, batched)")
    n = reg.stats()["records"]
    # probes: new source records of known people and records of new people
    prng = random.Random(args.seed + 1)
    known = make_records(prng.sample(people, args.probe // 2), prng)[: args.probe // 2]
    fresh = make_records(make_people(args.probe, prng), prng)[: args.probe - len(known)]
    probes = [PersonRecord.from_row({**row, "source": "PROBE", "local_id": f"p{i}"})
              for i, (_, row) in enumerate(known + fresh)]
    prng.shuffle(probes)
    sizes = []
    for p in probes[:500]:
        f = features_of(p, reg.rules)
        sizes.append(len(reg._candidate_rows(f, blocking_keys(f))))
    quarter = len(probes) // 4
    pipeline_probes, probes = probes[:quarter], probes[quarter:]
    third = len(probes) // 3
    t0 = time.perf_counter()
    for p in probes[:third]:
        reg.match(p)
    t1 = time.perf_counter()
    for p in probes[third:2 * third]:
        reg.link(p)
    t2 = time.perf_counter()
    with reg.batch():
        for p in probes[2 * third:]:
            reg.link(p)
    t3 = time.perf_counter()
    import asyncio

    from mediator.registry.resolver import LinkBatcher

    async def pipeline() -> float:
        batcher = LinkBatcher(reg)
        sem = asyncio.Semaphore(args.concurrency)

        async def one(p: PersonRecord) -> None:
            async with sem:
                await batcher.link(p)
        t = time.perf_counter()
        await asyncio.gather(*(one(p) for p in pipeline_probes))
        return time.perf_counter() - t
    t4 = asyncio.run(pipeline())
    size = sum(os.path.getsize(f) for f in (str(db), f"{db}-wal") if os.path.exists(f))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"registry: {n} source records, db {size / 1e6:.0f} MB, peak RSS {rss:.0f} MB")
    print(f"candidates per query: mean {sum(sizes) / len(sizes):.1f}, max {max(sizes)}")
    print(f"match:           {third / (t1 - t0):.0f}/s")
    print(f"link (commit):   {third / (t2 - t1):.0f}/s")
    print(f"link (batched):  {(len(probes) - 2 * third) / (t3 - t2):.0f}/s")
    print(f"link (pipeline, {args.concurrency} concurrent, group commit): {len(pipeline_probes) / t4:.0f}/s")
    reg.close()


if __name__ == "__main__":
    main()
