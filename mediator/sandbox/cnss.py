"""Sandbox CNSS claims endpoint: receives FHIR ``Claim``s and answers ``ClaimResponse``s.

Mounted by the engine at ``/sandbox/cnss``::

    app.add_subapp("/sandbox/cnss", create_cnss_sandbox_app(data_dir / "cnss.db"))

* ``POST /claims`` – a ``Claim`` or a Bundle holding Claims (JSON). Each Claim is validated with
  the R4 model, stored, and answered with a ``ClaimResponse`` (``201``; a Bundle of them for a
  Bundle). Resubmitting the same Claim (same ``Claim.identifier``, or the same content when it has
  none) is idempotent: ``200`` with the original ``ClaimResponse``.
* ``GET /claims`` – searchset Bundle of the Claims (``search.mode`` match) and their responses
  (``include``), newest first, ``_count`` (default 50) and ``_offset``.
* ``GET /claims/{id}`` – a stored Claim by its id, or a ClaimResponse by its id.

Adjudication is simulated: a Claim carrying ``total`` is answered ``complete`` (everything
accepted), one without is ``queued``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from mediator.fhir.inbound import FhirInputError, check_resource, parse_fhir_json
from mediator.fhir.outcome import fhir_json_response, outcome_response

__all__ = ["CNSS_DB_KEY", "create_cnss_sandbox_app"]

log = structlog.get_logger(__name__)

CNSS_DB_KEY: web.AppKey[sqlite3.Connection] = web.AppKey("cnss_db", sqlite3.Connection)
CNSS_SYSTEM = "https://www.cnss.ma/fhir/sandbox/ClaimResponse"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claim(
  claim_id TEXT PRIMARY KEY, response_id TEXT NOT NULL UNIQUE, dedupe_key TEXT NOT NULL UNIQUE,
  received TEXT NOT NULL, claim BLOB NOT NULL, response BLOB NOT NULL);
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _dedupe_key(claim: dict[str, Any]) -> str:
    """``identifier`` system|value pairs when present, else a digest of the content (id/meta excluded)."""
    idents = claim.get("identifier")
    if isinstance(idents, list):
        pairs = sorted(
            f"{i.get('system', '')}|{i['value']}"
            for i in idents
            if isinstance(i, dict) and isinstance(i.get("value"), str)
        )
        if pairs:
            return "id:" + "\n".join(pairs)
    content = {k: v for k, v in claim.items() if k not in ("id", "meta")}
    return "sha256:" + hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _claim_response(claim: dict[str, Any], claim_id: str, response_id: str, now: datetime) -> dict[str, Any]:
    complete = isinstance(claim.get("total"), dict)
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": response_id,
        "identifier": [{"system": CNSS_SYSTEM, "value": response_id}],
        "status": "active",
        "type": claim["type"],
        "use": claim.get("use", "claim"),
        "patient": claim["patient"],
        "created": now.isoformat(timespec="seconds"),
        "insurer": {
            "identifier": {"system": "urn:oid:2.16.504.1.3", "value": "CNSS"},
            "display": "Caisse Nationale de Sécurité Sociale (sandbox)",
        },
        "requestor": claim.get("provider"),
        "request": {"reference": f"Claim/{claim_id}"},
        "outcome": "complete" if complete else "queued",
        "disposition": "Accepted by the CNSS sandbox" if complete else "Queued for adjudication (sandbox)",
    }
    if complete:
        response["total"] = [
            {
                "category": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": "submitted"}
                    ]
                },
                "amount": claim["total"],
            }
        ]
    return {k: v for k, v in response.items() if v is not None}


def _claims_in(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The Claims of a submission with their FHIRPath location; 400 if there are none."""
    if doc["resourceType"] == "Claim":
        return [("Claim", doc)]
    if doc["resourceType"] == "Bundle":
        claims = [
            (f"Bundle.entry[{i}].resource", e["resource"])
            for i, e in enumerate(doc.get("entry") or [])
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "Claim"
        ]
        if claims:
            return claims
        raise FhirInputError(400, "invalid", "the Bundle holds no Claim", "Bundle.entry")
    raise FhirInputError(
        400, "not-supported", f"expected a Claim or a Bundle, got {doc['resourceType']}", "resourceType"
    )


def _store(db: sqlite3.Connection, claim: dict[str, Any]) -> tuple[bool, bytes]:
    """Store one claim (or find its earlier submission); return (created, ClaimResponse JSON)."""
    key = _dedupe_key(claim)
    row = db.execute("SELECT response FROM claim WHERE dedupe_key = ?", (key,)).fetchone()
    if row is not None:
        return False, row[0]
    claim_id = claim.get("id") if isinstance(claim.get("id"), str) else None
    if claim_id is None or db.execute("SELECT 1 FROM claim WHERE claim_id = ?", (claim_id,)).fetchone():
        claim_id = str(uuid.uuid4())
    now = _now()
    stored = {**claim, "id": claim_id}
    response_id = str(uuid.uuid4())
    response = orjson.dumps(_claim_response(stored, claim_id, response_id, now))
    db.execute(
        "INSERT INTO claim VALUES (?, ?, ?, ?, ?, ?)",
        (claim_id, response_id, key, now.isoformat(), orjson.dumps(stored), response),
    )
    return True, response


async def _post_claims(request: web.Request) -> web.Response:
    doc = parse_fhir_json(await request.read())
    claims = _claims_in(doc)
    issues = []
    for where, claim in claims:
        for severity, code, diag, expr in check_resource(claim):
            expr = f"{where}{expr[len('Claim') :]}" if expr and expr.startswith("Claim") else expr
            issues.append((severity, code, diag, expr))
    if issues:
        log.info("cnss.claim_rejected", claims=len(claims), issues=len(issues))
        return outcome_response(400, issues)
    db = request.app[CNSS_DB_KEY]
    db.execute("BEGIN IMMEDIATE")
    try:
        results = [_store(db, claim) for _, claim in claims]
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    created = sum(1 for c, _ in results if c)
    log.info("cnss.claims_received", claims=len(results), created=created)
    status = 201 if created else 200
    if doc["resourceType"] == "Claim":
        return fhir_json_response(results[0][1], status=status)
    entries = b",".join(b'{"resource":' + raw + b"}" for _, raw in results)
    head = orjson.dumps({"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection"})
    return fhir_json_response(head[:-1] + b',"entry":[' + entries + b"]}", status=status)


async def _list_claims(request: web.Request) -> web.Response:
    db = request.app[CNSS_DB_KEY]
    try:
        count = min(int(request.query.get("_count", "50")), 500)
        offset = int(request.query.get("_offset", "0"))
        if count < 0 or offset < 0:
            raise ValueError
    except ValueError:
        return outcome_response(
            400, code="invalid", diagnostics="_count and _offset must be non-negative integers"
        )
    total = db.execute("SELECT count(*) FROM claim").fetchone()[0]
    rows = db.execute(
        "SELECT claim, response FROM claim ORDER BY received DESC, claim_id LIMIT ? OFFSET ?", (count, offset)
    ).fetchall()
    entries = []
    for claim, response in rows:
        entries.append(b'{"resource":' + claim + b',"search":{"mode":"match"}}')
        entries.append(b'{"resource":' + response + b',"search":{"mode":"include"}}')
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": total})
    body = head[:-1] + b',"entry":[' + b",".join(entries) + b"]}" if entries else head
    return fhir_json_response(body)


async def _get_claim(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    db = request.app[CNSS_DB_KEY]
    row = db.execute("SELECT claim FROM claim WHERE claim_id = ?", (rid,)).fetchone()
    if row is None:
        row = db.execute("SELECT response FROM claim WHERE response_id = ?", (rid,)).fetchone()
    if row is None:
        return outcome_response(404, code="not-found", diagnostics=f"no claim or claim response {rid[:64]!r}")
    return fhir_json_response(row[0])


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except FhirInputError as exc:
        log.info("cnss.rejected", status=exc.status, code=exc.code)
        return exc.response()


def create_cnss_sandbox_app(db_path: Path) -> web.Application:
    """Build the CNSS sandbox application storing claims in SQLite at ``db_path``."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    app = web.Application(middlewares=[_errors], client_max_size=16 * 1024 * 1024 + 1)
    app[CNSS_DB_KEY] = db

    async def _close(app: web.Application) -> None:
        app[CNSS_DB_KEY].close()

    app.on_cleanup.append(_close)
    app.router.add_post("/claims", _post_claims)
    app.router.add_get("/claims", _list_claims)
    app.router.add_get("/claims/{id}", _get_claim)
    return app
