"""Shared by the registry benchmarks: turn link results into predicted duplicate pairs."""

from __future__ import annotations

from itertools import combinations
from typing import Any


def predicted_pairs(reg: Any, golden: dict[str, str]) -> tuple[set[frozenset[str]], set[frozenset[str]]]:
    """(pairs linked to one golden record, pairs waiting in the review queue) from ``local id -> golden id``."""
    by_golden: dict[str, list[str]] = {}
    for rid, g in golden.items():
        by_golden.setdefault(g, []).append(rid)
    auto = {frozenset(p) for m in by_golden.values() for p in combinations(m, 2)}
    review: set[frozenset[str]] = set()
    for c in reg.review_queue(limit=10**9):
        src = reg.store.source_by_id(c["record"]["record_id"])
        for other in by_golden.get(c["candidate"], []):
            review.add(frozenset((src.local_id, other)))
    return auto, review
