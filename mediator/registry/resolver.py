"""The pipeline's ``resolve`` step backed by the built-in registries (OpenHIE "save clinical data").

:class:`RegistryResolver` implements :class:`mediator.pipeline.steps.IdentityResolver`:

1. the mapped Bundle's Patient becomes a source record (source = the sending facility, MSH-4 for
   HL7 v2; local id = the IPP) and is linked in the client registry;
2. the enterprise identifier is added to the Patient (and, with ``patient_id="enterprise"``, the
   Patient's id and every reference to it become the enterprise id);
3. a patient that lands in review is sent and flagged (default) or held (``review="hold"``: the
   step fails with a reason naming the candidate, and the message can be rerun once decided);
4. professionals and facilities carrying an INPE are checked in the provider registry: unknown,
   inactive or malformed INPEs are flagged (default) or make the step fail (``providers="reject"``);
5. an ADT^A40 (MRG-1 = the prior IPP) merges the prior record into the surviving one, audited.

The outcome is set on ``work.identity`` (a dict: enterprise id, link, score, candidates, flags,
provider findings). Registry calls are synchronous SQLite and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from mediator.futures import settle
from mediator.pipeline.steps import StepFailed, Work
from mediator.registry.identifiers import PERSON_KINDS
from mediator.registry.model import PersonRecord
from mediator.registry.names import is_arabic
from mediator.registry.providers import ProviderRegistry
from mediator.registry.registry import ClientRegistry, LinkResult
from mediator.registry.settings import ENTERPRISE_SYSTEM

__all__ = ["ENTERPRISE_SYSTEM", "RegistryResolver", "ResolverPolicy", "SystemMap", "patient_record"]

log = structlog.get_logger(__name__)

LANG_EXT = "http://hl7.org/fhir/StructureDefinition/language"
REVIEW_TAG_SYSTEM = "https://dmp.sante.gov.ma/fhir/CodeSystem/registry-link"


class SystemMap:
    """Identifier kind ↔ FHIR system, from ``IdentifierConfig.systems`` (``{facility}``/``{authority}`` patterns)."""

    def __init__(self, systems: dict[str, str]) -> None:
        self.systems = dict(systems)
        self._exact: dict[str, str] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for kind, pattern in systems.items():
            if "{" in pattern:
                rx = re.escape(pattern)
                rx = re.sub(r"\\\{[a-z_]+\\\}", "(?P<part>[^/]+)", rx)
                self._patterns.append((re.compile(rx + "$"), kind))
            else:
                self._exact[pattern] = kind

    def kind_of(self, system: str) -> tuple[str, str] | None:
        """``(kind, facility-or-authority)`` for a system URI, or ``None``."""
        kind = self._exact.get(system)
        if kind:
            return kind, ""
        for rx, k in self._patterns:
            m = rx.match(system)
            if m:
                return k, m.group("part")
        return None

    def system_of(self, kind: str, part: str = "") -> str:
        pattern = self.systems.get(kind, "")
        return pattern.replace("{facility}", part).replace("{authority}", part)


@dataclass
class ResolverPolicy:
    """Per channel: what to do with a patient in review and with unknown professionals/facilities."""

    review: Literal["flag", "hold"] = "flag"
    providers: Literal["flag", "reject", "off"] = "flag"
    patient_id: Literal["source", "enterprise"] = "source"


def _first(items: Any) -> dict[str, Any]:
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def patient_record(patient: dict[str, Any], systems: SystemMap, source: str = "") -> PersonRecord:
    """A Patient resource as a source record; ``source`` defaults to the facility of its IPP."""
    ids: dict[str, str] = {}
    ipps: list[tuple[str, str]] = []
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        found = systems.kind_of(str(ident.get("system") or ""))
        if found is None:
            continue
        kind, part = found
        if kind in PERSON_KINDS:
            ids.setdefault(kind, str(ident["value"]))
        elif kind == "ipp":
            ipps.append((part, str(ident["value"])))
    if not source and ipps:
        source = ipps[0][0]
    local = next((v for f, v in ipps if f == source), ipps[0][1] if ipps else "")
    if not local and patient.get("id"):
        local = f"Patient/{patient['id']}"
    rec = PersonRecord(source=source, local_id=local, identifiers=ids)
    for name in patient.get("name") or []:
        if not isinstance(name, dict):
            continue
        family = str(name.get("family") or "")
        given = " ".join(str(g) for g in name.get("given") or [] if g)
        lang = next((e.get("valueCode") for e in name.get("extension") or []
                     if isinstance(e, dict) and e.get("url") == LANG_EXT), None)
        arabic = lang == "ar" or (lang is None and is_arabic(family + given))
        if arabic:
            rec.family_ar = rec.family_ar or family
            rec.given_ar = rec.given_ar or given
        else:
            rec.family = rec.family or family
            rec.given = rec.given or given
    rec.birth_date = str(patient.get("birthDate") or "")
    rec.sex = {"male": "M", "female": "F"}.get(str(patient.get("gender") or ""), "")
    for t in patient.get("telecom") or []:
        if isinstance(t, dict) and t.get("system") in ("phone", "sms", None) and t.get("value"):
            rec.phone = str(t["value"])
            break
    address = _first(patient.get("address"))
    rec.city = str(address.get("city") or "")
    lines = address.get("line")
    rec.address = " ".join(str(x) for x in lines if x) if isinstance(lines, list) else ""
    rec.postcode = str(address.get("postalCode") or "")
    return rec


INLINE_BATCH = 32  # links per turn of the event loop when linking inline (bounds the pause: ~10-15 ms)


class LinkBatcher:
    """Group commit for :meth:`ClientRegistry.link` calls made concurrently from the event loop.

    Records submitted while a batch is being linked wait for the next batch; each batch is linked in
    one SQLite transaction (one commit instead of one per message). Order within a batch is
    submission order.

    ``inline``: link on the event loop itself, in batches of at most :data:`INLINE_BATCH`, for a worker
    process whose loop does nothing latency-critical. A thread there made each of the link's SQLite
    calls hand the GIL over and wait to get it back (measured: 572 -> 629 messages/s end to end).
    Without it (the pipeline in the node's process), links run in a thread so that ACKs never wait.
    """

    def __init__(self, registry: ClientRegistry, max_batch: int = 256, *, inline: bool = False) -> None:
        self.registry = registry
        self.inline = inline
        self.max_batch = min(max_batch, INLINE_BATCH) if inline else max_batch
        self._pending: list[tuple[PersonRecord, asyncio.Future[LinkResult]]] = []
        self._running = False

    async def link(self, rec: PersonRecord) -> LinkResult:
        fut: asyncio.Future[LinkResult] = asyncio.get_running_loop().create_future()
        self._pending.append((rec, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let the other ready tasks submit theirs
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                try:
                    records = [r for r, _ in batch]
                    if self.inline:
                        results = self.registry.link_many(records)
                    else:
                        results = await asyncio.to_thread(self.registry.link_many, records)
                except Exception as exc:
                    results = [exc] * len(batch)
                settle((fut for _, fut in batch), results)
        finally:
            self._running = False


@dataclass
class RegistryResolver:
    """Client + provider registry resolution for the pipeline (see the module docstring)."""

    registry: ClientRegistry
    providers: ProviderRegistry | None
    systems: SystemMap
    enterprise_system: str = ENTERPRISE_SYSTEM
    default_policy: ResolverPolicy = field(default_factory=ResolverPolicy)
    policies: dict[str, ResolverPolicy] = field(default_factory=dict)  # by channel name
    group_commit: bool = True
    inline_links: bool = False  # see LinkBatcher: True in worker processes

    def __post_init__(self) -> None:
        self._batcher = LinkBatcher(self.registry, inline=self.inline_links)

    def policy(self, work: Work) -> ResolverPolicy:
        return self.policies.get(work.channel.name, self.default_policy)

    async def resolve(self, work: Work) -> None:
        bundle = work.bundle
        if not bundle:
            return
        policy = self.policy(work)
        outcome: dict[str, Any] = {}
        entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        patients = [e for e in entries if e["resource"].get("resourceType") == "Patient"]
        # ADT^A40 bundles also carry the merged-away record (active false, replaced-by the survivor)
        patient_entry = next((e for e in patients if e["resource"].get("active") is not False),
                             patients[0] if patients else None)
        if patient_entry is not None:
            outcome["patient"] = await self._patient(work, bundle, patient_entry, policy)
        if self.providers is not None and policy.providers != "off":
            outcome["providers"] = await self._providers(entries, policy)
        work.identity = outcome  # type: ignore[attr-defined]

    async def _patient(self, work: Work, bundle: dict[str, Any], entry: dict[str, Any],
                       policy: ResolverPolicy) -> dict[str, Any]:
        patient = entry["resource"]
        message = work.message
        source = str(getattr(message, "sending_facility", "") or "")
        rec = patient_record(patient, self.systems, source)
        if not rec.source:
            rec.source = work.channel.name
        if self.group_commit:
            result = await self._batcher.link(rec)
        else:
            result = await asyncio.to_thread(self.registry.link, rec)
        out = result.to_json()
        out.pop("evidence", None) if result.link == "new" else None
        out["source"], out["local_id"] = rec.source, rec.local_id
        # ADT^A40: MRG-1 carries the prior IPP of this source
        if getattr(message, "type_key", "") == "ADT^A40" and hasattr(message, "get"):
            prior = (message.get("MRG-1.1") or "").strip()
            if prior and prior != rec.local_id:
                try:
                    merged = await asyncio.to_thread(self.registry.merge_sources, rec.source, prior, rec.local_id,
                                                     f"hl7:{rec.source}")
                    out["merge"] = merged
                    result.enterprise_id = merged.get("enterprise_id") or result.enterprise_id
                except Exception as exc:  # an unknown prior record is not an error of this message
                    out["merge_error"] = str(exc)
        eid = result.enterprise_id
        out["enterprise_id"] = eid
        idents = [i for i in patient.get("identifier") or [] if not (isinstance(i, dict)
                                                                     and i.get("system") == self.enterprise_system)]
        idents.append({"use": "official", "system": self.enterprise_system, "value": eid,
                       "type": {"text": "enterprise identifier"}})
        patient["identifier"] = idents
        if result.link == "candidate":
            tags = [t for t in (patient.get("meta") or {}).get("tag", []) if t.get("system") != REVIEW_TAG_SYSTEM]
            tags.append({"system": REVIEW_TAG_SYSTEM, "code": "review", "display": "patient match awaiting review"})
            patient.setdefault("meta", {})["tag"] = tags
            log.info("registry.review", tx_id=work.item.id, enterprise_id=eid, candidates=len(result.candidates))
            if policy.review == "hold":
                cands = ", ".join(g for g, _ in result.candidates)
                raise StepFailed("resolve", f"held: patient match awaiting review (candidate {cands})")
        if policy.patient_id == "enterprise":
            _rewrite_patient_id(bundle, entry, eid)
        return out

    async def _providers(self, entries: list[dict[str, Any]], policy: ResolverPolicy) -> list[dict[str, Any]]:
        assert self.providers is not None
        findings = []
        for i, e in enumerate(entries):
            res = e["resource"]
            rtype = res.get("resourceType")
            if rtype not in ("Practitioner", "Organization", "Location", "PractitionerRole"):
                continue
            inpe = self.providers.inpe_of(res)
            if not inpe:
                continue
            # an indexed lookup (tens of µs): cheaper in place than a hop to a thread and back
            st = self.providers.status(inpe)
            if st.status != "active":
                findings.append({"resource": f"{rtype}", "entry": i, "inpe": st.inpe, "status": st.status})
        if findings and policy.providers == "reject":
            f = findings[0]
            raise StepFailed("resolve", f"{f['resource']} INPE {f['inpe']} is {f['status']} "
                                        f"(Bundle.entry[{f['entry']}].resource.identifier)")
        return findings


def _rewrite_patient_id(bundle: dict[str, Any], entry: dict[str, Any], eid: str) -> None:
    """Make the Patient ``Patient/{eid}`` and point every reference at it."""
    res = entry["resource"]
    old_id = res.get("id")
    old_full = entry.get("fullUrl")
    res["id"] = eid
    new_ref = f"Patient/{eid}"
    olds = {f"Patient/{old_id}"} if old_id else set()
    if old_full:
        olds.add(old_full)
        entry["fullUrl"] = old_full if old_full.startswith("urn:") else old_full.replace(f"Patient/{old_id}", new_ref)
    if entry.get("request", {}).get("method") == "PUT":
        entry["request"]["url"] = new_ref

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref in olds and not ref.startswith("urn:"):
                node["reference"] = new_ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for e in bundle.get("entry") or []:
        if e is not entry:
            walk(e.get("resource"))
