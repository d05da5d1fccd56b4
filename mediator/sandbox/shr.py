"""Sandbox shared record: an aiohttp FHIR R4 server over :class:`~mediator.sandbox.shr_store.ShrStore`.

Run by the node in a process of its own (``sandbox.shr_process``, the default: see
:mod:`mediator.sandbox.shr_process`), mounted in the node with
``app.add_subapp("/shr/fhir", create_shr_app(path))``, or run standalone::

    python -m mediator.sandbox.shr --port 8090 --db /tmp/shr.db

Interactions (HAPI-like for what is implemented): ``POST /`` (transaction/batch Bundle),
``GET /metadata``, ``GET|PUT|DELETE /{type}/{id}``, ``GET /{type}/{id}/_history/{vid}``,
``POST /{type}`` (``If-None-Exist`` honoured), ``GET /{type}?identifier=|patient=|subject=|_id=``
with ``_count``/``_offset`` paging, ``GET /Patient/{id}/$everything``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import structlog
from aiohttp import web

from mediator.fhir.inbound import FhirInputError, is_resource_type, parse_fhir_json
from mediator.fhir.outcome import fhir_json_response, outcome_response
from mediator.futures import settle
from mediator.heap import freeze_long_lived, tune_collector
from mediator.sandbox.shr_store import ID_RE, EntryResult, ShrStore, fhir_instant

__all__ = ["STORE_KEY", "create_shr_app", "main"]

log = structlog.get_logger(__name__)

STORE_KEY: web.AppKey[ShrStore] = web.AppKey("shr_store", ShrStore)
_BASE_KEY: web.AppKey[str | None] = web.AppKey("shr_base_url", str)
_TRUST_FORWARDED_KEY = web.AppKey("shr_trust_forwarded", bool)
FORWARDED_BASE = "X-Forwarded-Base"  # the public FHIR base, set by the node's proxy (see shr_process)
_EXECUTOR_KEY = web.AppKey("shr_executor", ThreadPoolExecutor)
_ACCEPTED_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "")
_DEFAULT_COUNT = 50
_MAX_COUNT = 1000
_IGNORED_PARAMS = frozenset({"_format", "_pretty", "_count", "_offset", "_summary", "_elements"})
_SEARCH_PARAMS = frozenset({"identifier", "patient", "subject", "_id"})


class _BundleBatcher:
    """Transaction Bundles posted while the store is busy are applied together in one commit."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self.running = False

    async def submit(self, bundle: dict[str, Any]) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending.append((bundle, fut))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending[:256], self.pending[256:]
                store = self.app[STORE_KEY]
                try:
                    results = await loop.run_in_executor(self.app[_EXECUTOR_KEY], store.process_bundles,
                                                         [b for b, _ in batch])
                except Exception as exc:  # the commit itself failed: every bundle of the batch failed
                    results = [exc] * len(batch)
                settle((fut for _, fut in batch), results)
        finally:
            self.running = False


_BATCHER_KEY = web.AppKey("shr_batcher", _BundleBatcher)


def _bundles(app: web.Application) -> _BundleBatcher:
    return app[_BATCHER_KEY]


async def _call(request: web.Request, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run a store method on the store's own thread: SQLite work (commits included) then does not
    hold up the event loop, which matters when the sandbox shares a process with the mediator."""
    fn = functools.partial(getattr(request.app[STORE_KEY], method), *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(request.app[_EXECUTOR_KEY], fn)


def _base(request: web.Request) -> str:
    """The FHIR base URL as seen by the client (configured, or derived from the request)."""
    configured = request.app[_BASE_KEY]
    if configured:
        return configured.rstrip("/")
    forwarded = request.headers.get(FORWARDED_BASE) if request.app[_TRUST_FORWARDED_KEY] else None
    if forwarded:
        return forwarded.rstrip("/")
    root = str(request.app.router["shr-root"].url_for())
    return str(request.url.origin()) + root.rstrip("/")


async def _body(request: web.Request) -> dict[str, Any]:
    ctype = request.content_type if "Content-Type" in request.headers else ""
    if ctype not in _ACCEPTED_TYPES:
        raise FhirInputError(415, "not-supported", f"unsupported content type {ctype[:64]!r}")
    return parse_fhir_json(await request.read())


def _check_type(rtype: str) -> None:
    if not is_resource_type(rtype):
        raise FhirInputError(400, "not-supported", f"unknown resource type {rtype[:64]!r}")


def _check_id(rid: str) -> None:
    if not ID_RE.match(rid):
        raise FhirInputError(400, "invalid", "invalid resource id")


def _version_headers(version: int, last_updated: str) -> dict[str, str]:
    return {"ETag": f'W/"{version}"', "Last-Modified": last_updated}


async def _write_response(request: web.Request, result: EntryResult) -> web.Response:
    headers = _version_headers(result.version, result.last_updated)
    headers["Location"] = f"{_base(request)}/{result.location}"
    status = int(result.status.split(" ", 1)[0])
    if result.resource is not None:
        return fhir_json_response(result.resource, status=status, headers=headers)
    raw = await _call(request, "read", result.type, result.id, result.version)
    if raw is None or raw[0] is None:
        return web.Response(status=status, headers=headers)
    return fhir_json_response(raw[0], status=status, headers=headers)


def _searchset(base: str, self_url: str, raws: list[bytes], total: int, next_url: str | None) -> bytes:
    """Assemble a searchset Bundle around pre-encoded resources without re-parsing them."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    head = orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "timestamp": fhir_instant(),
            "total": total,
            "link": links,
        }
    )
    if not raws:
        return head
    entries = []
    for raw in raws:
        rtype, rid = _type_and_id(raw)
        entries.append(
            b'{"fullUrl":'
            + orjson.dumps(f"{base}/{rtype}/{rid}")
            + b',"resource":'
            + raw
            + b',"search":{"mode":"match"}}'
        )
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def _type_and_id(raw: bytes) -> tuple[str, str]:
    doc = orjson.loads(raw)
    return doc["resourceType"], doc["id"]


# ---------------------------------------------------------------------------- handlers


async def _transaction(request: web.Request) -> web.Response:
    doc = await _body(request)
    if doc.get("resourceType") != "Bundle":
        raise FhirInputError(400, "invalid", "POST to the base expects a Bundle", "resourceType")
    result = await _bundles(request.app).submit(doc)
    return fhir_json_response(result)


async def _metadata(request: web.Request) -> web.Response:
    interactions = [{"code": c} for c in ("read", "vread", "update", "delete", "create", "search-type")]
    params = [
        {"name": "identifier", "type": "token"},
        {"name": "patient", "type": "reference"},
        {"name": "subject", "type": "reference"},
        {"name": "_id", "type": "token"},
    ]
    types = (
        "Patient",
        "Encounter",
        "Observation",
        "DocumentReference",
        "DiagnosticReport",
        "Practitioner",
        "Organization",
        "Condition",
        "MedicationRequest",
        "Immunization",
        "Claim",
        "Coverage",
    )
    body = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir_instant()[:10],
        "kind": "instance",
        "software": {"name": "mediator sandbox shared record"},
        "implementation": {"description": "mediator sandbox shared record", "url": _base(request)},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": [{"type": t, "interaction": interactions, "searchParam": params} for t in types],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [
                    {
                        "name": "everything",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    }
                ],
            }
        ],
    }
    return fhir_json_response(body)


async def _read(request: web.Request) -> web.Response:
    rtype, rid = request.match_info["type"], request.match_info["id"]
    _check_type(rtype)
    _check_id(rid)
    vid_text = request.match_info.get("vid")
    vid = None
    if vid_text is not None:
        if not vid_text.isdigit():
            raise FhirInputError(400, "invalid", "version id must be an integer")
        vid = int(vid_text)
    row = await _call(request, "read", rtype, rid, vid)
    if row is None:
        what = f"{rtype}/{rid}" + (f"/_history/{vid}" if vid is not None else "")
        raise FhirInputError(404, "not-found", f"{what} is not known")
    raw, version, last_updated = row
    if raw is None:
        raise FhirInputError(410, "deleted", f"{rtype}/{rid} has been deleted")
    return fhir_json_response(raw, headers=_version_headers(version, last_updated))


async def _update(request: web.Request) -> web.Response:
    rtype, rid = request.match_info["type"], request.match_info["id"]
    _check_type(rtype)
    _check_id(rid)
    doc = await _body(request)
    if_match = request.headers.get("If-Match")
    vid = None
    if if_match:
        m = re.fullmatch(r'(?:W/)?"?(\d+)"?', if_match.strip())
        if not m:
            raise FhirInputError(400, "invalid", "bad If-Match header")
        vid = int(m.group(1))
    return await _write_response(request, await _call(request, "put", rtype, rid, doc, if_match=vid))


async def _create(request: web.Request) -> web.Response:
    rtype = request.match_info["type"]
    _check_type(rtype)
    doc = await _body(request)
    result = await _call(request, "create", rtype, doc, if_none_exist=request.headers.get("If-None-Exist"))
    return await _write_response(request, result)


async def _delete(request: web.Request) -> web.Response:
    rtype, rid = request.match_info["type"], request.match_info["id"]
    _check_type(rtype)
    _check_id(rid)
    await _call(request, "delete", rtype, rid)
    return outcome_response(
        200, severity="information", code="informational", diagnostics=f"deleted {rtype}/{rid}"
    )


def _int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise FhirInputError(400, "invalid", f"{name} must be a non-negative integer", name)
    return min(int(text), maximum)


async def _search(request: web.Request) -> web.Response:
    rtype = request.match_info["type"]
    _check_type(rtype)
    count = _int_param(request, "_count", _DEFAULT_COUNT, _MAX_COUNT)
    offset = _int_param(request, "_offset", 0, 10**9)
    params: list[tuple[str, str]] = []
    for name, value in request.query.items():
        if name in _IGNORED_PARAMS:
            continue
        if name not in _SEARCH_PARAMS:
            raise FhirInputError(
                400, "not-supported", f"unknown search parameter {name[:64]!r} for {rtype}", name
            )
        params.append((name, value))
    page = await _call(request, "search", rtype, params, count=count, offset=offset)
    base = _base(request)
    query = urlencode(params, safe="|/,:")
    sep = "&" if query else ""
    self_url = f"{base}/{rtype}?{query}{sep}_count={count}&_offset={offset}"
    next_url = None
    if offset + len(page.resources) < page.total and page.resources:
        next_url = f"{base}/{rtype}?{query}{sep}_count={count}&_offset={offset + count}"
    return fhir_json_response(_searchset(base, self_url, page.resources, page.total, next_url))


async def _everything(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    _check_id(rid)
    raws = await _call(request, "everything", rid)
    if raws is None:
        raise FhirInputError(404, "not-found", f"Patient/{rid} is not known")
    base = _base(request)
    return fhir_json_response(_searchset(base, f"{base}/Patient/{rid}/$everything", raws, len(raws), None))


# ---------------------------------------------------------------------------- app


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except FhirInputError as exc:
        log.info("shr.rejected", method=request.method, status=exc.status, code=exc.code)
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return outcome_response(
            exc.status,
            code="not-found" if exc.status == 404 else "processing",
            diagnostics=exc.reason,
            headers=None,
        )
    except Exception:
        log.exception("shr.internal_error", method=request.method)
        return outcome_response(500, code="exception", diagnostics="internal server error")


def create_shr_app(db_path: Path, *, base_url: str | None = None, trust_forwarded: bool = False) -> web.Application:
    """Build the sandbox shared-record application backed by SQLite at ``db_path``.

    ``base_url`` is the public FHIR base used in ``Location`` headers and ``fullUrl``s; by default it
    is derived from each request (origin + mount prefix), or taken from the ``X-Forwarded-Base``
    header when ``trust_forwarded`` (behind the node's proxy, listening on loopback only).
    """
    app = web.Application(middlewares=[_errors], client_max_size=16 * 1024 * 1024 + 1)
    app[_BASE_KEY] = base_url
    app[_TRUST_FORWARDED_KEY] = trust_forwarded
    app[STORE_KEY] = ShrStore(Path(db_path))
    app[_EXECUTOR_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shr-store")
    app[_BATCHER_KEY] = _BundleBatcher(app)

    async def _close(app: web.Application) -> None:
        app[_EXECUTOR_KEY].shutdown(wait=True)
        app[STORE_KEY].close()

    app.on_cleanup.append(_close)
    app.router.add_post("/", _transaction, name="shr-root")
    app.router.add_get("/metadata", _metadata)
    app.router.add_get("/Patient/{id}/$everything", _everything)
    app.router.add_get("/{type}/{id}/_history/{vid}", _read)
    app.router.add_get("/{type}/{id}", _read)
    app.router.add_put("/{type}/{id}", _update)
    app.router.add_delete("/{type}/{id}", _delete)
    app.router.add_get("/{type}", _search)
    app.router.add_post("/{type}", _create)
    return app


async def main(argv: list[str] | None = None) -> None:
    """Run the sandbox shared record standalone until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m mediator.sandbox.shr", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", type=Path, default=Path("shr.db"))
    parser.add_argument("--base-url", default=None, help="public FHIR base (default: derived per request)")
    parser.add_argument("--trust-forwarded", action="store_true",
                        help=f"take the public FHIR base from the {FORWARDED_BASE} header (behind the node's proxy)")
    parser.add_argument("--parent", type=int, default=0, help="end when this process (the node) ends")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--nice", type=int, default=0, help="run this much nicer (beside a node: as its workers)")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    from mediator import logs

    logs.configure(args.log_level, "json")
    if args.parent:
        from mediator.child_process import die_with_parent

        die_with_parent()
        if os.getppid() != args.parent:  # the node ended before we could ask to follow it
            return
    app = create_shr_app(args.db, base_url=args.base_url, trust_forwarded=args.trust_forwarded)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tune_collector()  # a parsed Bundle allocates hundreds of containers, freed by reference counting
    freeze_long_lived()  # what start-up loaded leaves the collector's scans (see mediator/heap.py)
    site = web.TCPSite(runner, args.host, args.port, backlog=1024)
    await site.start()
    log.info("shr.started", host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
