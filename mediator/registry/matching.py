"""Scoring two person records: identifiers first, then Fellegi–Sunter weights on demographics.

A comparison yields a total weight (log2 likelihood ratio, in bits) and the evidence per field.
Identifiers are compared first: a well-formed CIN, IDCS, INS or CNSS number that agrees is strong
evidence, one that differs is strong counter-evidence, a one-edit difference is weak evidence (a
typo), and a malformed value never weighs more than :attr:`MatchConfig.malformed_id_agree`.

Demographic weights follow Fellegi–Sunter: agreement on a field weighs ``log2(m/u)`` and
disagreement ``log2((1-m)/(1-u))``. For names, ``u`` is the frequency of that very name in the
registry (agreeing on "Mohammed" is weak evidence, on a rare family name strong); birth dates have
graded levels (transposed day and month, one typed digit, year only). Two thresholds decide:
``auto`` (link without review) and ``review`` (a candidate for an operator).

:func:`estimate_mu` estimates m and u from labelled pairs; :func:`estimate_mu_em` from unlabelled
candidate pairs with the EM algorithm (conditional independence).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from rapidfuzz.distance import Hamming as _Hamming
from rapidfuzz.distance import Indel as _Indel

from mediator.registry.identifiers import PERSON_KINDS, compare_values
from mediator.registry.model import Features
from mediator.registry.names import NameForms, name_similarity

__all__ = ["FieldMU", "MatchConfig", "Score", "compare", "estimate_mu", "estimate_mu_em", "name_freq_key"]


@dataclass(frozen=True)
class FieldMU:
    """m = P(agree | same person), u = P(agree | different people)."""

    m: float
    u: float

    @cached_property
    def agree(self) -> float:
        return math.log2(self.m / self.u)

    @cached_property
    def disagree(self) -> float:
        return math.log2((1 - self.m) / (1 - self.u))


def _default_mu() -> dict[str, FieldMU]:
    return {
        "family": FieldMU(0.95, 0.01),
        "given": FieldMU(0.95, 0.02),
        "birth_date": FieldMU(0.96, 1 / (365.25 * 70)),
        "sex": FieldMU(0.985, 0.5),
        "phone": FieldMU(0.5, 0.05),   # u is high on purpose: a family shares one phone
        "city": FieldMU(0.8, 0.2),
        "cin": FieldMU(0.98, 1e-5),
        "idcs": FieldMU(0.98, 1e-5),
        "ins": FieldMU(0.98, 1e-5),
        "cnss": FieldMU(0.98, 1e-5),
        "address": FieldMU(0.6, 0.01),  # a household shares one address: see MatchConfig.household_cap
        "postcode": FieldMU(0.85, 0.05),
    }


@dataclass
class MatchConfig:
    """Weights and thresholds (bits). Defaults calibrated on the Moroccan synthetic benchmark."""

    mu: dict[str, FieldMU] = field(default_factory=_default_mu)
    auto: float = 24.0
    review: float = 9.0
    name_agree: float = 0.94      # similarity from which two names agree
    name_partial: float = 0.85    # … partly agree (weight scaled down)
    name_max_weight: float = 12.0  # cap: a very rare name still is not an identifier
    name_min_weight: float = 2.0
    name_unlike: float = 0.8      # below this similarity two names are plainly different …
    name_unlike_weight: float = -8.0  # … and weigh this (twins share all but the given name)
    frequency_alpha: float = 200.0  # pseudo-count of the prior u in the frequency estimate
    id_conflict: float = -14.0    # both well formed and different (beyond one edit)
    id_near: float = 3.0          # both well formed, one edit apart
    malformed_id_agree: float = 2.0
    same_source_other_id: float = -3.0  # two local ids of one facility are usually two people
    dob_swapped: float = 7.0      # day and month transposed
    dob_one_edit: float = 6.0     # one digit of YYYYMMDD differs
    dob_year_month: float = 3.0
    dob_year_only: float = 2.0    # one side is a 1 January / mid-year placeholder of the same year
    dob_disagree: float = -12.0
    swap_penalty: float = 1.0     # family and given swapped
    vetoes: bool = True           # given names or sexes that differ keep a pair out of auto (see _veto)
    member_conflict: float = 5.0  # a golden record with a member scoring below this cannot be auto-linked
    address_similar: float = 0.85  # edit similarity from which two addresses partly agree
    household_cap: float | None = 8.0  # most that phone + address + postcode + city agreeing weigh together
    # weight (bits) per field and comparison level, overriding the ones above (estimated weights, see
    # mediator.registry.estimate); a name's "agree" level keeps its frequency weight (with ``mu[part].m``)
    levels: dict[str, dict[str, float]] = field(default_factory=dict)

    def with_mu(self, mu: dict[str, FieldMU]) -> MatchConfig:
        return replace(self, mu={**self.mu, **mu})

    def with_weights(self, weights: dict[str, Any]) -> MatchConfig:
        """This configuration with estimated weights (the JSON :func:`~mediator.registry.estimate.estimate_weights`
        writes: ``{"mu": {field: {"m", "u"}}, "levels": {field: {level: bits}}}``)."""
        mu = {k: FieldMU(float(v["m"]), float(v["u"])) for k, v in (weights.get("mu") or {}).items()}
        levels = {k: {lvl: float(w) for lvl, w in v.items()} for k, v in (weights.get("levels") or {}).items()}
        return replace(self, mu={**self.mu, **mu}, levels={**self.levels, **levels})


@dataclass
class Score:
    """The result of one comparison."""

    weight: float
    evidence: dict[str, tuple[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {k: {"level": lvl, "weight": round(w, 2)} for k, (lvl, w) in self.evidence.items()}


def name_freq_key(n: NameForms) -> str:
    """The key a name is counted under for frequency weights: its consonant skeleton, which puts the
    spelling variants and both scripts of one name together (Fatima, Fatema, فاطمة → FTM); names
    of fewer than two consonants are counted under their cross-script key."""
    if len(n.skeleton) >= 2:
        return n.skeleton
    return n.cross or n.cross_ar


HOUSEHOLD = frozenset({"phone", "address", "postcode", "city"})

FreqFn = Callable[[str, str], float]  # (part, key) -> u estimate


def _name_weight(part: str, sim: float, n: NameForms, cfg: MatchConfig, freq: FreqFn | None) -> tuple[str, float]:
    mu = cfg.mu[part]
    if sim >= cfg.name_agree:
        u = freq(part, name_freq_key(n)) if freq else mu.u
        w = min(cfg.name_max_weight, max(cfg.name_min_weight, math.log2(mu.m / max(u, 1e-9))))
        return "agree", w
    if sim >= cfg.name_partial:
        frac = (sim - cfg.name_partial) / (cfg.name_agree - cfg.name_partial)
        return "partial", 0.6 * frac * min(cfg.name_max_weight, mu.agree)
    if sim < cfg.name_unlike:
        return "unlike", min(mu.disagree, cfg.name_unlike_weight)
    return "disagree", mu.disagree


def _dob_level(a: tuple[int, int, int], b: tuple[int, int, int], cfg: MatchConfig) -> tuple[str, float]:
    if a == b:
        return "agree", cfg.mu["birth_date"].agree
    if a[0] == b[0] and a[1] == b[2] and a[2] == b[1]:
        return "swapped", cfg.dob_swapped
    sa, sb = f"{a[0]:04d}{a[1]:02d}{a[2]:02d}", f"{b[0]:04d}{b[1]:02d}{b[2]:02d}"
    if sum(x != y for x, y in zip(sa, sb, strict=True)) == 1:
        return "one_edit", cfg.dob_one_edit
    if a[0] == b[0]:
        if (a[1], a[2]) in ((1, 1), (7, 1)) or (b[1], b[2]) in ((1, 1), (7, 1)):
            return "year_only", cfg.dob_year_only
        if a[1] == b[1]:
            return "year_month", cfg.dob_year_month
    return "disagree", cfg.dob_disagree


def compare(a: Features, b: Features, cfg: MatchConfig, freq: FreqFn | None = None) -> Score:
    """Compare record ``a`` (the incoming one) with ``b``; missing fields weigh nothing."""
    ev: dict[str, tuple[str, float]] = {}
    # identifiers
    if a.ids and b.ids:
        bids = {}
        for i in b.ids:
            bids.setdefault(i.kind, i)
        for ia in a.ids:
            ib = bids.get(ia.kind)
            if ib is None or ia.kind in ev:
                continue
            level = compare_values(ia.value, ib.value)
            if ia.valid and ib.valid and ia.kind in cfg.mu:
                if level == "exact":
                    ev[ia.kind] = ("agree", cfg.mu[ia.kind].agree)
                elif level == "near":
                    ev[ia.kind] = ("one_edit", cfg.id_near)
                else:
                    ev[ia.kind] = ("disagree", cfg.id_conflict)
            elif level != "differ":
                ev[ia.kind] = ("weak_" + level, cfg.malformed_id_agree)  # a malformed value: never strong
            # a malformed value that differs says nothing
    if a.source and a.source == b.source:
        ev["source"] = ("same_source_other_id", cfg.same_source_other_id)
    # names (straight, then swapped family/given)
    fa, ga, fb, gb = a.family, a.given, b.family, b.given
    fae, gae, fbe, gbe = fa.empty, ga.empty, fb.empty, gb.empty
    fs = name_similarity(fa, fb) if not (fae or fbe) else -1.0
    gs = name_similarity(ga, gb) if not (gae or gbe) else -1.0
    agree = cfg.name_agree
    if (fs < agree or gs < agree) and not (fae or gbe or gae or fbe):
        fs2 = name_similarity(fa, gb)
        if fs2 >= agree:
            gs2 = name_similarity(ga, fb)
            if gs2 >= agree and fs2 + gs2 > max(fs, 0) + max(gs, 0):
                fs, gs = fs2, gs2
                ev["swap"] = ("family_given_swapped", -cfg.swap_penalty)
    if fs >= 0:
        ev["family"] = _name_weight("family", fs, fa, cfg, freq)
    if gs >= 0:
        ev["given"] = _name_weight("given", gs, ga, cfg, freq)
    if a.dob and b.dob:
        ev["birth_date"] = _dob_level(a.dob, b.dob, cfg)
    if a.sex and b.sex:
        mu = cfg.mu["sex"]
        ev["sex"] = ("agree", mu.agree) if a.sex == b.sex else ("disagree", mu.disagree)
    if a.phone and b.phone:
        mu = cfg.mu["phone"]
        ev["phone"] = ("agree", mu.agree) if a.phone[-9:] == b.phone[-9:] else ("disagree", mu.disagree)
    if a.city and b.city:
        mu = cfg.mu["city"]
        ev["city"] = ("agree", mu.agree) if a.city == b.city else ("disagree", mu.disagree)
    if a.address and b.address:
        mu = cfg.mu["address"]
        if a.address == b.address:
            ev["address"] = ("agree", mu.agree)
        elif _Indel.normalized_similarity(a.address.replace(" ", ""),
                                          b.address.replace(" ", "")) >= cfg.address_similar:
            ev["address"] = ("similar", 0.6 * mu.agree)
        else:
            ev["address"] = ("disagree", mu.disagree)
    if a.postcode and b.postcode:
        mu = cfg.mu["postcode"]
        if a.postcode == b.postcode:
            ev["postcode"] = ("agree", mu.agree)
        elif compare_values(a.postcode, b.postcode) == "near" or (
                len(a.postcode) == len(b.postcode) == 4 and _Hamming.distance(a.postcode, b.postcode) == 1):
            ev["postcode"] = ("one_edit", 0.3 * mu.agree)
        else:
            ev["postcode"] = ("disagree", mu.disagree)
    if cfg.levels:
        for k, (lvl, _) in ev.items():
            lw = cfg.levels.get(k)
            if lw and lvl in lw and not (lvl == "agree" and k in ("family", "given")):
                ev[k] = (lvl, lw[lvl])
    weight = sum(w for _, w in ev.values())
    if cfg.household_cap is not None:
        # a household shares phone, address, postcode and city: together they are one piece of
        # evidence (a father and his namesake son must not link on them), not four
        pos = sum(w for k, (_, w) in ev.items() if k in HOUSEHOLD and w > 0)
        if pos > cfg.household_cap:
            weight -= pos - cfg.household_cap
            ev["household"] = ("capped", cfg.household_cap - pos)
    if weight >= cfg.auto and cfg.vetoes:
        veto = _veto(ev)
        if veto:
            weight = cfg.auto - 0.01
            ev["veto"] = (veto, 0.0)
    return Score(weight, ev)


def _veto(ev: dict[str, tuple[str, float]]) -> str:
    """Why a pair above ``auto`` must still be seen by a person ("" when it need not).

    Twins share family name, birth date, phone and address; a child is often registered under a
    parent's CIN. So: different given names or sexes never link automatically, and a given name
    that only partly agrees needs a well-formed identifier that agrees.
    """
    given = ev.get("given", ("", 0.0))[0]
    if given in ("unlike", "disagree"):
        return "given_names_differ"
    if ev.get("sex", ("", 0.0))[0] == "disagree":
        return "sexes_differ"
    if given == "partial" and not any(ev.get(k, ("", 0.0))[0] == "agree" for k in PERSON_KINDS):
        return "given_names_partly_agree"
    return ""


# -- estimation ---------------------------------------------------------------------------------------

_FIELDS = ("family", "given", "birth_date", "sex", "phone", "city", "address", "postcode", *PERSON_KINDS)


def _agreements(a: Features, b: Features, cfg: MatchConfig) -> dict[str, bool]:
    """Per field: True (agree), False (disagree); fields missing on either side are left out."""
    s = compare(a, b, cfg)
    return {k: lvl == "agree" for k, (lvl, _) in s.evidence.items() if k in _FIELDS}  # unlike counts as disagree


def estimate_mu(pairs: Iterable[tuple[Features, Features, bool]], cfg: MatchConfig | None = None,
                smoothing: float = 1.0) -> dict[str, FieldMU]:
    """m and u per field from labelled pairs ``(a, b, is_match)`` (Laplace-smoothed counts)."""
    cfg = cfg or MatchConfig()
    counts: dict[str, list[float]] = {f: [0, 0, 0, 0] for f in _FIELDS}  # m_agree, m_n, u_agree, u_n
    for a, b, same in pairs:
        for f, agree in _agreements(a, b, cfg).items():
            c = counts[f]
            if same:
                c[0] += agree
                c[1] += 1
            else:
                c[2] += agree
                c[3] += 1
    out = {}
    for f, (ma, mn, ua, un) in counts.items():
        if mn and un:
            m = (ma + smoothing) / (mn + 2 * smoothing)
            u = (ua + smoothing) / (un + 2 * smoothing)
            out[f] = FieldMU(min(m, 0.999), max(min(u, 0.999), 1e-7))
    return out


def estimate_mu_em(pairs: Iterable[tuple[Features, Features]], cfg: MatchConfig | None = None,
                   iterations: int = 50, p_match: float = 0.1) -> tuple[dict[str, FieldMU], float]:
    """m, u per field and the match proportion from unlabelled candidate pairs (EM, conditional independence).

    ``pairs`` should come out of blocking (candidate pairs), where matches are not vanishingly rare.
    """
    cfg = cfg or MatchConfig()
    vectors = [_agreements(a, b, cfg) for a, b in pairs]
    fields = sorted({f for v in vectors for f in v})
    m = {f: cfg.mu[f].m if f in cfg.mu else 0.9 for f in fields}
    u = {f: max(cfg.mu[f].u, 0.01) if f in cfg.mu else 0.1 for f in fields}
    p = p_match
    for _ in range(iterations):
        sm = {f: [0.0, 0.0] for f in fields}
        su = {f: [0.0, 0.0] for f in fields}
        total_g = 0.0
        for v in vectors:
            lm, lu = math.log(p), math.log(1 - p)
            for f, agree in v.items():
                lm += math.log(m[f] if agree else 1 - m[f])
                lu += math.log(u[f] if agree else 1 - u[f])
            g = 1.0 / (1.0 + math.exp(min(700.0, lu - lm)))
            total_g += g
            for f, agree in v.items():
                sm[f][0] += g * agree
                sm[f][1] += g
                su[f][0] += (1 - g) * agree
                su[f][1] += 1 - g
        p = min(max(total_g / max(len(vectors), 1), 1e-6), 1 - 1e-6)
        for f in fields:
            if sm[f][1] > 0:
                m[f] = min(max(sm[f][0] / sm[f][1], 0.01), 0.999)
            if su[f][1] > 0:
                u[f] = min(max(su[f][0] / su[f][1], 1e-7), 0.99)
    return {f: FieldMU(m[f], u[f]) for f in fields}, p
