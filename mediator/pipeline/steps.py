"""Processing one accepted message: the steps, in order, as plain functions.

    parse → map → resolve → validate → route → record

(``resolve`` works on the mapped Bundle: it links the Patient to the client registry's golden
record and checks professionals and facilities against the provider registry.)

Each step takes the :class:`Work` of one transaction and fills in its part; a step that cannot go
on raises :class:`StepFailed` with a reason an operator can act on (no patient data in it). The
transaction log gets the final status: Successful, Completed with errors, or Failed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from mediator.accept.channels import ChannelRouter
from mediator.cda.document import cda_summary, document_reference_bundle
from mediator.cda.safe_xml import parse_xml
from mediator.config import ChannelConfig
from mediator.fhir.inbound import parse_fhir_json
from mediator.fhir.normalize import cda_root_system, identifier_normalizer
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import HL7Error, parse
from mediator.mapping import Mapping, MappingContext, MappingError
from mediator.mapping.xpath import XmlMessage
from mediator.routes.delivery import RouteOutcome, deliver
from mediator.routes.destination import Destination
from mediator.store.base import QueuedMessage, Status, Store

log = structlog.get_logger(__name__)


class StepFailed(Exception):
    """A step could not complete; ``reason`` is stored on the transaction."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"{step}: {reason}")


@dataclass
class Work:
    """Everything known about one transaction while it is processed."""

    item: QueuedMessage
    channel: ChannelConfig | None  # None until chosen (see Pipeline.choose_channel)
    message: Any = None  # Message (HL7 v2), dict (FHIR JSON), lxml element (CDA)
    bundle: dict[str, Any] | None = None
    unmapped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # values the mapping refused and left out
    outcomes: list[RouteOutcome] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


class IdentityResolver(Protocol):
    """Resolves the patient, professional and facility of a mapped Bundle against registries.

    The client registry (MPI) and provider/facility registry plug in here: they add the enterprise
    identifier, point references at golden records, or hold the message for review.
    """

    async def resolve(self, work: Work) -> None: ...


class SourceIdentities:
    """No registry configured: the Bundle keeps the identifiers the source sent."""

    async def resolve(self, work: Work) -> None:
        return None


@dataclass
class Pipeline:
    store: Store
    router: ChannelRouter
    mappings: dict[str, Mapping]
    destinations: dict[str, Destination]
    context: MappingContext
    resolver: IdentityResolver = field(default_factory=SourceIdentities)

    def __post_init__(self) -> None:
        self.normalize_identifiers = identifier_normalizer(self.context.identifiers)
        self.identifier_system_for_root = cda_root_system(self.context.identifiers)

    async def process(self, item: QueuedMessage, parsed: Any = None) -> None:
        """Run every step for one accepted message and record the outcome."""
        if not item.claimed:
            await self.store.mark(item.id, Status.PROCESSING)
        work = Work(item=item, channel=self.router.by_name.get(item.channel), message=parsed)
        try:
            for name, step in self.steps():
                started = time.perf_counter()
                await step(work)
                work.timings_ms[name] = round((time.perf_counter() - started) * 1000, 3)
        except StepFailed as exc:
            log.info("pipeline.failed", tx_id=item.id, step=exc.step)
            await self.store.mark(item.id, Status.FAILED, error=str(exc), result=_result(work))
            return
        except Exception as exc:  # a bug must fail one transaction, never the worker
            log.exception("pipeline.internal_error", tx_id=item.id, error=type(exc).__name__)
            await self.store.mark(item.id, Status.FAILED, error=f"internal error: {type(exc).__name__}",
                                  result=_result(work))
            return
        await self.record(work)

    def steps(self) -> list[tuple[str, Callable[[Work], Awaitable[None]]]]:
        return [("parse", self.parse), ("channel", self.choose_channel), ("map", self.map), ("resolve", self.resolve),
                ("validate", self.validate), ("route", self.route)]

    # -- the steps --------------------------------------------------------------------------------
    async def parse(self, work: Work) -> None:
        if work.message is not None:
            return
        body, protocol = work.item.body, work.item.protocol
        try:
            if protocol == "hl7v2":
                work.message = parse(body)
            elif protocol in ("fhir", "cnss-fse"):
                work.message = parse_fhir_json(body)
            elif protocol == "cda":
                work.message = parse_xml(body)
            else:
                raise StepFailed("parse", f"unknown protocol {protocol!r}")
        except HL7Error as exc:
            raise StepFailed("parse", f"{exc.location} {exc.code}: {exc.text}") from None
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed("parse", f"{type(exc).__name__}: {exc}") from None

    async def choose_channel(self, work: Work) -> None:
        """Keep the channel chosen at the door; choose again when it is gone or there was none (the
        rerun of a message refused before a channel was added for it)."""
        if work.channel is not None:
            return
        if work.item.protocol == "hl7v2":
            selection = self.router.for_hl7v2(work.message, "mllp")
            if selection.channel is None:
                selection = self.router.for_hl7v2(work.message, "http")
            if selection.channel is None:
                err = selection.error
                raise StepFailed("channel", f"no channel takes this message ({err.location} {err.code}: {err.text})"
                                 if err else "no channel takes this message")
            work.channel = selection.channel
        elif work.item.protocol == "cda":  # by document type, as at the door
            cda = self.router.for_cda(work.message, "http")
            if cda.channel is None:
                raise StepFailed("channel", cda.problem)
            work.channel = cda.channel
        else:
            work.channel = (self.router.for_protocol(work.item.protocol, "http")
                            or self.router.for_protocol(work.item.protocol, "mllp"))
            if work.channel is None:
                raise StepFailed("channel", f"no channel takes {work.item.protocol} documents")
        await self.store.mark(work.item.id, Status.PROCESSING, channel=work.channel.name)

    async def resolve(self, work: Work) -> None:
        await self.resolver.resolve(work)

    async def map(self, work: Work) -> None:
        assert work.channel is not None
        protocol = work.item.protocol
        if protocol == "hl7v2":
            mapping = self.mappings.get(work.channel.mapping or "")
            if mapping is None:
                raise StepFailed("map", f"channel {work.channel.name!r} has no mapping")
            try:
                result = mapping.apply(work.message, self.context)
            except MappingError as exc:
                raise StepFailed("map", str(exc)) from None
            except HL7Error as exc:
                raise StepFailed("map", f"{exc.location} {exc.code}: {exc.text}") from None
            work.bundle, work.unmapped, work.dropped = result.bundle, list(result.unmapped), result.dropped
        elif protocol in ("fhir", "cnss-fse"):
            work.bundle = as_transaction(work.message)
            self.normalize_identifiers(work.bundle)
        elif protocol == "cda" and work.channel.mapping:  # parse_xml -> the compiled mapping -> Bundle
            mapping = self.mappings.get(work.channel.mapping)
            if mapping is None:
                raise StepFailed("map", f"channel {work.channel.name!r}: mapping {work.channel.mapping!r} not loaded")
            try:
                result = mapping.apply(XmlMessage(work.message, work.item.body), self.context)
            except MappingError as exc:
                raise StepFailed("map", str(exc)) from None
            work.bundle, work.unmapped, work.dropped = result.bundle, list(result.unmapped), result.dropped
        elif protocol == "cda":  # a channel without mapping: the header summary only
            try:
                summary = cda_summary(work.message)
            except Exception as exc:
                raise StepFailed("map", f"not a usable CDA document: {exc}") from None
            work.bundle = document_reference_bundle(
                work.item.body, summary, identifier_system_for_root=self.identifier_system_for_root,
                source_id=work.item.id)

    async def validate(self, work: Work) -> None:
        assert work.bundle is not None
        problems = validate_bundle(work.bundle)
        if problems:
            shown = "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
            raise StepFailed("validate", f"the mapped Bundle is not valid FHIR R4: {shown}")

    async def route(self, work: Work) -> None:
        assert work.bundle is not None and work.channel is not None
        for r in work.channel.routes:
            dest = self.destinations[r.destination]
            work.outcomes.append(await deliver(dest, dest.requests_for(work.bundle), work.item.id, self.store))

    async def record(self, work: Work) -> None:
        tried = [o for o in work.outcomes if not o.skipped]
        failed = [o for o in tried if not o.delivered]
        attempts = sum(o.attempts for o in work.outcomes)
        if not failed:
            status, error = Status.SUCCESSFUL, ""
        else:
            error = "; ".join(f"route {o.route}: {o.error}" for o in failed)
            status = Status.COMPLETED_WITH_ERRORS if len(failed) < len(tried) else Status.FAILED
        if work.dropped and status is Status.SUCCESSFUL:
            # delivered, but without values the mapping could not read: not a plain success (each
            # names the rule and the source path, never the value)
            status = Status.COMPLETED_WITH_ERRORS
            error = "delivered without what the mapping could not read: " + "; ".join(work.dropped)
        unrecorded = [a for o in work.outcomes for a in o.unrecorded]
        await self.store.mark(work.item.id, status, error=error, result=_result(work), attempts=attempts,
                              attempts_log=unrecorded)


def _result(work: Work) -> dict[str, Any]:
    resources = []
    if work.bundle:
        for e in work.bundle.get("entry", []):
            res = e.get("resource") or {}
            rid = res.get("id")
            resources.append(f"{res.get('resourceType')}/{rid}" if rid else str(res.get("resourceType")))
    return {
        "resources": resources,
        "unmapped": work.unmapped,
        "routes": [{"route": o.route, "delivered": o.delivered, "skipped": o.skipped, "attempts": o.attempts,
                    "error": o.error} for o in work.outcomes],
        "timings_ms": work.timings_ms,
    }


def as_transaction(resource: dict[str, Any]) -> dict[str, Any]:
    """FHIR inbound: a transaction/batch Bundle passes as is; anything else becomes a transaction."""
    if resource.get("resourceType") == "Bundle":
        btype = resource.get("type")
        if btype in ("transaction", "batch"):
            return resource
        entries = [_entry(e["resource"], e.get("fullUrl")) for e in resource.get("entry", [])
                   if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                   and e["resource"].get("resourceType") != "MessageHeader"]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_entry(resource, None)]}


def _entry(resource: dict[str, Any], full_url: str | None) -> dict[str, Any]:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    entry: dict[str, Any] = {"resource": resource}
    if full_url:
        entry["fullUrl"] = full_url
    entry["request"] = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": rtype}
    return entry
