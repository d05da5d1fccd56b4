"""Provider and facility registry (mCSD): professionals, organisations and places keyed by INPE.

Resources (Practitioner, PractitionerRole, Organization, Location, HealthcareService) are stored
as FHIR R4 JSON with their INPE and a name key for search. They are loaded from a FHIR Bundle or
from a CSV file with the columns::

    resource_type, inpe, name, family, given, active, organization_inpe, city, type, specialty, id

(any may be empty except ``resource_type`` and ``inpe``; ``active`` is true unless ``false``/``0``/
``inactive``). A malformed INPE (not digits) is loaded verbatim and reported, never silently dropped.
"""

from __future__ import annotations

import csv
import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mediator.registry.identifiers import IdentifierRules
from mediator.registry.names import fold, is_arabic, normalize_arabic

__all__ = ["INPE_SYSTEM", "LoadReport", "ProviderRegistry", "ProviderStatus"]

INPE_SYSTEM = "https://dmp.sante.gov.ma/fhir/sid/inpe"
RESOURCE_TYPES = ("Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS provider (
    rtype TEXT NOT NULL, id TEXT NOT NULL, inpe TEXT NOT NULL, valid INTEGER NOT NULL, name_key TEXT NOT NULL,
    active INTEGER NOT NULL, resource BLOB NOT NULL, PRIMARY KEY (rtype, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS provider_inpe ON provider (inpe);
CREATE INDEX IF NOT EXISTS provider_name ON provider (rtype, name_key);
"""


@dataclass
class ProviderStatus:
    """What the registry knows about one INPE."""

    inpe: str
    status: str  # active | inactive | unknown | malformed
    resource_types: list[str]


@dataclass
class LoadReport:
    loaded: int = 0
    malformed_inpe: int = 0
    skipped: int = 0   # rows in error (not loaded)
    ignored: int = 0   # Bundle entries that are not mCSD resources
    problems: list[str] | None = None


def _name_key(text: str) -> str:
    if not text:
        return ""
    return normalize_arabic(text) if is_arabic(text) else fold(text)


def _resource_name(res: dict[str, Any]) -> str:
    name = res.get("name")
    if isinstance(name, str):
        return name
    if isinstance(name, list) and name:
        n = name[0] if isinstance(name[0], dict) else {}
        if n.get("text"):
            return str(n["text"])
        return " ".join([*[str(g) for g in n.get("given", []) or []], str(n.get("family") or "")]).strip()
    return ""


class ProviderRegistry:
    """mCSD resources on a SQLite file (may share the client registry's file)."""

    def __init__(self, path: str | Path, *, inpe_system: str = INPE_SYSTEM,
                 rules: IdentifierRules | None = None) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.inpe_system = inpe_system
        self.rules = rules or IdentifierRules()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # -- loading ------------------------------------------------------------------------------------
    def inpe_of(self, res: dict[str, Any]) -> str:
        for ident in res.get("identifier") or []:
            if isinstance(ident, dict) and (ident.get("system") == self.inpe_system
                                            or str(ident.get("system", "")).rstrip("/").endswith("/inpe")):
                return str(ident.get("value") or "")
        return ""

    def put(self, res: dict[str, Any]) -> bool:
        """Store one resource; returns whether its INPE is well formed (stored either way)."""
        rtype = res.get("resourceType")
        if rtype not in RESOURCE_TYPES:
            raise ValueError(f"not an mCSD resource type: {rtype!r}")
        raw = self.inpe_of(res)
        ident = self.rules.normalize("inpe", raw)
        rid = str(res.get("id") or _stable_id(rtype, ident.value or raw))
        res = {**res, "id": rid}
        active = res.get("active", res.get("status", "active"))
        is_active = active is True or active == "active"
        with self._lock:
            self.db.execute(
                "INSERT INTO provider (rtype, id, inpe, valid, name_key, active, resource) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (rtype, id) DO UPDATE SET inpe = excluded.inpe, valid = excluded.valid, "
                "name_key = excluded.name_key, active = excluded.active, resource = excluded.resource",
                (rtype, rid, ident.value or raw, int(ident.valid), _name_key(_resource_name(res)), int(is_active),
                 orjson.dumps(res)))
        return ident.valid

    def load_bundle(self, bundle: dict[str, Any]) -> LoadReport:
        rep = LoadReport(problems=[])
        for i, e in enumerate(bundle.get("entry") or []):
            res = e.get("resource") if isinstance(e, dict) else None
            if not isinstance(res, dict) or res.get("resourceType") not in RESOURCE_TYPES:
                rep.ignored += 1
                continue
            self._put_counted(res, rep, f"entry[{i}]")
        return rep

    def load_csv(self, rows: Iterable[dict[str, str]]) -> LoadReport:
        rep = LoadReport(problems=[])
        for n, row in enumerate(rows, start=2):
            try:
                res = self.resource_from_row(row)
            except ValueError as exc:
                rep.skipped += 1
                rep.problems.append(f"line {n}: {exc}")  # type: ignore[union-attr]
                continue
            self._put_counted(res, rep, f"line {n}")
        return rep

    def _put_counted(self, res: dict[str, Any], rep: LoadReport, where: str) -> None:
        """Store one loaded resource, counting it (and a malformed INPE, kept but flagged) in ``rep``."""
        if not self.put(res):
            rep.malformed_inpe += 1
            rep.problems.append(f"{where}: malformed INPE")  # type: ignore[union-attr]
        rep.loaded += 1

    def load_file(self, path: str | Path) -> LoadReport:
        p = Path(path)
        if p.suffix.lower() == ".json":
            return self.load_bundle(orjson.loads(p.read_bytes()))
        with p.open(encoding="utf-8-sig", newline="") as fh:
            return self.load_csv(csv.DictReader(fh))

    def resource_from_row(self, row: dict[str, str]) -> dict[str, Any]:
        def g(k: str) -> str:
            return (row.get(k) or "").strip()
        rtype = g("resource_type") or "Practitioner"
        if rtype not in RESOURCE_TYPES:
            raise ValueError(f"unknown resource_type {rtype!r}")
        inpe = g("inpe")
        if not inpe:
            raise ValueError("inpe is empty")
        active = g("active").lower() not in ("false", "0", "no", "inactive")
        res: dict[str, Any] = {"resourceType": rtype, "identifier": [{"system": self.inpe_system, "value": inpe}]}
        if g("id"):
            res["id"] = g("id")
        org_ref = {"identifier": {"system": self.inpe_system, "value": g("organization_inpe")}} \
            if g("organization_inpe") else None
        if rtype == "Practitioner":
            res["active"] = active
            name: dict[str, Any] = {}
            if g("family"):
                name["family"] = g("family")
            if g("given"):
                name["given"] = g("given").split()
            if g("name"):
                name["text"] = g("name")
            if name:
                res["name"] = [name]
        elif rtype == "Organization":
            res["active"] = active
            if g("name"):
                res["name"] = g("name")
            if g("type"):
                res["type"] = [{"text": g("type")}]
            if g("city"):
                res["address"] = [{"city": g("city")}]
        elif rtype == "Location":
            res["status"] = "active" if active else "inactive"
            if g("name"):
                res["name"] = g("name")
            if g("city"):
                res["address"] = {"city": g("city")}
            if org_ref:
                res["managingOrganization"] = org_ref
        else:  # PractitionerRole, HealthcareService
            res["active"] = active
            if org_ref:
                res["organization" if rtype == "PractitionerRole" else "providedBy"] = org_ref
            if g("specialty"):
                res["specialty"] = [{"text": g("specialty")}]
            if g("name") and rtype == "HealthcareService":
                res["name"] = g("name")
        return res

    # -- queries ------------------------------------------------------------------------------------
    def status(self, inpe: str) -> ProviderStatus:
        ident = self.rules.normalize("inpe", inpe or "")
        if not ident.valid:
            return ProviderStatus(ident.raw, "malformed", [])
        with self._lock:
            rows = self.db.execute("SELECT rtype, active FROM provider WHERE inpe = ?", (ident.value,)).fetchall()
        if not rows:
            return ProviderStatus(ident.value, "unknown", [])
        active = any(a for _, a in rows)
        return ProviderStatus(ident.value, "active" if active else "inactive", sorted({r for r, _ in rows}))

    def search(self, rtype: str, *, identifier: str | None = None, name: str | None = None,
               active: bool | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """mCSD search: ``identifier`` is ``system|value`` or a bare value; ``name`` matches by prefix or word."""
        q = "SELECT resource FROM provider WHERE rtype = ?"
        args: list[Any] = [rtype]
        if identifier:
            system, _, value = identifier.rpartition("|")
            if system and system != self.inpe_system and not system.rstrip("/").endswith("/inpe"):
                return []
            ident = self.rules.normalize("inpe", value)
            q += " AND inpe = ?"
            args.append(ident.value or value)
        if active is not None:
            q += " AND active = ?"
            args.append(int(active))
        key = _name_key(name or "")
        if key:
            q += " AND (name_key LIKE ? ESCAPE '\\' OR name_key LIKE ? ESCAPE '\\')"
            esc = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args += [esc + "%", "% " + esc + "%"]
        q += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            return [orjson.loads(r[0]) for r in self.db.execute(q, args)]

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT count(*) FROM provider").fetchone()[0])


def _stable_id(rtype: str, inpe: str) -> str:
    return hashlib.sha256(f"{rtype}|{inpe}".encode()).hexdigest()[:32]
