"""Fellegi–Sunter weights estimated from unlabelled records (``mediator registry estimate``).

The shipped weights are guesses calibrated on the Moroccan synthetic benchmark. A real index (a
hospital's patient file being migrated, a regional registry) has its own error rates: how often a
duplicate's CIN is mistyped, its birth date swapped, its address rewritten. Those can be measured
without a single labelled pair, the way Splink and fastLink do it:

* **u** (how often two *different* people agree at each comparison level) from pairs of records
  drawn at random: nearly all of them are different people;
* **m** (how often the *same* person agrees) and the share of matches among the candidate pairs by
  the EM algorithm (conditional independence), on the pairs blocking brings together, with u
  fixed to the random-pair estimate.

Each field gets a weight per comparison level, ``log2(m/u)`` — agree, one edit, swapped day and
month, partial name, plainly different name… —, written as JSON that ``registry.weights`` points at
(:meth:`~mediator.registry.matching.MatchConfig.with_weights`). A name's agreement keeps its
frequency weight (agreeing on "Mohamed" stays weak), with the estimated ``m``. Thresholds and vetoes
are policy and are not estimated.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from mediator.registry.matching import _FIELDS, MatchConfig, compare
from mediator.registry.model import Features

__all__ = ["candidate_pairs", "comparison_levels", "estimate_weights"]

Pattern = tuple[tuple[str, str], ...]

NAME_PARTS = ("family", "given")
MAX_BITS = 24.0  # no single level weighs more than this (a level never seen among random pairs)


def comparison_levels(a: Features, b: Features, cfg: MatchConfig) -> Pattern:
    """The comparison level of every field both records carry: ``(("birth_date", "swapped"), …)``."""
    s = compare(a, b, cfg)
    return tuple(sorted((k, lvl) for k, (lvl, _) in s.evidence.items() if k in _FIELDS))


def candidate_pairs(feats: Sequence[Features], max_block: int = 200) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, sharing a blocking key held by at most ``max_block`` records."""
    from mediator.registry.registry import blocking_keys

    blocks: dict[str, list[int]] = {}
    for i, f in enumerate(feats):
        for k in blocking_keys(f):
            blocks.setdefault(k, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if 1 < len(members) <= max_block:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
    return pairs


def _level_counts(patterns: Iterable[tuple[Pattern, float]]) -> tuple[dict[str, Counter[str]], Counter[str]]:
    per_level: dict[str, Counter[str]] = {}
    per_field: Counter[str] = Counter()
    for pat, w in patterns:
        for f, lvl in pat:
            per_level.setdefault(f, Counter())[lvl] += w
            per_field[f] += w
    return per_level, per_field


def _em(items: list[tuple[Pattern, int]], m: dict[str, dict[str, float]], u: dict[str, dict[str, float]], p: float,
        iterations: int) -> tuple[dict[str, dict[str, float]], float]:
    """EM for m (per field and level) and the match share p over candidate-pair patterns, u fixed."""
    n = sum(c for _, c in items)
    for _ in range(iterations):
        acc: dict[str, Counter[str]] = {f: Counter() for f in m}
        tot: Counter[str] = Counter()
        total_g = 0.0
        lp, lq = math.log(p), math.log(1 - p)
        for pat, count in items:
            lm, lu = lp, lq
            for f, lvl in pat:
                lm += math.log(m[f][lvl])
                lu += math.log(u[f][lvl])
            g = 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, lu - lm))))
            gw = g * count
            total_g += gw
            for f, lvl in pat:
                acc[f][lvl] += gw
                tot[f] += gw
        p = min(max(total_g / max(n, 1), 1e-6), 1 - 1e-6)
        for f, d in m.items():
            if tot[f] > 0:
                m[f] = {lvl: max(acc[f][lvl] / tot[f], 1e-4) for lvl in d}
    return m, p


def estimate_weights(feats: Sequence[Features], cfg: MatchConfig | None = None, *, max_block: int = 200,
                     random_pairs: int = 200_000, iterations: int = 60, seed: int = 1,
                     labels: set[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Weights per field and level from unlabelled records (see the module docstring).

    ``labels`` (index pairs known to be the same person) replaces EM by counting: m from those
    pairs — a labelled estimate, for comparison. Returns the JSON ``registry.weights`` reads, with
    the figures behind it (``m``, ``u`` per level, the match share among candidate pairs).
    """
    base = replace(cfg or MatchConfig(), vetoes=False, levels={})
    n = len(feats)
    rng = random.Random(seed)
    # u: random pairs
    rand: Counter[Pattern] = Counter()
    for _ in range(random_pairs if n > 1 else 0):
        i, j = rng.randrange(n), rng.randrange(n)
        if i != j:
            rand[comparison_levels(feats[i], feats[j], base)] += 1
    u_lvl, u_n = _level_counts(rand.items())
    # m: EM on the candidate pairs (u fixed)
    cands: Counter[Pattern] = Counter()
    matched: Counter[Pattern] = Counter()
    for i, j in candidate_pairs(feats, max_block):
        pat = comparison_levels(feats[i], feats[j], base)
        cands[pat] += 1
        if labels is not None and ((i, j) in labels or (j, i) in labels):
            matched[pat] += 1
    levels_of: dict[str, set[str]] = {}
    for pat in list(cands) + list(rand):
        for f, lvl in pat:
            levels_of.setdefault(f, set()).add(lvl)
    n_cands = sum(cands.values())
    u_obs: dict[str, dict[str, float]] = {}
    floor: dict[str, float] = {}
    for f, lv in levels_of.items():
        tot = u_n.get(f, 0.0)
        floor[f] = 0.5 / (tot + 0.5 * len(lv))
        u_obs[f] = {lvl: (u_lvl.get(f, Counter()).get(lvl, 0.0) + 0.5) / (tot + 0.5 * len(lv)) for lvl in lv}
    u = {f: dict(d) for f, d in u_obs.items()}
    m: dict[str, dict[str, float]] = {f: {lvl: (0.9 if lvl == "agree" else 0.1 / max(len(lv) - 1, 1))
                                         for lvl in lv} for f, lv in levels_of.items()}
    p = 0.1
    if labels is not None:
        m_lvl, m_n = _level_counts(matched.items())
        m = {f: {lvl: (m_lvl.get(f, Counter()).get(lvl, 0.0) + 0.5) / (m_n.get(f, 0.0) + 0.5 * len(lv))
                 for lvl in lv} for f, lv in levels_of.items()}
        p = sum(matched.values()) / max(n_cands, 1)
    rounds = 1 if labels is not None else 3
    for r in range(rounds):
        if labels is None:
            m, p = _em(list(cands.items()), m, u, p, iterations if r == 0 else iterations // 3)
        # random pairs hold a few true matches (many in a small file): u_obs = (1 - pi) u + pi m, where pi,
        # the match share among all pairs, is the candidate pairs' match share scaled to every pair
        pi = min(p * n_cands / max(n * (n - 1) / 2, 1), 0.5)
        u = {f: {lvl: max((v - pi * m[f][lvl]) / (1 - pi), floor[f]) for lvl, v in d.items()}
             for f, d in u_obs.items()}
    levels: dict[str, dict[str, float]] = {}
    mu: dict[str, dict[str, float]] = {}
    for f, lv in levels_of.items():
        levels[f] = {lvl: round(max(-MAX_BITS, min(MAX_BITS, math.log2(m[f][lvl] / u[f][lvl]))), 3)
                     for lvl in sorted(lv)}
        if "agree" in lv:
            mu[f] = {"m": round(min(m[f]["agree"], 0.999), 6), "u": max(min(u[f]["agree"], 0.999), 1e-9)}
    for part in NAME_PARTS:  # the agreement of a name keeps its frequency weight
        levels.get(part, {}).pop("agree", None)
    return {"mu": mu, "levels": levels, "p_match": round(p, 6),
            "candidate_pairs": sum(cands.values()), "random_pairs": sum(rand.values()),
            "m": {f: {lvl: round(v, 6) for lvl, v in sorted(d.items())} for f, d in m.items()},
            "u": {f: {lvl: v for lvl, v in sorted(d.items())} for f, d in u.items()}}
