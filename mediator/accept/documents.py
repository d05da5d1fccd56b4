"""Accepting FHIR, CDA and CNSS care-sheet (FSE) documents received over HTTP.

Checks are cheap and safe (bounded JSON, XML without DTDs or entities); a CDA document goes to the
channel that names its type (``ClinicalDocument/code``, ``templateId``) or to a catch-all CDA channel,
else it is refused (422, naming its code). A refused document is kept
in the transaction log as Rejected and answered with an OperationOutcome naming the problem. An
accepted one is stored durably, queued, and answered ``202 Accepted`` with the transaction id.
A resent document (same sender and document/Bundle identifier) gets the original answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from mediator.accept.channels import ChannelRouter
from mediator.cda.safe_xml import UnsafeXmlError, XmlInputError, parse_xml
from mediator.fhir.inbound import FhirInputError, parse_fhir_json
from mediator.fhir.outcome import operation_outcome
from mediator.store.base import InboundRecord, QueuedMessage, Status, Store, new_id

log = structlog.get_logger(__name__)

CDA_NS = "{urn:hl7-org:v3}"

Submit = Callable[[QueuedMessage, Any], None]


@dataclass(frozen=True, slots=True)
class DocAnswer:
    status: int
    outcome: dict[str, Any]
    tx_id: str | None
    duplicate: bool = False


def _accepted_outcome(tx_id: str) -> dict[str, Any]:
    return operation_outcome([("information", "informational", f"accepted as transaction {tx_id}", None)])


def _identifier_key(resource: dict[str, Any]) -> str:
    ident = resource.get("identifier")
    if isinstance(ident, list):
        ident = ident[0] if ident else None
    if isinstance(ident, dict) and ident.get("value"):
        return f"{ident.get('system', '')}|{ident['value']}"
    return ""


class DocumentDoor:
    def __init__(self, store: Store, router: ChannelRouter, submit: Submit, *, max_bytes: int) -> None:
        self.store = store
        self.router = router
        self.submit = submit
        self.max_bytes = max_bytes

    async def receive_fhir(self, body: bytes, *, client: str, content_type: str, protocol: str = "fhir") -> DocAnswer:
        received_at = time.time()
        channel = self.router.for_protocol(protocol, "http")
        if channel is None:
            return await self._refuse(body, protocol, client, content_type, received_at, 404, "not-supported",
                                      f"no channel accepts {protocol} documents", None)
        try:
            resource = parse_fhir_json(body, max_bytes=self.max_bytes)
        except FhirInputError as exc:
            return await self._refuse(body, protocol, client, content_type, received_at, exc.status, exc.code,
                                      exc.diagnostics, exc.expression, channel=channel.name)
        rtype = resource.get("resourceType", "")
        btype = resource.get("type", "") if rtype == "Bundle" else ""
        message_type = f"{rtype}/{btype}" if btype else rtype
        key = _identifier_key(resource) if rtype in ("Bundle", "Claim") else ""
        return await self._accept(body, resource, protocol, channel.name, client, content_type, received_at,
                                  message_type, key, [])

    async def receive_cda(self, body: bytes, *, client: str, content_type: str) -> DocAnswer:
        received_at = time.time()
        channel = self.router.for_protocol("cda", "http")
        if channel is None:
            return await self._refuse(body, "cda", client, content_type, received_at, 404, "not-supported",
                                      "no channel accepts CDA documents", None)
        try:
            root = parse_xml(body, max_bytes=self.max_bytes)
        except UnsafeXmlError as exc:
            return await self._refuse(body, "cda", client, content_type, received_at, 400, "security", str(exc),
                                      None, channel=channel.name)
        except XmlInputError as exc:
            return await self._refuse(body, "cda", client, content_type, received_at, 400, "structure", str(exc),
                                      None, channel=channel.name)
        if root.tag != f"{CDA_NS}ClinicalDocument":
            return await self._refuse(body, "cda", client, content_type, received_at, 400, "structure",
                                      "not a CDA document: the root element must be hl7:ClinicalDocument",
                                      "ClinicalDocument", channel=channel.name)
        selection = self.router.for_cda(root, "http")  # by document type: code, templateId (as `map run`)
        if selection.channel is None:
            return await self._refuse(body, "cda", client, content_type, received_at, 422, "not-supported",
                                      selection.problem, "ClinicalDocument.code")
        channel = selection.channel
        doc_id = root.find(f"{CDA_NS}id")
        key = ""
        if doc_id is not None and doc_id.get("root"):
            key = f"{doc_id.get('root')}|{doc_id.get('extension', '')}"
        code = root.find(f"{CDA_NS}code")
        message_type = f"CDA/{code.get('code', '')}" if code is not None else "CDA"
        ids = [f"{e.get('root', '')}|{e.get('extension', '')}" for e in
               root.iterfind(f"{CDA_NS}recordTarget/{CDA_NS}patientRole/{CDA_NS}id")]
        ids += [i.split("|", 1)[1] for i in ids if i.split("|", 1)[1]]
        return await self._accept(body, root, "cda", channel.name, client, content_type, received_at,
                                  message_type, key, ids)

    async def _accept(self, body: bytes, parsed: Any, protocol: str, channel: str, client: str, content_type: str,
                      received_at: float, message_type: str, key: str, identifiers: list[str]) -> DocAnswer:
        tx_id = new_id()
        answer = orjson.dumps(_accepted_outcome(tx_id)).decode()
        record = InboundRecord(
            id=tx_id, channel=channel, protocol=protocol, transport="http", client=client, content_type=content_type,
            body=body, received_at=received_at, message_type=message_type, control_id=key, sender=client,
            identifiers=identifiers, ack=answer, ack_code="202")
        try:
            result = await self.store.accept(record)
        except Exception as exc:
            log.error("document.store_failed", error=type(exc).__name__)
            return DocAnswer(503, operation_outcome([("error", "transient", "could not store; retry later", None)]),
                             None)
        if result.duplicate:
            return DocAnswer(200, orjson.loads(result.ack), result.tx_id, duplicate=True)
        self.submit(QueuedMessage(tx_id, channel, protocol, content_type, body, "", received_at, 0), parsed)
        return DocAnswer(202, orjson.loads(answer), tx_id)

    async def _refuse(self, body: bytes, protocol: str, client: str, content_type: str, received_at: float,
                      status: int, code: str, diagnostics: str, expression: str | None, *,
                      channel: str = "") -> DocAnswer:
        outcome = operation_outcome([("error", code, diagnostics, expression)])
        record = InboundRecord(
            id=new_id(), channel=channel, protocol=protocol, transport="http", client=client,
            content_type=content_type, body=body[: self.max_bytes], received_at=received_at, sender=client,
            ack=orjson.dumps(outcome).decode(), ack_code=str(status), status=Status.REJECTED,
            error=f"{status} {code}: {diagnostics}")
        log.info("document.refused", protocol=protocol, status=status, code=code)
        try:
            await self.store.reject(record)
        except Exception as exc:
            log.error("document.store_failed", error=type(exc).__name__)
            return DocAnswer(status, outcome, None)
        return DocAnswer(status, outcome, record.id)
