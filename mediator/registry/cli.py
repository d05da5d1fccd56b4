"""``mediator registry ...``: bulk linking, provider loading and review from the command line.

    mediator registry link INPUT.csv OUTPUT.csv [--into] [--config config.yaml]
    mediator registry estimate INPUT.csv WEIGHTS.json [--random-pairs N]
    mediator registry load providers.csv|bundle.json [--config config.yaml]
    mediator registry review [--limit N] [--json]
    mediator registry decide CANDIDATE_ID link|reject [--actor NAME]
    mediator registry merge FROM_ID INTO_ID | unmerge ID
    mediator registry stats
    mediator registry reindex

``link`` without ``--into`` links into a fresh registry in a temporary directory (a dry run, a
benchmark, or the first look at a hospital index being migrated); with ``--into`` into the
configured one (``registry.path`` under ``data_dir``). The output has one row per input row:
``record_id, enterprise_id, link (auto, candidate or new), score``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from mediator.registry.model import PersonRecord
from mediator.registry.registry import ClientRegistry, RegistryError

__all__ = ["add_registry_cli", "link_csv"]

OUTPUT_FIELDS = ("record_id", "enterprise_id", "link", "score")


def link_csv(registry: ClientRegistry, src: TextIO, dst: TextIO, *, batch: int = 2000) -> dict[str, int]:
    """Link every row of the ``registry link`` CSV; write one output row per input row; return counts.

    A row whose ``source``/``local_id`` are empty gets source ``csv`` and its ``record_id`` (or its
    row number) as local id, so that re-running the same file updates instead of duplicating.
    """
    reader = csv.DictReader(src)
    writer = csv.writer(dst)
    writer.writerow(OUTPUT_FIELDS)
    counts: dict[str, int] = {"rows": 0, "auto": 0, "candidate": 0, "new": 0, "manual": 0, "flagged": 0}
    while chunk := list(islice(reader, max(batch, 1))):
        with registry.batch():
            for row in chunk:
                counts["rows"] += 1
                rec = PersonRecord.from_row(row)
                rid = (row.get("record_id") or "").strip() or str(counts["rows"])
                rec.source = rec.source or "csv"
                rec.local_id = rec.local_id or rid
                res = registry.link(rec)
                counts[res.link] = counts.get(res.link, 0) + 1
                counts["flagged"] += bool(res.flags)
                writer.writerow((rid, res.enterprise_id, res.link, "" if res.score is None else f"{res.score:.2f}"))
    return counts


def _config(args: argparse.Namespace) -> Any:
    from mediator.config import load_config

    cfg = load_config(args.config)
    if getattr(args, "data_dir", None):
        cfg.data_dir = args.data_dir
    return cfg


def _open(args: argparse.Namespace) -> Any:
    from mediator.registry.config import open_registries

    return open_registries(_config(args))


def cmd_link(args: argparse.Namespace) -> int:
    from mediator.registry.config import open_registries

    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.into:
        regs = open_registries(_config(args))
    else:
        tmp = tempfile.TemporaryDirectory(prefix="registry-link-")
        try:
            cfg = _config(args)
        except Exception:
            from mediator.config import AppConfig
            cfg = AppConfig()
        regs = open_registries(cfg, Path(tmp.name) / "registry.db")
    started = time.perf_counter()
    try:
        with open(args.input, encoding="utf-8-sig", newline="") as src, \
                open(args.output, "w", encoding="utf-8", newline="") as dst:
            counts = link_csv(regs.client, src, dst)
    finally:
        regs.close()
        if tmp:
            tmp.cleanup()
    el = time.perf_counter() - started
    print(f"{counts['rows']} records in {el:.1f} s: {counts['auto']} auto, {counts['candidate']} candidate, "
          f"{counts['new']} new, {counts.get('manual', 0)} manual; {counts['flagged']} flagged", file=sys.stderr)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """Estimate weights from the records of a ``registry link`` CSV, without labels; write them as JSON."""
    from mediator.registry.estimate import estimate_weights
    from mediator.registry.identifiers import IdentifierRules
    from mediator.registry.matching import MatchConfig
    from mediator.registry.model import features_of

    try:
        rc = getattr(_config(args), "registry", None)
    except Exception:
        rc = None
    rules = IdentifierRules(rc.formats if rc else {})
    with open(args.input, encoding="utf-8-sig", newline="") as src:
        feats = [features_of(PersonRecord.from_row(row), rules) for row in csv.DictReader(src)]
    started = time.perf_counter()
    w = estimate_weights(feats, MatchConfig(), max_block=rc.max_block if rc else 200,
                         random_pairs=args.random_pairs, seed=args.seed)
    Path(args.output).write_text(json.dumps(w, indent=1) + "\n", encoding="utf-8")
    print(f"{len(feats)} records, {w['candidate_pairs']} candidate pairs, {w['random_pairs']} random pairs, "
          f"match share {w['p_match']:.3f}, {time.perf_counter() - started:.1f} s; weights (bits):", file=sys.stderr)
    for f, lv in sorted(w["levels"].items()):
        print(f"  {f:10} " + "  ".join(f"{k} {v:+.1f}" for k, v in lv.items()), file=sys.stderr)
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    regs = _open(args)
    started = time.perf_counter()
    try:
        n = regs.client.reindex()
    finally:
        regs.close()
    print(f"{n} records reindexed in {time.perf_counter() - started:.0f} s")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    regs = _open(args)
    try:
        rep = regs.providers.load_file(args.file)
    finally:
        regs.close()
    for p in (rep.problems or [])[:50]:
        print(f"{args.file}: {p}", file=sys.stderr)
    print(f"{rep.loaded} loaded, {rep.malformed_inpe} with a malformed INPE, {rep.skipped} in error, "
          f"{rep.ignored} ignored (not mCSD)")
    return 1 if rep.skipped else 0


def cmd_review(args: argparse.Namespace) -> int:
    regs = _open(args)
    try:
        items = regs.client.review_queue(limit=args.limit)
    finally:
        regs.close()
    if args.json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return 0
    print(f"{'id':>8}  {'score':>6}  {'grade':9}  {'record (source/local id)':32}  candidate")
    for c in items:
        rec = f"{c['record']['source']}/{c['record']['local_id']}"
        print(f"{c['id']:>8}  {c['score']:>6}  {c['grade']:9}  {rec[:32]:32}  {c['candidate']}")
    return 0


def _run(args: argparse.Namespace, fn: str, *a: Any) -> int:
    regs = _open(args)
    try:
        print(json.dumps(getattr(regs.client, fn)(*a), ensure_ascii=False))
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        regs.close()
    return 0


def add_registry_cli(subparsers: Any) -> None:
    """Add ``registry`` and its subcommands to the ``mediator`` command's subparsers."""
    reg = subparsers.add_parser("registry", help="client registry (MPI) and provider registry")
    sub = reg.add_subparsers(dest="registry_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default="config.yaml")
        p.add_argument("--data-dir")
        return p

    p = common(sub.add_parser("link", help="link a CSV of person records; write one output row per record"))
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--into", action="store_true", help="link into the configured registry instead of a fresh one")
    p.set_defaults(func=cmd_link)

    p = common(sub.add_parser("estimate", help="estimate match weights from a CSV of person records, "
                                               "without labels (for registry.weights)"))
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--random-pairs", type=int, default=200_000, help="record pairs drawn at random for u")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_estimate)

    p = common(sub.add_parser("load", help="load professionals/facilities from a CSV or a FHIR Bundle (.json)"))
    p.add_argument("file")
    p.set_defaults(func=cmd_load)

    p = common(sub.add_parser("review", help="list open match candidates"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_review)

    p = common(sub.add_parser("decide", help="decide one candidate: link (same person) or reject"))
    p.add_argument("candidate", type=int)
    p.add_argument("decision", choices=["link", "reject"])
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=lambda a: _run(a, "decide", a.candidate, a.decision, a.actor))

    p = common(sub.add_parser("merge", help="merge golden record FROM into INTO"))
    p.add_argument("source_id")
    p.add_argument("into_id")
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=lambda a: _run(a, "merge", a.source_id, a.into_id, a.actor))

    p = common(sub.add_parser("unmerge", help="undo the last merge of a golden record"))
    p.add_argument("enterprise_id")
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=lambda a: _run(a, "unmerge", a.enterprise_id, a.actor))

    p = common(sub.add_parser("reindex", help="rebuild the blocking index with the current keys "
                                              "(a registry indexed by an older version)"))
    p.set_defaults(func=cmd_reindex)

    p = common(sub.add_parser("stats", help="record and review-queue counts"))
    p.set_defaults(func=lambda a: _run(a, "stats"))
