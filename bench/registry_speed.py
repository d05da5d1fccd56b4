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
import gc
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_synth import make_people, make_records  # noqa: E402

from mediator.heap import tune_collector  # noqa: E402
from mediator.registry.model import PersonRecord, features_of  # noqa: E402
from mediator.registry.registry import ClientRegistry, blocking_keys  # noqa: E402


def _rss_mb() -> float:
    """Resident set size now (MB)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    reg = ClientRegistry(db)
    if reg._legacy_keys:  # built by an older version: the blocking keys of this one (mediator registry reindex)
        started = time.perf_counter()
        print(f"reindexed {reg.reindex()} records in {time.perf_counter() - started:.0f} s", flush=True)
    people = make_people(persons, rng)
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
    # a fresh source per run: links, not updates of an earlier run's probes
    tag = f"PROBE-{os.getpid()}-{int(time.time())}"
    probes = [PersonRecord.from_row({**row, "source": tag, "local_id": f"p{i}"})
              for i, (_, row) in enumerate(known + fresh)]
    prng.shuffle(probes)
    del people, known, fresh
    gc.collect()
    gc.freeze()  # the generator's objects are the benchmark's, not the registry's: keep them out of GC passes
    tune_collector()  # as every mediator process does (mediator.heap)
    rss_before = _rss_mb()
    sizes = []
    for p in probes[:500]:
        f = features_of(p, reg.rules)
        sizes.append(len(reg._candidate_rows(f, blocking_keys(f))))
    quarter = len(probes) // 4
    pipeline_probes, probes = probes[:quarter], probes[quarter:]
    third = len(probes) // 3
    rates: list[tuple[str, int, float, float]] = []

    def timed(label: str, n_done: int, fn: Any) -> None:
        w, c = time.perf_counter(), time.process_time()
        fn()
        rates.append((label, n_done, time.perf_counter() - w, time.process_time() - c))

    def match_all() -> None:
        for p in probes[:third]:
            reg.match(p)

    def link_each() -> None:
        for p in probes[third:2 * third]:
            reg.link(p)

    def link_batched() -> None:
        with reg.batch():
            for p in probes[2 * third:]:
                reg.link(p)

    import asyncio

    from mediator.registry.resolver import LinkBatcher

    async def pipeline() -> None:
        batcher = LinkBatcher(reg)
        sem = asyncio.Semaphore(args.concurrency)

        async def one(p: PersonRecord) -> None:
            async with sem:
                await batcher.link(p)
        await asyncio.gather(*(one(p) for p in pipeline_probes))

    timed("match", third, match_all)
    timed("link (commit each)", third, link_each)
    timed("link (batched)", len(probes) - 2 * third, link_batched)
    timed(f"link (pipeline, {args.concurrency} in flight, group commit)", len(pipeline_probes),
          lambda: asyncio.run(pipeline()))
    size = sum(os.path.getsize(f) for f in (str(db), f"{db}-wal") if os.path.exists(f))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"registry: {n} source records, db {size / 1e6:.0f} MB; RSS {_rss_mb():.0f} MB at the end, "
          f"{rss_before:.0f} MB before the probes (the generator's people included), peak {rss:.0f} MB; "
          f"registry caches: {len(reg._features)} features, {len(reg._freq)} name counts")
    print(f"candidates per query: mean {sum(sizes) / len(sizes):.1f}, max {max(sizes)}")
    print("resolutions/s: wall clock (CPU time of this process: what the machine gives when not shared)")
    for label, k, wall, cpu in rates:
        print(f"  {label:50} {k / wall:6.0f}/s  ({k / max(cpu, 1e-9):.0f}/s CPU)")
    reg.close()


if __name__ == "__main__":
    main()
