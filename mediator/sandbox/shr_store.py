"""Storage and FHIR semantics of the sandbox shared record (a small HAPI-like FHIR R4 store).

One SQLite connection (WAL, ``synchronous=NORMAL``; the WAL is copied back by a background
:class:`~mediator.store.checkpoint.WalCheckpointer`, never inside a write), used synchronously: every public method runs
to completion without yielding, so callers on an asyncio loop need no lock. Tables:

* ``resource(type, id, version, hash, deleted)`` – the current version of each resource;
* ``version(type, id, vid, last_updated, json)`` – every version (``json`` NULL for a delete). A rowid
  table (databases made before kept ``WITHOUT ROWID``, which works the same): rows of a kilobyte or
  more are appended in order to its pages, and only the small primary-key index takes inserts at
  random places. ``WITHOUT ROWID`` put them at random places in the table itself: half-empty pages,
  overflow pages, and about a third more pages written per commit (and checkpoint);
* ``ident(type, id, system, value)`` – token index of ``identifier``;
* ``ref(type, id, path, target)`` – references to ``Patient/...`` by top-level element
  (``subject``, ``patient``, ...), for ``?patient=`` / ``?subject=`` search and ``$everything``.

The JSON stored is the resource as written, with ``meta.versionId``/``meta.lastUpdated`` set.
``hash`` is a digest of the resource without those two so an identical re-PUT keeps its version.
No model validation happens here (hot path): only ``resourceType``/``id`` shapes are checked.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog

from mediator.fhir.inbound import FhirInputError, is_resource_type
from mediator.store.checkpoint import WalCheckpointer

__all__ = ["EntryResult", "SearchPage", "ShrStore", "fhir_instant"]

log = structlog.get_logger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS resource(
  type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, hash BLOB, deleted INTEGER NOT NULL,
  PRIMARY KEY(type, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS version(
  type TEXT NOT NULL, id TEXT NOT NULL, vid INTEGER NOT NULL, last_updated TEXT NOT NULL, json BLOB,
  PRIMARY KEY(type, id, vid));
CREATE TABLE IF NOT EXISTS ident(type TEXT NOT NULL, id TEXT NOT NULL, system TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ident_value ON ident(type, value, system);
CREATE INDEX IF NOT EXISTS ident_res ON ident(type, id);
CREATE TABLE IF NOT EXISTS ref(type TEXT NOT NULL, id TEXT NOT NULL, path TEXT NOT NULL, target TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ref_target ON ref(target, type);
CREATE INDEX IF NOT EXISTS ref_res ON ref(type, id);
"""
_PATIENT_PATHS = ("subject", "patient")
# (version, hash, deleted, lastUpdated of that version) of a resource, read before writing it
_Row = tuple[int, bytes | None, int, str]
# The current state of resources by (type, id), with the lastUpdated of their current version: an
# identical re-PUT (the common case) is then answered without reading the stored JSON. CROSS JOIN
# keeps SQLite's join order (keys, then primary-key lookups) whatever its statistics say.
_CURRENT_SQL = (
    "SELECT r.type, r.id, r.version, r.hash, r.deleted, v.last_updated FROM (VALUES {values}) k "
    "CROSS JOIN resource r ON r.type = k.column1 AND r.id = k.column2 "
    "CROSS JOIN version v ON v.type = r.type AND v.id = r.id AND v.vid = r.version"
)
_KEYS_PER_SELECT = 256


def fhir_instant(ts: datetime | None = None) -> str:
    """A FHIR ``instant`` in UTC with milliseconds (``2025-01-02T03:04:05.678+00:00``)."""
    ts = ts or datetime.now(UTC)
    return ts.isoformat(timespec="milliseconds")


@dataclass(slots=True)
class EntryResult:
    """Outcome of one write: what goes in a transaction-response entry."""

    status: str
    type: str
    id: str
    version: int
    last_updated: str
    resource: dict[str, Any] | None = None

    @property
    def location(self) -> str:
        return f"{self.type}/{self.id}/_history/{self.version}"

    def response_entry(self) -> dict[str, Any]:
        """The ``Bundle.entry`` of a transaction-response for this result."""
        return {
            "response": {
                "status": self.status,
                "location": self.location,
                "etag": f'W/"{self.version}"',
                "lastModified": self.last_updated,
            }
        }


@dataclass(slots=True)
class SearchPage:
    """One page of search results (raw JSON of each match) and the total count."""

    total: int
    resources: list[bytes] = field(default_factory=list)


def _canonical_hash(resource: dict[str, Any]) -> bytes:
    meta = resource.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        resource = {**resource, "meta": meta} if meta else {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.blake2b(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


_REFERENCE = re.compile(rb'"reference":"([^"\\]*(?:\\.[^"\\]*)*)"')  # the string, escapes included
_REFERENCE_KEY = b'"reference":"'


def _decode_refs(text: bytes) -> list[str]:
    """The ``reference`` string values in JSON text written by orjson (escapes decoded).

    Without a backslash in the text no string holds an escape, so each value ends at the first quote
    after its key: splitting is much cheaper than the regular expression, needed only otherwise.
    """
    if text.find(b"\\") == -1:
        return [part[: part.index(b'"')].decode() for part in text.split(_REFERENCE_KEY)[1:]]
    return [orjson.loads(b'"' + r + b'"') if b"\\" in r else r.decode() for r in _REFERENCE.findall(text)]


def _walk_references(resource: dict[str, Any], mapping: dict[str, str] | None) -> list[tuple[str, str]]:
    """Rewrite ``reference`` values found in ``mapping`` (in place) and list patient references.

    Returns ``(top-level element, "Patient/x")`` pairs. With a ``mapping`` (inside a Bundle), a
    ``urn:uuid:`` reference that matches no entry is an error.
    """
    found = _resolve_references(resource, mapping)
    return _walk_elements(resource, None) if found is None else found


def _resolve_references(
    resource: dict[str, Any], mapping: dict[str, str] | None, uuid_keys: bool = False
) -> list[tuple[str, str]] | None:
    """The rewriting half of :func:`_walk_references`: its patient references, or None when nothing
    had to be rewritten but patient references remain to be listed.

    The whole resource is first read as JSON text (orjson, in C): the text of each element is a piece
    of it, so what is found there is a superset of what an element-by-element walk would find. Most
    resources hold no reference to rewrite and are done with that one serialisation; listing patient
    references is left to the caller, who needs them only if the resource changed (an identical
    re-PUT, the common case, never does). ``uuid_keys``: every key of ``mapping`` is a ``urn:uuid:``.
    """
    text = orjson.dumps(resource)
    if text.find(_REFERENCE_KEY) == -1:
        return []
    if mapping is not None and _may_rewrite(text, mapping, uuid_keys):
        return _walk_elements(resource, mapping)
    # orjson escapes only quotes, backslashes and control characters: a value starts with
    # ``Patient/`` exactly when its text does
    return None if text.find(b'"reference":"Patient/') != -1 else []


def _may_rewrite(text: bytes, mapping: dict[str, str], uuid_keys: bool) -> bool:
    """Whether JSON text (from orjson) holds a reference in ``mapping`` or a ``urn:uuid:`` one. When
    every fullUrl of the Bundle is a ``urn:uuid:`` (``uuid_keys``, as the mediator writes them) a byte
    search says it, without decoding each reference."""
    if text.find(b'"reference":"urn:uuid:') != -1:
        return True
    return not uuid_keys and any(r in mapping for r in _decode_refs(text))


def _walk_elements(resource: dict[str, Any], mapping: dict[str, str] | None) -> list[tuple[str, str]]:
    """:func:`_walk_references` element by element: each top-level element is read as JSON text and
    only an element holding a reference to rewrite is walked in Python."""
    found: list[tuple[str, str]] = []
    for top, value in resource.items():
        if not isinstance(value, dict | list):
            continue
        text = orjson.dumps(value)
        if text.find(_REFERENCE_KEY) == -1:  # not ``in``: bytes.__contains__ first tries an int
            continue
        refs = _decode_refs(text)
        if mapping is not None and any(r in mapping or r.startswith("urn:uuid:") for r in refs):
            _rewrite_references(top, value, mapping, found)
            continue
        found.extend((top, r.split("/_history/", 1)[0]) for r in refs if r.startswith("Patient/"))
    return found


def _rewrite_references(top: str, value: Any, mapping: dict[str, str], found: list[tuple[str, str]]) -> None:
    """The walk of :func:`_walk_references` for one top-level element (iterative, no recursion)."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                if ref in mapping:
                    ref = node["reference"] = mapping[ref]
                elif ref.startswith("urn:uuid:"):
                    raise _bad(f"reference {ref[:64]!r} matches no fullUrl in the Bundle", status=400)
                if ref.startswith("Patient/"):
                    found.append((top, ref.split("/_history/", 1)[0]))
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        else:
            stack.extend(v for v in node if isinstance(v, dict | list))


def _identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    ids = resource.get("identifier")
    if isinstance(ids, dict):  # Bundle.identifier is a single Identifier
        ids = [ids]
    out: list[tuple[str, str]] = []
    if isinstance(ids, list):
        for ident in ids:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                system = ident.get("system")
                out.append((system if isinstance(system, str) else "", ident["value"]))
    return out


def _bad(
    diagnostics: str, expression: str | None = None, *, status: int = 400, code: str = "invalid"
) -> FhirInputError:
    return FhirInputError(status, code, diagnostics, expression)


def parse_token(token: str) -> tuple[str | None, str]:
    """Split a FHIR token search value: ``sys|val`` → (sys, val); ``val`` → (None, val)."""
    if "|" in token:
        system, value = token.split("|", 1)
        return system, value
    return None, token


class ShrStore:
    """The sandbox shared record's storage and FHIR write/read semantics."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute("PRAGMA cache_size=-32000")
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.executescript(_SCHEMA)
        self.db_path = db_path
        self._checkpointer = WalCheckpointer(db_path, name="shr")
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpointer and close the database connection."""
        self._checkpointer.stop()
        self._db.close()

    # ------------------------------------------------------------------ reads

    def read(self, rtype: str, rid: str, vid: int | None = None) -> tuple[bytes | None, int, str] | None:
        """Current (or given) version as ``(json or None if deleted, version, last_updated)``."""
        if vid is None:
            row = self._db.execute(
                "SELECT v.json, v.vid, v.last_updated FROM resource r JOIN version v "
                "ON v.type = r.type AND v.id = r.id AND v.vid = r.version WHERE r.type = ? AND r.id = ?",
                (rtype, rid),
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT json, vid, last_updated FROM version WHERE type = ? AND id = ? AND vid = ?",
                (rtype, rid, vid),
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def find_by_identifier(self, rtype: str, token: str) -> list[str]:
        """Ids of live resources of ``rtype`` with an identifier matching a FHIR token."""
        system, value = parse_token(token)
        if system is None:
            sql, args = "SELECT DISTINCT id FROM ident WHERE type = ? AND value = ?", (rtype, value)
        elif value == "":
            sql, args = "SELECT DISTINCT id FROM ident WHERE type = ? AND system = ?", (rtype, system)
        else:
            sql = "SELECT DISTINCT id FROM ident WHERE type = ? AND value = ? AND system = ?"
            args = (rtype, value, system)
        return [r[0] for r in self._db.execute(sql, args)]

    def search(self, rtype: str, params: list[tuple[str, str]], *, count: int, offset: int) -> SearchPage:
        """Search live resources of ``rtype`` (AND across parameters, OR within comma lists)."""
        where = ["r.type = ?", "r.deleted = 0"]
        args: list[Any] = [rtype]
        for name, value in params:
            alternatives = [v for v in value.split(",") if v]
            if not alternatives:
                continue
            if name == "_id":
                where.append(f"r.id IN ({','.join('?' * len(alternatives))})")
                args.extend(alternatives)
            elif name == "identifier":
                ors = []
                for alt in alternatives:
                    system, val = parse_token(alt)
                    if system is None:
                        ors.append("(i.value = ?)")
                        args.append(val)
                    elif val == "":
                        ors.append("(i.system = ?)")
                        args.append(system)
                    else:
                        ors.append("(i.value = ? AND i.system = ?)")
                        args.extend((val, system))
                where.append(
                    "EXISTS (SELECT 1 FROM ident i WHERE i.type = r.type AND i.id = r.id AND ("
                    + " OR ".join(ors)
                    + "))"
                )
            elif name in ("patient", "subject"):
                targets = [a if "/" in a else f"Patient/{a}" for a in alternatives]
                paths = ("subject", "patient") if rtype != "Patient" else ()
                where.append(
                    "EXISTS (SELECT 1 FROM ref f WHERE f.type = r.type AND f.id = r.id AND f.path IN ("
                    + ",".join("?" * len(paths))
                    + f") AND f.target IN ({','.join('?' * len(targets))}))"
                    if paths
                    else "0"
                )
                args.extend(paths)
                args.extend(targets)
            else:
                raise _bad(f"unknown search parameter {name[:64]!r} for {rtype}", name)
        cond = " AND ".join(where)
        total = self._db.execute(f"SELECT count(*) FROM resource r WHERE {cond}", args).fetchone()[0]
        rows = self._db.execute(
            "SELECT v.json FROM resource r JOIN version v ON v.type = r.type AND v.id = r.id "
            f"AND v.vid = r.version WHERE {cond} ORDER BY r.id LIMIT ? OFFSET ?",
            [*args, count, offset],
        ).fetchall()
        return SearchPage(total=total, resources=[r[0] for r in rows])

    def everything(self, patient_id: str) -> list[bytes] | None:
        """The Patient and every live resource referencing it (``$everything``); None if absent."""
        current = self.read("Patient", patient_id)
        if current is None or current[0] is None:
            return None
        rows = self._db.execute(
            "SELECT v.json FROM (SELECT DISTINCT type, id FROM ref WHERE target = ?) f "
            "JOIN resource r ON r.type = f.type AND r.id = f.id AND r.deleted = 0 "
            "JOIN version v ON v.type = r.type AND v.id = r.id AND v.vid = r.version ORDER BY r.type, r.id",
            (f"Patient/{patient_id}",),
        ).fetchall()
        return [current[0], *(r[0] for r in rows if r[0] is not None)]

    def counts(self) -> dict[str, int]:
        """Number of live resources by type (for diagnostics)."""
        rows = self._db.execute("SELECT type, count(*) FROM resource WHERE deleted = 0 GROUP BY type")
        return {t: n for t, n in rows}

    # ------------------------------------------------------------------ writes

    def _current_rows(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], _Row]:
        """The current state of several resources (those a Bundle writes) in one statement each
        :data:`_KEYS_PER_SELECT` keys, rather than one statement per entry."""
        rows: dict[tuple[str, str], _Row] = {}
        for start in range(0, len(keys), _KEYS_PER_SELECT):
            chunk = keys[start : start + _KEYS_PER_SELECT]
            sql = _CURRENT_SQL.format(values=",".join(["(?,?)"] * len(chunk)))
            for rtype, rid, version, digest, deleted, last_updated in self._db.execute(
                sql, [part for key in chunk for part in key]
            ):
                rows[(rtype, rid)] = (version, digest, deleted, last_updated)
        return rows

    def _write(
        self,
        rtype: str,
        rid: str,
        resource: dict[str, Any] | None,
        now: str,
        row: _Row | None,
        writes: _Writes,
        *,
        create_only: bool = False,
        if_match: int | None = None,
        patient_refs: list[tuple[str, str]] | None = None,
    ) -> EntryResult:
        """Write (or delete, ``resource=None``) one resource whose current state is ``row``.

        The rows to write are added to ``writes``, which the caller sends to SQLite (inside the
        transaction it owns) once every entry of the Bundle has passed its checks.
        """
        if if_match is not None and (row is None or row[0] != if_match):
            raise _bad(f"version conflict on {rtype}/{rid}: If-Match {if_match}", status=412, code="conflict")
        if resource is None:  # delete
            if row is None or row[2]:
                return EntryResult("204 No Content", rtype, rid, row[0] if row else 0, now)
            vid = row[0] + 1
            writes.changed.append((vid, None, 1, rtype, rid))
            writes.versions.append((rtype, rid, vid, now, None))
            writes.unindexed.append((rtype, rid))
            return EntryResult("204 No Content", rtype, rid, vid, now)
        if create_only and row is not None and not row[2]:
            raise _bad(f"{rtype}/{rid} already exists", status=409, code="duplicate")
        digest = _canonical_hash(resource)
        if row is not None and not row[2] and row[1] == digest:
            return EntryResult("200 OK", rtype, rid, row[0], row[3])
        vid = 1 if row is None else row[0] + 1
        meta = resource.get("meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta["versionId"] = str(vid)
        meta["lastUpdated"] = now
        body = {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}
        resource = {"resourceType": rtype, "id": rid, "meta": meta, **body}
        if row is None:
            writes.created.append((rtype, rid, vid, digest))
        else:
            writes.changed.append((vid, digest, 0, rtype, rid))
            writes.unindexed.append((rtype, rid))
        writes.versions.append((rtype, rid, vid, now, orjson.dumps(resource)))
        writes.idents.extend((rtype, rid, s, v) for s, v in _identifiers(resource))
        if patient_refs is None:  # not listed yet (see _resolve_references), or a single write
            patient_refs = _walk_references(resource, None)
        writes.refs.extend((rtype, rid, p, t) for p, t in set(patient_refs))
        created = row is None or bool(row[2])
        return EntryResult("201 Created" if created else "200 OK", rtype, rid, vid, now, resource)

    def _write_one(self, rtype: str, rid: str, resource: dict[str, Any] | None, **kwargs: Any) -> EntryResult:
        """:meth:`_write` of a single resource, sent to SQLite at once; caller owns the transaction."""
        writes = _Writes()
        result = self._write(
            rtype, rid, resource, fhir_instant(), self._current_rows([(rtype, rid)]).get((rtype, rid)), writes,
            **kwargs,
        )
        writes.flush(self._db)
        return result

    def put(
        self, rtype: str, rid: str, resource: dict[str, Any], *, if_match: int | None = None
    ) -> EntryResult:
        """Create or update ``rtype/rid`` (``PUT``), atomically."""
        check_resource_shape(resource, rtype, rid, "")
        with self.transaction():
            return self._write_one(rtype, rid, resource, if_match=if_match)

    def create(
        self, rtype: str, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> EntryResult:
        """Create with a server-assigned id (``POST``); conditional when ``if_none_exist`` is set."""
        check_resource_shape(resource, rtype, None, "")
        with self.transaction():
            if if_none_exist:
                found = self._conditional_match(rtype, if_none_exist, "If-None-Exist")
                if found:
                    current = self.read(rtype, found)
                    assert current is not None
                    return EntryResult("200 OK", rtype, found, current[1], current[2])
            return self._write_one(rtype, new_id(), resource, create_only=True)

    def delete(self, rtype: str, rid: str) -> EntryResult:
        """Delete ``rtype/rid`` (idempotent)."""
        with self.transaction():
            return self._write_one(rtype, rid, None)

    def transaction(self) -> _Tx:
        """Context manager: one SQLite transaction (``BEGIN IMMEDIATE`` … ``COMMIT``/``ROLLBACK``)."""
        return _Tx(self._db)

    def _conditional_match(self, rtype: str, query: str, where: str) -> str | None:
        """Resolve a conditional query (``identifier=...`` / ``_id=...``) to 0 or 1 existing id."""
        query = query.split("?", 1)[1] if "?" in query else query
        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            raise _bad(f"empty conditional query in {where}", where)
        ids: set[str] | None = None
        for name, value in params:
            if name == "identifier":
                matched = set(self.find_by_identifier(rtype, value))
            elif name == "_id":
                row = self.read(rtype, value)
                matched = {value} if row is not None and row[0] is not None else set()
            else:
                raise _bad(f"unsupported conditional search parameter {name[:64]!r}", where)
            ids = matched if ids is None else ids & matched
        assert ids is not None
        if len(ids) > 1:
            raise _bad(
                f"conditional {where} matched {len(ids)} {rtype} resources",
                where,
                status=412,
                code="multiple-matches",
            )
        return next(iter(ids)) if ids else None

    # ------------------------------------------------------------------ bundles

    def process_bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Apply a ``transaction`` (all or nothing) or ``batch`` Bundle; return the response Bundle."""
        btype = bundle.get("type")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise _bad("Bundle.entry must be an array", "Bundle.entry")
        if btype == "transaction":
            plan = [self._plan_entry(e, i) for i, e in enumerate(entries)]
            with self.transaction():
                results = self._execute(plan)
            return {
                "resourceType": "Bundle",
                "id": new_id(),
                "type": "transaction-response",
                "entry": [r.response_entry() for r in results],
            }
        if btype == "batch":
            out = []
            for i, entry in enumerate(entries):
                try:
                    plan = [self._plan_entry(entry, i)]
                    with self.transaction():
                        out.append(self._execute(plan)[0].response_entry())
                except FhirInputError as exc:
                    out.append({"response": {"status": _status_text(exc.status), "outcome": exc.outcome()}})
            return {"resourceType": "Bundle", "id": new_id(), "type": "batch-response", "entry": out}
        raise _bad(
            f"Bundle.type {str(btype)[:32]!r} cannot be processed here (transaction or batch)", "Bundle.type"
        )

    def process_bundles(self, bundles: list[dict[str, Any]]) -> list[dict[str, Any] | FhirInputError]:
        """Several Bundles in one commit (group commit); each stays all-or-nothing on its own."""
        results: list[dict[str, Any] | FhirInputError] = []
        with self.transaction():
            for bundle in bundles:
                try:
                    results.append(self.process_bundle(bundle))
                except FhirInputError as exc:
                    results.append(exc)
        return results

    def _plan_entry(self, entry: Any, i: int) -> _Planned:
        where = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            raise _bad("entry must be an object", where)
        request = entry.get("request")
        if not isinstance(request, dict):
            raise _bad("entry.request is required in a transaction/batch", f"{where}.request")
        method = request.get("method")
        url = request.get("url")
        if method not in ("PUT", "POST", "DELETE", "GET"):
            raise _bad(f"unsupported request.method {str(method)[:16]!r}", f"{where}.request.method")
        if not isinstance(url, str) or not url:
            raise _bad("request.url is required", f"{where}.request.url")
        path, _, query = url.partition("?")
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise _bad(f"bad request.url {url[:100]!r}", f"{where}.request.url")
        rtype = parts[0]
        if not is_resource_type(rtype):
            raise _bad(
                f"unknown resource type {rtype[:64]!r}",
                f"{where}.request.url",
                status=422,
                code="not-supported",
            )
        rid = parts[1] if len(parts) > 1 else None
        if rid is not None and (len(parts) > 2 or not ID_RE.match(rid)):
            raise _bad(f"bad request.url {url[:100]!r}", f"{where}.request.url")
        resource = entry.get("resource")
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if method in ("PUT", "POST"):
            check_resource_shape(resource, rtype, rid if method == "PUT" else None, f"{where}.resource")
            if method == "POST" and rid is not None:
                raise _bad("POST url must be a resource type", f"{where}.request.url")
            if method == "PUT" and rid is None and not query:
                raise _bad("PUT url needs an id or a conditional query", f"{where}.request.url")
        elif method == "DELETE" and rid is None:
            raise _bad(
                "conditional DELETE is not supported",
                f"{where}.request.url",
                status=501,
                code="not-supported",
            )
        elif method == "GET":
            raise _bad(
                "GET entries are not supported in this sandbox",
                f"{where}.request",
                status=501,
                code="not-supported",
            )
        if_match = request.get("ifMatch")
        match_vid = None
        if isinstance(if_match, str) and if_match:
            m = re.fullmatch(r'(?:W/)?"?(\d+)"?', if_match.strip())
            if not m:
                raise _bad(f"bad ifMatch {if_match[:32]!r}", f"{where}.request.ifMatch")
            match_vid = int(m.group(1))
        if_none_exist = request.get("ifNoneExist") if method == "POST" else None
        return _Planned(i, method, rtype, rid, query, resource, full_url, if_none_exist, match_vid)

    def _execute(self, plan: list[_Planned]) -> list[EntryResult]:
        """Assign ids, resolve ``urn:uuid`` references, then write, in FHIR order (DELETE, POST, PUT)."""
        mapping: dict[str, str] = {}
        existing: dict[int, EntryResult] = {}
        targets: dict[int, str] = {}
        seen: dict[tuple[str, str], int] = {}
        for p in plan:
            where = f"Bundle.entry[{p.index}].request"
            rid = p.rid
            if p.method == "POST":
                if p.if_none_exist:
                    found = self._conditional_match(p.rtype, p.if_none_exist, f"{where}.ifNoneExist")
                    if found:
                        cur = self.read(p.rtype, found)
                        assert cur is not None
                        existing[p.index] = EntryResult("200 OK", p.rtype, found, cur[1], cur[2])
                        rid = found
                rid = rid or new_id()
            elif p.method == "PUT" and rid is None:
                found = self._conditional_match(p.rtype, p.query, f"{where}.url")
                body_id = p.resource.get("id") if p.resource else None
                if found and body_id and body_id != found:
                    raise _bad(f"resource id {body_id!r} does not match the conditional match", where)
                rid = found or (body_id if isinstance(body_id, str) else None) or new_id()
            assert rid is not None
            key = (p.rtype, rid)
            if key in seen and p.index not in existing:
                raise _bad(
                    f"{p.rtype}/{rid} appears in more than one entry (entries {seen[key]} and {p.index})",
                    f"Bundle.entry[{p.index}]",
                )
            seen[key] = p.index
            targets[p.index] = rid
            if p.full_url:
                mapping[p.full_url] = f"{p.rtype}/{rid}"
        results: dict[int, EntryResult] = dict(existing)
        results.update(self._write_entries([p for p in plan if p.index not in existing], targets, mapping))
        return [results[p.index] for p in plan]

    def _write_entries(
        self, plan: list[_Planned], targets: dict[int, str], mapping: dict[str, str]
    ) -> dict[int, EntryResult]:
        """Write the entries of a Bundle, in FHIR order (DELETE, POST, PUT): the current rows are read
        in one statement and the new rows written together, after every entry passed its checks."""
        now = fhir_instant()
        rows = self._current_rows([(p.rtype, targets[p.index]) for p in plan])
        writes = _Writes()
        results: dict[int, EntryResult] = {}
        order = {"DELETE": 0, "POST": 1, "PUT": 2}
        uuid_keys = all(key.startswith("urn:uuid:") for key in mapping)
        for p in sorted(plan, key=lambda p: order[p.method]):
            rid = targets[p.index]
            row = rows.get((p.rtype, rid))
            try:
                if p.method == "DELETE":
                    results[p.index] = self._write(p.rtype, rid, None, now, row, writes, if_match=p.if_match)
                    continue
                resource = p.resource
                assert resource is not None
                refs = _resolve_references(resource, mapping, uuid_keys)
                results[p.index] = self._write(
                    p.rtype,
                    rid,
                    resource,
                    now,
                    row,
                    writes,
                    create_only=p.method == "POST",
                    if_match=p.if_match,
                    patient_refs=refs,
                )
            except FhirInputError as exc:
                if exc.expression is None:
                    exc.expression = f"Bundle.entry[{p.index}]"
                    exc.issues = [(s, c, d, exc.expression) for s, c, d, _ in exc.issues]
                raise
        writes.flush(self._db)
        return results


@dataclass(slots=True)
class _Writes:
    """The rows a Bundle (or a single interaction) writes, sent to SQLite with one ``executemany`` per
    statement rather than several statements per entry. A Bundle writes each resource at most once,
    so the only order that matters is that of one resource's old index rows (deleted first)."""

    created: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    changed: list[tuple[int, bytes | None, int, str, str]] = field(default_factory=list)
    versions: list[tuple[str, str, int, str, bytes | None]] = field(default_factory=list)
    unindexed: list[tuple[str, str]] = field(default_factory=list)
    idents: list[tuple[str, str, str, str]] = field(default_factory=list)
    refs: list[tuple[str, str, str, str]] = field(default_factory=list)

    def flush(self, db: sqlite3.Connection) -> None:
        """Send the rows (within the caller's transaction)."""
        if self.unindexed:
            db.executemany("DELETE FROM ident WHERE type = ? AND id = ?", self.unindexed)
            db.executemany("DELETE FROM ref WHERE type = ? AND id = ?", self.unindexed)
        if self.created:
            db.executemany("INSERT INTO resource VALUES (?, ?, ?, ?, 0)", self.created)
        if self.changed:
            db.executemany(
                "UPDATE resource SET version = ?, hash = ?, deleted = ? WHERE type = ? AND id = ?", self.changed
            )
        if self.versions:
            db.executemany("INSERT INTO version VALUES (?, ?, ?, ?, ?)", self.versions)
        if self.idents:
            db.executemany("INSERT INTO ident VALUES (?, ?, ?, ?)", self.idents)
        if self.refs:
            db.executemany("INSERT INTO ref VALUES (?, ?, ?, ?)", self.refs)


class _Tx:
    """A transaction, or a savepoint when one is already open (group commit of several bundles)."""

    __slots__ = ("_db", "_nested")

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._db.in_transaction
        self._db.execute("SAVEPOINT tx" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._nested:
            if exc_type is not None:
                self._db.execute("ROLLBACK TO tx")
            self._db.execute("RELEASE tx")
        else:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


@dataclass(slots=True)
class _Planned:
    index: int
    method: str
    rtype: str
    rid: str | None
    query: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: int | None


def new_id() -> str:
    """A fresh server-assigned resource id."""
    return str(uuid.uuid4())


def check_resource_shape(resource: Any, rtype: str, rid: str | None, where: str) -> None:
    """Cheap hot-path check: a JSON object of the expected ``resourceType`` with a valid ``id``."""
    prefix = where or rtype
    if not isinstance(resource, dict):
        raise _bad("a resource (JSON object) is required", where or None)
    actual = resource.get("resourceType")
    if actual != rtype:
        if isinstance(actual, str) and not is_resource_type(actual):
            raise _bad(
                f"unknown resource type {actual[:64]!r}",
                f"{prefix}.resourceType",
                status=422,
                code="not-supported",
            )
        raise _bad(f"resourceType {str(actual)[:64]!r} does not match {rtype!r}", f"{prefix}.resourceType")
    body_id = resource.get("id")
    if body_id is not None and (not isinstance(body_id, str) or not ID_RE.match(body_id)):
        raise _bad("resource id is not a valid FHIR id", f"{prefix}.id")
    if rid is not None and body_id is not None and body_id != rid:
        raise _bad(f"resource id {body_id!r} does not match the URL id {rid!r}", f"{prefix}.id")


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
