"""HTTP inbound endpoints: HL7 v2 over HTTP, FHIR, CDA and CNSS care sheets.

``POST /hl7v2`` answers every HL7 outcome (AA, AE, AR, ...) with HTTP 200 and the ACK as body:
4xx/5xx are kept for transport and authentication failures. The document endpoints answer
``202 Accepted`` with an OperationOutcome carrying the transaction id, or 4xx with one naming the
problem.
"""

from __future__ import annotations

from aiohttp import web

from mediator.accept.documents import DocAnswer, DocumentDoor
from mediator.accept.hl7v2 import Hl7v2Door
from mediator.fhir.outcome import fhir_json_response, outcome_response
from mediator.inbound.auth import CLIENT
from mediator.metrics import Metrics

HL7_TYPES = frozenset({"application/hl7-v2", "x-application/hl7-v2+er7", "text/plain", "application/edi-hl7",
                       "application/hl7-v2+er7"})
FHIR_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
CDA_TYPES = frozenset({"application/xml", "application/hl7-cda+xml", "text/xml"})

DOOR_HL7 = web.AppKey("door_hl7", Hl7v2Door)
METRICS = web.AppKey("metrics", Metrics)
DOOR_DOCS = web.AppKey("door_docs", DocumentDoor)
MAX_BODY = web.AppKey("max_body", int)


async def read_bounded(request: web.Request, limit: int) -> tuple[bytes, int]:
    """The body, or its first ``limit`` bytes; returns (data, total size seen, capped at limit + 1)."""
    if request.content_length is not None and request.content_length > limit:
        head = await request.content.read(64 * 1024)
        return head, request.content_length
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[: 64 * 1024], size
        chunks.append(chunk)
    return b"".join(chunks), size


def client_of(request: web.Request) -> str:
    return request.get(CLIENT) or (request.remote or "")


async def post_hl7v2(request: web.Request) -> web.Response:
    ctype = request.content_type
    if ctype not in HL7_TYPES:
        return web.Response(status=415, text=f"unsupported content type {ctype!r}; use application/hl7-v2")
    door, limit = request.app[DOOR_HL7], request.app[MAX_BODY]
    data, size = await read_bounded(request, limit)
    if size > limit:
        answer = await door.receive_oversize(data, size, limit, transport="http", client=client_of(request))
    else:
        answer = await door.receive(data, transport="http", client=client_of(request), content_type=ctype,
                                    force_answer=True)
    request.app[METRICS].answered("hl7v2", "http", answer.code, answer.duplicate)
    headers = {"X-Transaction-Id": answer.tx_id} if answer.tx_id else None
    return web.Response(text=answer.ack or "", content_type=ctype if ctype != "text/plain" else "text/plain",
                        charset="utf-8", headers=headers)


def _doc_response(request: web.Request, protocol: str, answer: DocAnswer) -> web.Response:
    request.app[METRICS].answered(protocol, "http", str(answer.status), answer.duplicate)
    headers = {"X-Transaction-Id": answer.tx_id} if answer.tx_id else None
    return fhir_json_response(answer.outcome, status=answer.status, headers=headers)


async def _bounded_or_413(request: web.Request) -> bytes | web.Response:
    limit = request.app[MAX_BODY]
    data, size = await read_bounded(request, limit)
    if size > limit:
        return outcome_response(413, code="too-costly", diagnostics=f"body exceeds the {limit}-byte limit")
    return data


async def post_fhir(request: web.Request) -> web.Response:
    if request.content_type not in FHIR_TYPES:
        return outcome_response(415, code="not-supported",
                                diagnostics=f"unsupported content type {request.content_type!r}")
    data = await _bounded_or_413(request)
    if isinstance(data, web.Response):
        return data
    answer = await request.app[DOOR_DOCS].receive_fhir(data, client=client_of(request),
                                                       content_type=request.content_type)
    return _doc_response(request, "fhir", answer)


async def post_cnss_fse(request: web.Request) -> web.Response:
    if request.content_type not in FHIR_TYPES:
        return outcome_response(415, code="not-supported",
                                diagnostics=f"unsupported content type {request.content_type!r}")
    data = await _bounded_or_413(request)
    if isinstance(data, web.Response):
        return data
    answer = await request.app[DOOR_DOCS].receive_fhir(data, client=client_of(request),
                                                       content_type=request.content_type, protocol="cnss-fse")
    return _doc_response(request, "cnss-fse", answer)


async def post_cda(request: web.Request) -> web.Response:
    if request.content_type not in CDA_TYPES:
        return outcome_response(415, code="not-supported",
                                diagnostics=f"unsupported content type {request.content_type!r}")
    data = await _bounded_or_413(request)
    if isinstance(data, web.Response):
        return data
    answer = await request.app[DOOR_DOCS].receive_cda(data, client=client_of(request),
                                                      content_type=request.content_type)
    return _doc_response(request, "cda", answer)


def add_inbound_routes(app: web.Application, hl7: Hl7v2Door, docs: DocumentDoor, max_body: int,
                       metrics: Metrics) -> None:
    app[METRICS] = metrics
    app[DOOR_HL7] = hl7
    app[DOOR_DOCS] = docs
    app[MAX_BODY] = max_body
    app.router.add_post("/hl7v2", post_hl7v2)
    app.router.add_post("/fhir", post_fhir)
    app.router.add_post("/cda", post_cda)
    app.router.add_post("/cnss/fse", post_cnss_fse)
