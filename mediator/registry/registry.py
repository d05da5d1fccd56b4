"""The client registry (MPI): link source records to golden (enterprise) identities.

:meth:`ClientRegistry.link` is the one entry point the pipeline and the bulk loader use: the
record is kept as sent, compared with the records that share a blocking key, and

* linked automatically to the best golden record when its weight reaches ``auto`` (``link="auto"``),
* given a golden record of its own and queued for review against each golden record whose weight
  reaches ``review`` (``link="candidate"``),
* otherwise given a new golden record (``link="new"``).

A record sent again by the same source (same local id) is updated in place and keeps its link, so
that manual decisions are never undone by re-matching; "not the same person" decisions are kept
in ``not_match`` and respected by every later match. Merges (manual or ADT^A40) move source records
between golden records, are audited with what moved, and can be undone with :meth:`unmerge`.

Only identifiers and counts are logged, never names or dates.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from mediator.randomness import random_bytes
from mediator.registry.identifiers import PERSON_KINDS, IdentifierRules
from mediator.registry.matching import MatchConfig, Score, compare, name_freq_key
from mediator.registry.model import Features, PersonRecord, features_of
from mediator.registry.names import NameForms, name_forms, name_similarity
from mediator.registry.store import RegistryStore, SourceRow

__all__ = ["ClientRegistry", "LinkResult", "MatchHit", "RegistryError", "Survivorship", "blocking_keys"]

log = structlog.get_logger(__name__)

SURVIVOR_FIELDS = ("family", "given", "family_ar", "given_ar", "birth_date", "sex", "phone", "city", "address",
                   "postcode")


class RegistryError(Exception):
    """A review or merge operation that cannot be applied (unknown record, wrong state)."""


@dataclass
class LinkResult:
    """Where one source record landed."""

    enterprise_id: str
    link: str                      # auto | manual | candidate | new
    score: float | None            # best weight (bits) against an existing golden record
    evidence: dict[str, Any] = field(default_factory=dict)
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (golden id, weight) awaiting review
    flags: list[str] = field(default_factory=list)
    record_id: int = 0
    updated: bool = False          # the source had sent this local id before

    def to_json(self) -> dict[str, Any]:
        return {"enterprise_id": self.enterprise_id, "link": self.link,
                "score": None if self.score is None else round(self.score, 2), "evidence": self.evidence,
                "candidates": [{"enterprise_id": g, "score": round(s, 2)} for g, s in self.candidates],
                "flags": self.flags, "updated": self.updated}


@dataclass
class MatchHit:
    """One golden record scored against a query record."""

    enterprise_id: str
    score: float
    grade: str  # certain | probable | possible
    evidence: dict[str, Any]
    data: dict[str, Any]


@dataclass
class Survivorship:
    """How golden record fields are chosen from the linked source records.

    ``rules`` maps a field (family, given, family_ar, given_ar, birth_date, sex, phone, city,
    identifiers) to ``most_frequent`` (ties: most recent), ``most_recent`` or ``source_priority``
    (first source in ``source_priority`` that has a value, then most frequent).
    """

    rules: dict[str, str] = field(default_factory=dict)
    source_priority: list[str] = field(default_factory=list)
    default: str = "most_frequent"

    def synthesise(self, rows: list[tuple[str, dict[str, Any], float]], rules: IdentifierRules) -> dict[str, Any]:
        """``rows``: (source, raw record, updated time) of the active source records."""
        out: dict[str, Any] = {}
        for f in SURVIVOR_FIELDS:
            vals = [(src, str(raw.get(f) or "").strip(), t) for src, raw, t in rows]
            out[f] = self._pick(f, [v for v in vals if v[1]])
        ids: dict[str, Any] = {}
        for kind in PERSON_KINDS:
            vals = []
            for src, raw, t in rows:
                v = (raw.get("identifiers") or {}).get(kind)
                if v:
                    ident = rules.normalize(kind, v)
                    if ident.valid:
                        vals.append((src, ident.value, t))
            picked = self._pick("identifiers", vals)
            if picked:
                ids[kind] = picked
        out["identifiers"] = ids
        return out

    def _pick(self, f: str, vals: list[tuple[str, str, float]]) -> str:
        if not vals:
            return ""
        rule = self.rules.get(f, self.default)
        if rule == "most_recent":
            return max(vals, key=lambda v: v[2])[1]
        if rule == "source_priority":
            for src in self.source_priority:
                for s, v, _ in vals:
                    if s == src:
                        return v
        if len(vals) == 1:
            return vals[0][1]
        counts: dict[str, int] = {}
        latest: dict[str, float] = {}
        for _, v, t in vals:
            counts[v] = counts.get(v, 0) + 1
            if t >= latest.get(v, t):
                latest[v] = t
        return max(counts, key=lambda v: (counts[v], latest[v]))


def _consonants(cross: str) -> str:
    out, prev = [], ""
    for ch in cross:
        if ch in "UI" or ch == prev:
            continue
        out.append(ch)
        prev = ch
    return "".join(out)


def _block_names(n: NameForms) -> set[str]:
    """Blocking forms of a name: consonant skeletons (cross keys when the skeleton is under 2 letters)."""
    out = set()
    for cross in (n.cross, n.cross_ar, n.cross_alt):
        if cross:
            sk = _consonants(cross)
            out.add(sk if len(sk) >= 2 else cross)
    return out


def blocking_keys(f: Features) -> set[str]:
    """Every blocking key stored for a record.

    ``i:``/``x:`` identifiers (well formed / malformed), ``p:`` phone, ``fy:`` family + birth year +
    first two consonants of the given name (common family names stay selective; an empty year when
    the birth date is unknown), ``gd:`` given + birth date, ``ds:`` birth date + sex + first
    consonant of either name, ``fm:`` both names in either order + day and month (a mistyped year;
    empty without a birth date). Searching by family name scans the ``fy:<family>:`` range and a
    record without a birth date scans ``fm:<names>:``, so no key is stored for those alone: every
    key is a random write into the block index, the most of what a link costs to commit.
    """
    keys: set[str] = set()
    for i in f.ids:
        if i.value:
            keys.add(f"{'i' if i.valid else 'x'}:{i.kind}:{i.value}")
    fams, givs = _block_names(f.family), _block_names(f.given)
    dob = f.dob_text()
    year = f"{f.year}" if f.year else ""
    initials = {g[:2] for g in givs} or {""}
    for s in fams:
        for ini in initials:
            keys.add(f"fy:{s}:{year}:{ini}")
        for g in givs:
            a, b = sorted((s, g))
            keys.add(f"fm:{a}|{b}:{dob[5:]}")
    if dob:
        for g in givs:
            keys.add(f"gd:{g}:{dob}")
        # birth date + sex + the first consonant of the family (f) or the given (g) name: a typo
        # anywhere else in both names (a swap of the two is found through fm:)
        for ini in {"f" + n[:1] for n in fams} | {"g" + n[:1] for n in givs} or {""}:
            keys.add(f"ds:{dob}:{f.sex}:{ini}")
    if f.phone:
        keys.add(f"p:{f.phone[-9:]}")
    return keys


BLOCK_KEYS_VERSION = "2"


def query_keys(f: Features, keys: set[str], legacy: bool = False) -> tuple[list[str], list[str]]:
    """``(exact keys, key prefixes)`` a record is matched through.

    With a birth date: its stored keys. Without: identifiers, phone, family + initial, and every
    record with both names whatever its birth date (the ``fm:<names>:`` range). ``legacy``: also the
    keys of a registry indexed before version 2 (``fg:`` both names, ``ds:`` with either initial) —
    until ``mediator registry reindex``.
    """
    exact, prefixes = [], []
    for k in keys:
        if not f.dob and k.startswith("fm:"):
            prefixes.append(k)
            if legacy:
                exact.append("fg:" + k[3:-1])
            continue
        exact.append(k)
        if legacy and k.startswith("ds:"):
            exact.append(k[:-2] + k[-1:] if k[-2] in "fg" else k)
    return exact, prefixes


def new_enterprise_id() -> str:
    """16 hex digits: the time in seconds, then 32 random bits. Ids made together sort together, so
    a new golden record (and its entry in the source→golden index) lands on the last pages of the
    table instead of a random one: fewer pages to write per link."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{random_bytes(4).hex()}"


class ClientRegistry:
    """The built-in client registry on one SQLite file (thread-safe; sync calls)."""

    def __init__(self, path: str | Path, *, match: MatchConfig | None = None, rules: IdentifierRules | None = None,
                 survivorship: Survivorship | None = None, max_block: int = 200, synchronous: str = "NORMAL") -> None:
        self.store = RegistryStore(path, synchronous=synchronous)
        self.cfg = match or MatchConfig()
        self.rules = rules or IdentifierRules()
        self.survivorship = survivorship or Survivorship()
        self.max_block = max_block
        self._lock = threading.RLock()
        self._freq: dict[tuple[str, str], int] = {(p, k): n for p, k, n in self.store.name_freqs()}
        self._features: OrderedDict[int, Features] = OrderedDict()  # parsed features of hot records (LRU)
        self.features_cache = 50_000
        self._n = self.store.count_sources()
        version = self.store.meta("block_keys")
        if not version and self._n == 0:
            self.store.set_meta("block_keys", version := BLOCK_KEYS_VERSION)
        self._legacy_keys = version != BLOCK_KEYS_VERSION

    def close(self) -> None:
        with self._lock:
            self.store.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many operations in one transaction (bulk loads)."""
        with self._lock, self.store.transaction():
            yield

    def reindex(self, chunk: int = 20_000) -> int:
        """Rebuild the blocking index with the current keys (a registry indexed before version 2);
        one transaction: the registry stays usable, with the old keys, until it commits. Returns
        the number of records indexed."""
        with self._lock, self.store.transaction():
            n = self.store.rebuild_blocks((sid, blocking_keys(Features.from_json(orjson.loads(blob))))
                                          for sid, blob in self.store.all_features(chunk))
            self.store.set_meta("block_keys", BLOCK_KEYS_VERSION)
        self._legacy_keys = False
        return n

    # -- frequencies --------------------------------------------------------------------------------
    def _u(self, part: str, key: str) -> float:
        u0 = self.cfg.mu[part].u
        alpha = self.cfg.frequency_alpha
        return (self._freq.get((part, key), 0) + alpha * u0) / (self._n + alpha)

    def _count_names(self, f: Features, delta: int) -> None:
        items = [("family", name_freq_key(f.family)), ("given", name_freq_key(f.given))]
        items = [(p, k) for p, k in items if k]
        for it in items:
            self._freq[it] = self._freq.get(it, 0) + delta
        self.store.bump_names(items, delta)
        self._n += delta

    # -- matching -----------------------------------------------------------------------------------
    def _feats(self, sid: int, blob: bytes) -> Features:
        f = self._features.get(sid)
        if f is None:
            f = Features.from_json(orjson.loads(blob))
            self._features[sid] = f
            if len(self._features) > self.features_cache:
                self._features.popitem(last=False)
        return f

    def _candidate_rows(self, feats: Features, keys: set[str]) -> list[tuple[int, str, bytes]]:
        """``(id, golden, features)`` of the active records sharing a query key with ``feats``."""
        sids: set[int] = set()
        limit = self.max_block
        exact, prefixes = query_keys(feats, keys, self._legacy_keys)
        for members in self.store.blocks_members(exact, limit + 1).values():
            if len(members) <= limit:
                sids.update(members)
        for prefix in prefixes:
            members = self.store.prefix_members(prefix, limit + 1)
            if len(members) <= limit:
                sids.update(members)
        return self.store.match_rows(sorted(sids)) if sids else []

    def _score_goldens(self, feats: Features, rows: list[tuple[int, str, bytes]], exclude: set[str],
                       skip_sid: int = 0) -> list[tuple[str, Score]]:
        best: dict[str, Score] = {}
        conflict: set[str] = set()
        freq = self._u
        for sid, golden, blob in rows:
            if sid == skip_sid or golden in exclude:
                continue
            s = compare(feats, self._feats(sid, blob), self.cfg, freq)
            if any(lvl == "disagree" and k in PERSON_KINDS for k, (lvl, _) in s.evidence.items()):
                conflict.add(golden)
            cur = best.get(golden)
            if cur is None or s.weight > cur.weight:
                best[golden] = s
        out = []
        for g, s in best.items():
            if g in conflict and not any(lvl == "disagree" and k in PERSON_KINDS for k, (lvl, _) in s.evidence.items()):
                s = Score(s.weight + self.cfg.id_conflict,
                          {**s.evidence, "linked_record_identifier": ("disagree", self.cfg.id_conflict)})
            out.append((g, s))
        out.sort(key=lambda x: -x[1].weight)
        return out

    def _check_members(self, feats: Features, scored: list[tuple[str, Score]],
                       members: dict[str, list[SourceRow]] | None = None) -> list[tuple[str, Score]]:
        """A golden record reaching ``auto`` must not conflict with any of its members (no chaining).

        Matching takes the best member; a member with missing fields can make a bridge between two
        people, so every member of a golden record above ``auto`` is compared and the weakest one,
        if it falls below ``member_conflict``, caps the golden record's score under ``auto``.
        """
        cfg = self.cfg
        out = []
        for gid, s in scored:
            if s.weight >= cfg.auto:
                active = [r for r in self.store.sources_of_golden(gid) if r.status == "active"]
                if members is not None:
                    members[gid] = active
                worst = min((compare(feats, self._feats(r.id, r.features), cfg, self._u).weight for r in active),
                            default=s.weight)
                if worst < cfg.member_conflict:
                    s = Score(min(s.weight, cfg.auto - 0.01),
                              {**s.evidence, "weakest_member": ("conflict", round(worst, 2))})
            out.append((gid, s))
        out.sort(key=lambda x: -x[1].weight)
        return out

    def link(self, rec: PersonRecord, actor: str = "system") -> LinkResult:
        """Store ``rec`` (as sent) and link it; see the module docstring for the outcomes."""
        feats = features_of(rec, self.rules)
        keys = blocking_keys(feats)
        raw = rec.to_json()
        with self._lock, self.store.transaction():
            if rec.source and rec.local_id:
                existing = self.store.source_by_key(rec.source, rec.local_id)
                if existing is not None:
                    return self._update(existing, feats, keys, raw)
            exclude = self.store.not_matches(rec.source, rec.local_id) if rec.source and rec.local_id else set()
            scored = self._score_goldens(feats, self._candidate_rows(feats, keys), exclude)
            cfg = self.cfg
            members: dict[str, list[SourceRow]] = {}
            scored = self._check_members(feats, scored, members)
            top = scored[0] if scored else None
            local_id = rec.local_id or random_bytes(8).hex()
            if top and top[1].weight >= cfg.auto and (len(scored) == 1 or scored[1][1].weight < cfg.auto):
                gid, score = top
                sid = self.store.insert_source(rec.source, local_id, gid, "auto", score.weight, feats.to_json(),
                                               raw, feats.flags)
                link, cands = "auto", []
                self.store.audit(actor, "auto-link", sid, gid, {"score": round(score.weight, 2)})
                known = members.get(gid)
                self._refresh_golden(gid, None if known is None else
                                     [(r.source, r.raw_json()) for r in known] + [(rec.source, raw)])
            else:
                gid = self._new_golden(raw)
                review = [(g, s) for g, s in scored if s.weight >= cfg.review][:5]
                link = "candidate" if review else "new"
                sid = self.store.insert_source(rec.source, local_id, gid, link, top[1].weight if top else None,
                                               feats.to_json(), raw, feats.flags)
                for g, s in review:
                    self.store.add_candidate(sid, g, s.weight, s.to_json())
                cands = [(g, s.weight) for g, s in review]
                self.store.audit(actor, link, sid, gid, {"candidates": [[g, round(w, 2)] for g, w in cands]}
                                 if cands else None)
                score = top[1] if top else None
            self.store.add_blocks(sid, keys)
            self._count_names(feats, 1)
        return LinkResult(gid, link, score.weight if score else None, score.to_json() if score else {}, cands,
                          feats.flags, sid)

    def link_many(self, records: list[PersonRecord], actor: str = "system") -> list[LinkResult | Exception]:
        """Link several records in one transaction (group commit), in order; one failing record does
        not fail the others (its exception is returned in its place)."""
        out: list[LinkResult | Exception] = []
        with self._lock, self.store.transaction():
            for rec in records:
                try:
                    with self.store.savepoint():
                        out.append(self.link(rec, actor))
                except Exception as exc:  # a bug on one record must not lose the batch
                    out.append(exc)
        return out

    def _update(self, row: SourceRow, feats: Features, keys: set[str], raw: dict[str, Any]) -> LinkResult:
        old = Features.from_json(row.features_json())
        self._features.pop(row.id, None)
        self.store.remove_blocks(row.id, blocking_keys(old) - keys)
        self.store.add_blocks(row.id, keys)
        self._count_names(old, -1)
        self._count_names(feats, 1)
        self.store.update_source_data(row.id, feats.to_json(), raw, feats.flags)
        self._refresh_golden(row.golden)
        cands = [(g, s) for _, g, s in self.store.candidates_of(row.id)]
        return LinkResult(row.golden, row.link, row.score, {}, cands, feats.flags, row.id, updated=True)

    def _new_golden(self, raw: dict[str, Any]) -> str:
        ids = {}
        for kind, v in (raw.get("identifiers") or {}).items():
            ident = self.rules.normalize(kind, v)
            if ident.valid:
                ids[kind] = ident.value
        data = {f: raw.get(f, "") for f in SURVIVOR_FIELDS}
        data["identifiers"] = ids
        while True:
            gid = new_enterprise_id()
            try:
                self.store.insert_golden(gid, data)
                return gid
            except sqlite3.IntegrityError:  # the same second and 32 random bits: draw again
                continue

    def _refresh_golden(self, gid: str, active: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        """Synthesise a golden record from its active members (``(source, raw)`` in id order, read when not given)."""
        rows = active if active is not None else [
            (r.source, r.raw_json()) for r in self.store.sources_of_golden(gid) if r.status == "active"]
        data = self.survivorship.synthesise([(src, raw, 0.0) for src, raw in rows], self.rules)
        data["identifiers"] = data.get("identifiers", {})
        if rows:
            self.store.set_golden(gid, data=data)
        else:
            self.store.set_golden(gid, status="retired")

    def match(self, rec: PersonRecord, limit: int = 10, min_score: float | None = None) -> list[MatchHit]:
        """Score ``rec`` against the registry without storing it ($match)."""
        feats = features_of(rec, self.rules)
        with self._lock:
            scored = self._score_goldens(feats, self._candidate_rows(feats, blocking_keys(feats)), set())
            floor = self.cfg.review if min_score is None else min_score
            hits = []
            for gid, s in scored[:limit]:
                if s.weight < floor:
                    break
                g = self.store.golden(gid)
                hits.append(MatchHit(gid, s.weight, self.grade(s.weight), s.to_json(), g[2] if g else {}))
        return hits

    def grade(self, weight: float) -> str:
        """FHIR match-grade of a weight: certain (auto), probable (review), possible (below review)."""
        if weight >= self.cfg.auto:
            return "certain"
        if weight >= self.cfg.review:
            return "probable"
        return "possible"

    def probability(self, weight: float) -> float:
        """A 0..1 score for FHIR ``search.score``: 0.5 at the review threshold, ~0.99 at auto."""
        mid, span = self.cfg.review, max(self.cfg.auto - self.cfg.review, 1.0)
        return round(1.0 / (1.0 + math.exp(-(weight - mid) * 4.6 / span)), 4)

    # -- reads --------------------------------------------------------------------------------------
    def current(self, gid: str) -> str | None:
        """Follow merges to the active golden record id (``None`` when unknown)."""
        with self._lock:
            seen = set()
            while gid not in seen:
                seen.add(gid)
                g = self.store.golden(gid)
                if g is None:
                    return None
                status, into, _ = g
                if status in ("merged", "retired") and into:
                    gid = into
                    continue
                return gid
            return gid

    def golden(self, gid: str) -> dict[str, Any] | None:
        """A golden record: its data, status and the source records linked to it."""
        with self._lock:
            g = self.store.golden(gid)
            if g is None:
                return None
            status, into, data = g
            sources = [{"source": r.source, "local_id": r.local_id, "link": r.link, "status": r.status,
                        "score": r.score} for r in self.store.sources_of_golden(gid)]
        return {"enterprise_id": gid, "status": status, "merged_into": into, "data": data, "sources": sources}

    def source_record(self, source: str, local_id: str) -> dict[str, Any] | None:
        with self._lock:
            r = self.store.source_by_key(source, local_id)
            if r is None:
                return None
            return {"record_id": r.id, "source": r.source, "local_id": r.local_id, "enterprise_id": r.golden,
                    "link": r.link, "score": r.score, "status": r.status, "record": r.raw_json()}

    def pix(self, kind: str, value: str, source: str | None = None) -> dict[str, Any] | None:
        """Cross-reference: the golden record holding identifier ``kind``/``value`` and every identifier it has.

        ``kind == "ipp"`` looks ``value`` up as a local id of ``source``; ``kind == "enterprise"`` takes
        the enterprise id itself. Returns ``{"enterprise_id", "ipp": [(source, local_id)], "ids": {kind: [values]}}``.
        """
        with self._lock:
            gid: str | None = None
            if kind == "enterprise":
                gid = self.current(value)
            elif kind == "ipp":
                r = self.store.source_by_key(source or "", value)
                gid = r.golden if r else None
            else:
                v = self.rules.normalize(kind, value)
                for prefix in ("i", "x"):
                    sids = self.store.block_members(f"{prefix}:{kind}:{v.value}", 50)
                    rows = self.store.sources_by_ids(sids)
                    goldens = {r.golden for r in rows}
                    if len(goldens) == 1:
                        gid = goldens.pop()
                        break
                    if len(goldens) > 1:
                        return {"enterprise_id": None, "ambiguous": sorted(goldens), "ipp": [], "ids": {}}
            if gid is None:
                return None
            rows = self.store.sources_of_golden(gid)
            ids: dict[str, set[str]] = {}
            for r in rows:
                f = Features.from_json(r.features_json())
                for i in f.ids:
                    if i.valid:
                        ids.setdefault(i.kind, set()).add(i.value)
            return {"enterprise_id": gid, "ipp": [(r.source, r.local_id) for r in rows if r.source],
                    "ids": {k: sorted(v) for k, v in ids.items()}}

    def search(self, *, family: str | None = None, given: str | None = None, birth_date: str | None = None,
               sex: str | None = None, identifier: tuple[str, str] | None = None,
               ipp: tuple[str, str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """PDQm-style demographic search over golden records (names compared like matching does)."""
        from mediator.registry.model import parse_birth_date
        with self._lock:
            sids: set[int] = set()
            if ipp:
                r = self.store.source_by_key(*ipp)
                sids = {r.id} if r else set()
            elif identifier:
                v = self.rules.normalize(identifier[0], identifier[1])
                sids = set(self.store.block_members(f"i:{v.kind}:{v.value}", 1000)) | set(
                    self.store.block_members(f"x:{v.kind}:{v.value}", 1000))
            elif family:
                for k in _block_names(name_forms(family)):
                    sids.update(self.store.prefix_members(f"fy:{k}:", 20000))
                    sids.update(self.store.block_members(f"f:{k}", 20000))  # registries built before 0.2
            elif birth_date:
                dob = parse_birth_date(birth_date)
                if dob:
                    d = f"{dob[0]:04d}-{dob[1]:02d}-{dob[2]:02d}"
                    for s in ("M", "F", ""):
                        for k in self.store.keys_with_prefix(f"ds:{d}:{s}:", 200):
                            sids.update(self.store.block_members(k, 20000))
            else:
                return []
            qf = name_forms(family) if family else None
            qg = name_forms(given) if given else None
            qd = parse_birth_date(birth_date) if birth_date else None
            if birth_date and qd is None:
                return []
            qs = {"male": "M", "female": "F", "m": "M", "f": "F"}.get((sex or "").lower(), "") if sex else ""
            out: dict[str, dict[str, Any]] = {}
            for r in self.store.sources_by_ids(sorted(sids)):
                if r.golden in out:
                    continue
                f = Features.from_json(r.features_json())
                if qf and name_similarity(qf, f.family) < 0.85:
                    continue
                if qg and name_similarity(qg, f.given) < 0.85:
                    continue
                if qd and f.dob != qd:
                    continue
                if qs and f.sex != qs:
                    continue
                g = self.store.golden(r.golden)
                out[r.golden] = {"enterprise_id": r.golden, "data": g[2] if g else {}}
                if len(out) >= limit:
                    break
            return list(out.values())

    # -- review queue -------------------------------------------------------------------------------
    def review_queue(self, status: str = "open", limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for cid, sid, gid, score, evidence, st, created, decided, by in self.store.candidates(status, limit, after):
                r = self.store.source_by_id(sid)
                out.append({"id": cid, "record": {"record_id": sid, "source": r.source if r else None,
                                                  "local_id": r.local_id if r else None,
                                                  "enterprise_id": r.golden if r else None},
                            "candidate": gid, "score": round(score, 2), "grade": self.grade(score),
                            "evidence": orjson.loads(evidence) if evidence else {}, "status": st,
                            "created": created, "decided": decided, "decided_by": by})
            return out

    def decide(self, candidate_id: int, decision: str, actor: str) -> dict[str, Any]:
        """Review decision on one candidate: ``link`` (same person) or ``reject`` (not the same person)."""
        with self._lock, self.store.transaction():
            c = self.store.candidate(candidate_id)
            if c is None:
                raise RegistryError(f"candidate {candidate_id} not found")
            cid, sid, gid, *_rest = c
            if c[5] != "open":
                raise RegistryError(f"candidate {candidate_id} is already {c[5]}")
            r = self.store.source_by_id(sid)
            assert r is not None
            if decision == "link":
                self._move(r, gid, actor, "link")
                self.store.close_candidates(sid, "accepted", actor, gid)
                self.store.close_candidates(sid, "closed", actor)
            elif decision == "reject":
                self.store.add_not_match(r.source, r.local_id, gid)
                self.store.close_candidates(sid, "rejected", actor, gid)
                if not self.store.candidates_of(sid):
                    self.store.set_link(sid, r.golden, "manual")
                self.store.audit(actor, "reject", sid, gid, {"candidate": cid})
            else:
                raise RegistryError(f"unknown decision {decision!r} (link or reject)")
            r2 = self.store.source_by_id(sid)
            return {"candidate": cid, "decision": decision, "enterprise_id": r2.golden if r2 else None}

    def _move(self, r: SourceRow, gid: str, actor: str, action: str) -> None:
        if self.store.golden(gid) is None:
            raise RegistryError(f"golden record {gid} not found")
        old = r.golden
        self.store.set_link(r.id, gid, "manual")
        self.store.audit(actor, action, r.id, gid, {"from": old, "to": gid, "from_link": r.link})
        self._refresh_golden(gid)
        if old != gid:
            self._refresh_golden(old)
            if self.store.golden(old) and self.store.golden(old)[0] == "retired":  # type: ignore[index]
                self.store.set_golden(old, merged_into=gid)

    def _row(self, source: str, local_id: str) -> SourceRow:
        r = self.store.source_by_key(source, local_id)
        if r is None:
            raise RegistryError(f"no record {local_id!r} from source {source!r}")
        return r

    def link_record(self, source: str, local_id: str, gid: str, actor: str) -> dict[str, Any]:
        """Manual link: the source record belongs to golden record ``gid`` (sticky)."""
        with self._lock, self.store.transaction():
            r = self._row(source, local_id)
            self._move(r, gid, actor, "link")
            self.store.close_candidates(r.id, "closed", actor)
            return {"enterprise_id": gid, "link": "manual"}

    def unlink(self, source: str, local_id: str, actor: str) -> dict[str, Any]:
        """Manual unlink: the record is not its golden record's person; it gets a golden record of its own."""
        with self._lock, self.store.transaction():
            r = self._row(source, local_id)
            old = r.golden
            gid = self._new_golden(r.raw_json())
            self.store.add_not_match(source, local_id, old)
            self.store.set_link(r.id, gid, "manual")
            self.store.audit(actor, "unlink", r.id, gid, {"from": old, "to": gid, "from_link": r.link})
            self._refresh_golden(gid)
            self._refresh_golden(old)
            return {"enterprise_id": gid, "link": "manual", "previous": old}

    def merge(self, from_gid: str, into_gid: str, actor: str, action: str = "merge",
              detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Move every source record of ``from_gid`` into ``into_gid``; ``from_gid`` is retired (reversible)."""
        with self._lock, self.store.transaction():
            if from_gid == into_gid:
                raise RegistryError("cannot merge a golden record into itself")
            for g in (from_gid, into_gid):
                got = self.store.golden(g)
                if got is None:
                    raise RegistryError(f"golden record {g} not found")
                if got[0] != "active":
                    raise RegistryError(f"golden record {g} is {got[0]}")
            moved = []
            for r in self.store.sources_of_golden(from_gid):
                moved.append([r.id, r.link])
                self.store.set_link(r.id, into_gid, "manual")
            self.store.set_golden(from_gid, status="merged", merged_into=into_gid)
            aid = self.store.audit(actor, action, None, from_gid, {"into": into_gid, "moved": moved, **(detail or {})})
            self.store.audit(actor, action + "-target", None, into_gid, {"from": from_gid, "audit": aid})
            self._refresh_golden(into_gid)
            log.info("registry.merge", action=action, moved=len(moved))
            return {"enterprise_id": into_gid, "merged": from_gid, "moved": len(moved), "audit": aid}

    def unmerge(self, gid: str, actor: str) -> dict[str, Any]:
        """Undo the last merge of ``gid`` (the golden record that was merged away)."""
        with self._lock, self.store.transaction():
            entry = self.store.last_merge(gid)
            got = self.store.golden(gid)
            if entry is None or got is None or got[0] != "merged":
                raise RegistryError(f"golden record {gid} has no merge to undo")
            detail = orjson.loads(entry[6])
            into = detail["into"]
            for sid, link in detail["moved"]:
                r = self.store.source_by_id(sid)
                if r is not None and r.golden == into:
                    self.store.set_link(sid, gid, link)
                    if r.status == "merged":
                        self.store.set_source_status(sid, "active")
            self.store.set_golden(gid, status="active", merged_into=None)
            self.store.audit(actor, "unmerge", None, gid, {"from": into, "audit": entry[0]})
            self._refresh_golden(gid)
            self._refresh_golden(into)
            return {"enterprise_id": gid, "restored": len(detail["moved"]), "from": into}

    def merge_sources(self, source: str, prior_local_id: str, surviving_local_id: str, actor: str) -> dict[str, Any]:
        """ADT^A40 from ``source``: ``prior_local_id`` was merged into ``surviving_local_id``."""
        with self._lock, self.store.transaction():
            prior = self._row(source, prior_local_id)
            survivor = self._row(source, surviving_local_id)
            result: dict[str, Any] = {"enterprise_id": survivor.golden}
            if prior.golden != survivor.golden:
                result = self.merge(prior.golden, survivor.golden, actor, action="merge-a40",
                                    detail={"source": source, "prior": prior_local_id, "survivor": surviving_local_id})
            else:
                self.store.audit(actor, "merge-a40", prior.id, survivor.golden,
                                 {"source": source, "prior": prior_local_id, "survivor": surviving_local_id,
                                  "moved": []})
            self.store.set_source_status(prior.id, "merged")
            return result

    def audit_log(self, gid: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": a, "at": at, "actor": actor, "action": action, "record_id": sid, "enterprise_id": g,
                     "detail": orjson.loads(d) if d else None}
                    for a, at, actor, action, sid, g, d in self.store.audit_log(gid, limit)]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"records": self._n, "open_candidates": self.store.count_candidates("open")}
